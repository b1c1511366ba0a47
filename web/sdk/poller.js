// HTTP polling. While the WebSocket has given up (`failed`): the open conversation's messages
// every 5 s, the conversation list every 15 s, unread counts every 30 s (seed 001 AC-9). While
// connected: only a light refresh of the list and unread counts every 60 s (AC-26/27). While
// reconnecting: nothing (the backoff is short, and `sync` recovers everything).

import { Timer, systemClock } from './clock.js';
import { resolveTimings } from './timings.js';

/** @typedef {'off'|'light'|'fallback'} PollMode */

export class Poller {
  /**
   * @param {object} opts
   * @param {{messages: () => Promise<any>|void, conversations: () => Promise<any>|void, unread: () => Promise<any>|void}} opts.tasks
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Partial<import('./timings.js').Timings>} [opts.timings]
   */
  constructor({ tasks, clock = systemClock, timings }) {
    this._tasks = tasks;
    this._clock = clock;
    this._t = resolveTimings(timings);
    /** @type {PollMode} */
    this.mode = 'off';
    /** @type {Map<string, Timer>} */
    this._timers = new Map();
    /** @type {Set<string>} */
    this._running = new Set();
  }

  /**
   * Switch schedules. Entering `fallback` polls everything at once (catch up), then on the
   * intervals; entering `light` waits one interval first.
   * @param {PollMode} mode
   */
  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    for (const t of this._timers.values()) t.cancel();
    this._timers.clear();
    if (mode === 'fallback') {
      this._every('messages', this._t.pollMessagesMs, true);
      this._every('conversations', this._t.pollConversationsMs, true);
      this._every('unread', this._t.pollUnreadMs, true);
    } else if (mode === 'light') {
      this._every('conversations', this._t.lightPollMs, false);
      this._every('unread', this._t.lightPollMs, false);
    }
  }

  /** Run one task now (outside the schedule), e.g. the messages of a conversation just opened. @param {'messages'|'conversations'|'unread'} name */
  runNow(name) {
    this._run(/** @type {any} */ (name));
  }

  stop() {
    this.setMode('off');
  }

  /** @param {'messages'|'conversations'|'unread'} name @param {number} ms @param {boolean} now */
  _every(name, ms, now) {
    const timer = new Timer(this._clock);
    this._timers.set(name, timer);
    const tick = () => {
      timer.start(ms, tick);
      this._run(name);
    };
    if (now) tick();
    else timer.start(ms, tick);
  }

  /** @param {'messages'|'conversations'|'unread'} name */
  _run(name) {
    // Never two of the same poll at once: a slow server must not pile requests up.
    if (this._running.has(name)) return;
    this._running.add(name);
    Promise.resolve()
      .then(() => this._tasks[name]())
      .catch(() => {
        /* a failed poll just waits for the next tick */
      })
      .finally(() => this._running.delete(name));
  }
}
