// Typing, both ways (seed 001 AC-16..21).
// Outgoing: `is_typing:true` at most once per `typingRefreshMs` while the user types, `false`
// after `typingIdleMs` without input, and `false` at once when the message is sent.
// Incoming: someone is shown typing until they stop, send, or `typingHideMs` pass without news.

import { Timer, systemClock } from './clock.js';
import { resolveTimings } from './timings.js';

export class TypingSender {
  /**
   * @param {object} opts
   * @param {(conversationId: string, isTyping: boolean) => boolean} opts.send  false when it could not be sent
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Partial<import('./timings.js').Timings>} [opts.timings]
   */
  constructor({ send, clock = systemClock, timings }) {
    this._send = send;
    this._clock = clock;
    this._t = resolveTimings(timings);
    /** @type {Map<string, {typing: boolean, lastSentAt: number, idle: Timer}>} */
    this._state = new Map();
  }

  /** The user typed in this conversation's composer. @param {string} conversationId */
  input(conversationId) {
    let s = this._state.get(conversationId);
    if (!s) {
      s = { typing: false, lastSentAt: -Infinity, idle: new Timer(this._clock) };
      this._state.set(conversationId, s);
    }
    const now = this._clock.now();
    if (!s.typing || now - s.lastSentAt >= this._t.typingRefreshMs) {
      if (this._send(conversationId, true)) {
        s.typing = true;
        s.lastSentAt = now;
      }
    }
    const state = s;
    s.idle.start(this._t.typingIdleMs, () => this._stop(conversationId, state));
  }

  /** The user sent, cleared the composer or left the conversation. @param {string} conversationId */
  stop(conversationId) {
    const s = this._state.get(conversationId);
    if (s) this._stop(conversationId, s);
  }

  /** Forget all (connection lost: the server ends the leases itself). */
  reset() {
    for (const s of this._state.values()) s.idle.cancel();
    this._state.clear();
  }

  /** @param {string} conversationId @param {{typing: boolean, lastSentAt: number, idle: Timer}} s */
  _stop(conversationId, s) {
    s.idle.cancel();
    if (s.typing) this._send(conversationId, false);
    s.typing = false;
    s.lastSentAt = -Infinity;
  }
}

export class TypingRoster {
  /**
   * @param {object} opts
   * @param {(conversationId: string, userIds: string[]) => void} opts.onChange
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Partial<import('./timings.js').Timings>} [opts.timings]
   */
  constructor({ onChange, clock = systemClock, timings }) {
    this._onChange = onChange;
    this._clock = clock;
    this._t = resolveTimings(timings);
    /** @type {Map<string, Map<string, Timer>>} */
    this._typing = new Map();
  }

  /**
   * A `typing` frame arrived.
   * @param {string} conversationId
   * @param {string} userId
   * @param {boolean} isTyping
   */
  update(conversationId, userId, isTyping) {
    if (!isTyping) {
      this.clear(conversationId, userId);
      return;
    }
    let users = this._typing.get(conversationId);
    if (!users) {
      users = new Map();
      this._typing.set(conversationId, users);
    }
    let timer = users.get(userId);
    const isNew = !timer;
    if (!timer) {
      timer = new Timer(this._clock);
      users.set(userId, timer);
    }
    timer.start(this._t.typingHideMs, () => this.clear(conversationId, userId));
    if (isNew) this._onChange(conversationId, this.users(conversationId));
  }

  /** Stop showing someone typing (their message arrived, or they stopped). @param {string} conversationId @param {string} userId */
  clear(conversationId, userId) {
    const users = this._typing.get(conversationId);
    const timer = users?.get(userId);
    if (!users || !timer) return;
    timer.cancel();
    users.delete(userId);
    if (users.size === 0) this._typing.delete(conversationId);
    this._onChange(conversationId, this.users(conversationId));
  }

  /** Everyone shown typing in a conversation, in the order they started. @param {string} conversationId @returns {string[]} */
  users(conversationId) {
    return [...(this._typing.get(conversationId)?.keys() ?? [])];
  }

  /** Hide everything (connection lost: we would not hear the stops). */
  reset() {
    const ids = [...this._typing.keys()];
    for (const users of this._typing.values()) for (const t of users.values()) t.cancel();
    this._typing.clear();
    for (const id of ids) this._onChange(id, []);
  }
}

/**
 * Seed 001's wording for the typing line.
 * @param {string[]} names display names of the people typing
 * @returns {string} '' when nobody types
 */
export function describeTyping(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing...`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing...`;
  return `${names.length} people are typing...`;
}
