// The signed-in session: tokens, their expiry, the current user, persisted in storage so a reload
// stays signed in. Refreshing is single-flight, and across tabs it runs under a Web Lock and
// re-reads storage first: refresh tokens rotate, and presenting a used one revokes the family,
// so two tabs must never refresh with the same token.

import { systemClock } from './clock.js';

/**
 * @typedef {object} User
 * @property {string} id
 * @property {string} email
 * @property {string} display_name
 * @property {string|null} [avatar_url]
 */

/**
 * The answer of `auth/register`, `auth/login` and `auth/refresh`.
 * @typedef {object} AuthAnswer
 * @property {string} access_token
 * @property {string} refresh_token
 * @property {string} [token_type]
 * @property {number} expires_in   seconds
 * @property {User} [user]
 */

/** Thrown when the session cannot be renewed: the user must sign in again. */
export class SessionExpiredError extends Error {
  constructor(message = 'Your session has expired. Please sign in again.') {
    super(message);
    this.name = 'SessionExpiredError';
    this.sessionExpired = true;
  }
}

/**
 * @typedef {object} StoredSession
 * @property {string} accessToken
 * @property {string} refreshToken
 * @property {number} expiresAt  local clock, ms
 * @property {number} issuedAt   local clock, ms
 * @property {User|null} user
 */

export class Session {
  /**
   * @param {object} [opts]
   * @param {Storage|null} [opts.storage]  where the session survives a reload (null: memory only)
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {string} [opts.key]
   * @param {{request: (name: string, fn: () => Promise<any>) => Promise<any>}|null} [opts.locks]  Web Locks (navigator.locks)
   */
  constructor({ storage = null, clock = systemClock, key = 'chat.session.v1', locks = null } = {}) {
    this._storage = storage;
    this._clock = clock;
    this._key = key;
    this._locks = locks;
    /** @type {StoredSession|null} */
    this._data = null;
    /** @type {((refreshToken: string) => Promise<AuthAnswer>)|null} */
    this._refresher = null;
    /** @type {Promise<string>|null} */
    this._inflight = null;
    /** @type {Set<(user: User|null) => void>} */
    this._listeners = new Set();
    this._load();
  }

  /** @param {(refreshToken: string) => Promise<AuthAnswer>} fn */
  setRefresher(fn) {
    this._refresher = fn;
  }

  /** Called with the user on every change (null when signed out). @param {(user: User|null) => void} fn */
  onChange(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  get isAuthenticated() {
    return !!(this._data && this._data.refreshToken);
  }

  /** @returns {User|null} */
  get user() {
    return this._data?.user ?? null;
  }

  get accessToken() {
    return this._data?.accessToken ?? null;
  }

  get refreshToken() {
    return this._data?.refreshToken ?? null;
  }

  get expiresAt() {
    return this._data?.expiresAt ?? null;
  }

  get issuedAt() {
    return this._data?.issuedAt ?? null;
  }

  /** @param {AuthAnswer} answer */
  set(answer) {
    const now = this._clock.now();
    this._data = {
      accessToken: answer.access_token,
      refreshToken: answer.refresh_token,
      issuedAt: now,
      expiresAt: now + Math.max(1, Number(answer.expires_in) || 0) * 1000,
      user: answer.user ?? this._data?.user ?? null,
    };
    this._save();
    this._notify();
  }

  /** @param {User} user */
  updateUser(user) {
    if (!this._data) return;
    this._data.user = { ...this._data.user, ...user };
    this._save();
    this._notify();
  }

  clear() {
    const had = !!this._data;
    this._data = null;
    try {
      this._storage?.removeItem(this._key);
    } catch {
      /* storage unavailable: memory only */
    }
    if (had) this._notify();
  }

  /** Milliseconds the current access token stays valid (negative when expired). */
  validFor() {
    if (!this._data) return -Infinity;
    return this._data.expiresAt - this._clock.now();
  }

  /**
   * A usable access token: refreshed first when it expires within `minValidityMs` (or `force`).
   * @param {{minValidityMs?: number, force?: boolean}} [opts]
   * @returns {Promise<string>}
   */
  async token({ minValidityMs = 10000, force = false } = {}) {
    if (!this._data) throw new SessionExpiredError('Not signed in.');
    if (!force && this.validFor() > minValidityMs) return this._data.accessToken;
    return this._refresh(this._data.accessToken, minValidityMs);
  }

  /**
   * @param {string} staleAccess the token the caller wants replaced
   * @param {number} minValidityMs
   */
  _refresh(staleAccess, minValidityMs) {
    if (this._inflight) return this._inflight;
    const run = async () => {
      // Another tab may have rotated the tokens already: use its result instead of reusing ours.
      this._load();
      const d = this._data;
      if (!d || !d.refreshToken) throw new SessionExpiredError();
      if (d.accessToken !== staleAccess && this.validFor() > minValidityMs) return d.accessToken;
      if (!this._refresher) throw new Error('Session has no refresher');
      let answer;
      try {
        answer = await this._refresher(d.refreshToken);
      } catch (err) {
        if (/** @type {any} */ (err)?.status === 401) {
          this.clear();
          throw new SessionExpiredError();
        }
        throw err;
      }
      this.set(answer);
      return /** @type {string} */ (this.accessToken);
    };
    this._inflight = (this._locks ? this._locks.request('chat-session-refresh', run) : run()).finally(() => {
      this._inflight = null;
    });
    return this._inflight;
  }

  _load() {
    if (!this._storage) return;
    try {
      const raw = this._storage.getItem(this._key);
      // Nothing stored (or storage not working): keep what memory holds. A sign-out in another
      // tab revoked the refresh token on the server, so our next refresh learns of it anyway.
      if (!raw) return;
      const parsed = JSON.parse(raw);
      if (parsed && typeof parsed.accessToken === 'string' && typeof parsed.refreshToken === 'string') {
        this._data = parsed;
      }
    } catch {
      /* unreadable: keep what we have in memory */
    }
  }

  _save() {
    if (!this._storage || !this._data) return;
    try {
      this._storage.setItem(this._key, JSON.stringify(this._data));
    } catch {
      /* storage full or unavailable: memory only */
    }
  }

  _notify() {
    for (const fn of [...this._listeners]) fn(this.user);
  }
}
