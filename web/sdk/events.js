// A tiny event emitter: the SDK's only way of telling an app that something changed.

/**
 * @template {Record<string, any>} Events
 */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Listen to an event. Returns a function that removes the listener.
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {(payload: Events[K]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {(payload: Events[K]) => void} listener
   */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {Events[K]} [payload]
   */
  emit(event, payload) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (err) {
        // One broken listener must not stop the others, nor the SDK.
        console.error(`chat sdk: a "${event}" listener threw`, err);
      }
    }
  }

  /** Remove every listener (used by `stop()`, so nothing leaks). */
  removeAllListeners() {
    this._listeners.clear();
  }
}
