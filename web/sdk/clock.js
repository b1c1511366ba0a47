// Time is injected everywhere in the SDK so tests can drive it with a fake clock.

/**
 * @typedef {object} Clock
 * @property {() => number} now  milliseconds since the epoch
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 */

/** The real clock. @type {Clock} */
export const systemClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle),
};

/**
 * A named one-shot timer that can be re-armed; the building block of every schedule in the SDK.
 */
export class Timer {
  /** @param {Clock} clock */
  constructor(clock) {
    this._clock = clock;
    this._handle = null;
  }

  /**
   * (Re)arm the timer: any pending run is cancelled first.
   * @param {number} ms
   * @param {() => void} fn
   */
  start(ms, fn) {
    this.cancel();
    this._handle = this._clock.setTimeout(() => {
      this._handle = null;
      fn();
    }, ms);
  }

  cancel() {
    if (this._handle !== null) {
      this._clock.clearTimeout(this._handle);
      this._handle = null;
    }
  }

  get pending() {
    return this._handle !== null;
  }
}
