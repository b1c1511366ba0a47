// The one WebSocket of a client (`/ws?token=`): its states, reconnection with backoff, heartbeat,
// token refresh on close 4001 and in-band `auth` renewal. It knows frames only as JSON objects;
// what they mean is the ChatClient's business.

import { Emitter } from './events.js';
import { Timer, systemClock } from './clock.js';
import { resolveTimings } from './timings.js';

/** @typedef {'connecting'|'connected'|'disconnected'|'failed'} ConnectionState */

/**
 * @typedef {object} StateChange
 * @property {ConnectionState} state
 * @property {ConnectionState} previous
 * @property {number} attempt        reconnect attempts made in this outage (0 when connected)
 * @property {number|null} nextRetryAt  clock time of the next attempt, when one is scheduled
 * @property {boolean} everConnected  false until the first `hello` (apps show "Connecting", not "Reconnecting")
 */

/**
 * @typedef {object} TokenSource
 * @property {(opts?: {force?: boolean}) => Promise<string>} token  a usable access token (refreshed when needed or forced)
 * @property {() => number|null} expiresAt  local clock time the current token expires
 * @property {() => number|null} issuedAt   local clock time it was issued
 */

const OPEN = 1;

/**
 * @extends {Emitter<{state: StateChange, frame: any, disconnected: {code: number, reason: string, wasConnected: boolean}, session_expired: void, visibility: boolean, offline: boolean}>}
 */
export class Connection extends Emitter {
  /**
   * @param {object} opts
   * @param {string} opts.url  the WebSocket endpoint, e.g. `wss://chat.example.com/ws`
   * @param {TokenSource} opts.auth
   * @param {any} [opts.WebSocket]  the WebSocket constructor (absent: go straight to `failed`, polling)
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Partial<import('./timings.js').Timings>} [opts.timings]
   * @param {Document|any} [opts.document]  for `visibilitychange`
   * @param {Window|any} [opts.window]      for `online`/`offline` (and `navigator.onLine`)
   * @param {Pick<Console,'warn'|'debug'>} [opts.logger]
   */
  constructor({ url, auth, WebSocket, clock = systemClock, timings, document, window, logger = console }) {
    super();
    this._url = url;
    this._auth = auth;
    this._WebSocket = WebSocket;
    this._clock = clock;
    this._t = resolveTimings(timings);
    this._document = document;
    this._window = window;
    this._log = logger;

    /** @type {ConnectionState} */
    this.state = 'disconnected';
    this.everConnected = false;
    /** Reconnect attempts made in the current outage. */
    this.attempt = 0;
    /** @type {number|null} */
    this.nextRetryAt = null;

    this._ws = null;
    this._gen = 0;
    this._stopped = true;
    this._probing = false;
    this._authFailures = 0;
    /** The browser says it has no network (`offline` event, `navigator.onLine`). */
    this._browserOffline = false;
    /** The link went silent: a ping or a connect got no answer in time. */
    this._silent = false;

    this._retryTimer = new Timer(clock);
    this._connectTimer = new Timer(clock);
    this._pingTimer = new Timer(clock);
    this._pongTimer = new Timer(clock);
    this._renewTimer = new Timer(clock);
    this._probeTimer = new Timer(clock);

    this._onVisibility = () => {
      const visible = this._document?.visibilityState !== 'hidden';
      this.emit('visibility', visible);
      if (!visible || this._stopped) return;
      if (this.state === 'connected') this._ping(); // a tab back from sleep: check the link now
      else this.reconnectNow();
    };
    this._onOnline = () => {
      this._browserOffline = false;
      this._silent = false;
      this._emitOffline();
      if (!this._stopped && this.state !== 'connected') this.reconnectNow();
    };
    this._onOffline = () => {
      this._browserOffline = true;
      this._emitOffline();
      // The socket may stay silently open for a long time: give it up now, so what waits
      // for an ack goes back to the queue instead of timing out.
      if (!this._stopped && this._ws) this._drop(this._ws, 'browser offline');
    };
    this._lastOffline = false;
  }

  /**
   * No network: the browser says so, or the link went silent (a ping or a connect got no
   * answer in time). Until a `hello` (or the browser's `online`) says otherwise.
   */
  get offline() {
    return this._browserOffline || this._silent;
  }

  _emitOffline() {
    const now = this.offline;
    if (now === this._lastOffline) return;
    this._lastOffline = now;
    this.emit('offline', now);
  }

  /**
   * Check the link now: a ping that gets no answer within `pongTimeoutMs` drops the socket
   * (the outbox asks when an ack is late). No-op unless connected.
   */
  probe() {
    if (this.state === 'connected') this._ping();
  }

  /** Open the connection (and keep it open until `stop()`). */
  start() {
    if (!this._stopped) return;
    this._stopped = false;
    this._document?.addEventListener?.('visibilitychange', this._onVisibility);
    this._window?.addEventListener?.('online', this._onOnline);
    this._window?.addEventListener?.('offline', this._onOffline);
    this._browserOffline = this._window?.navigator?.onLine === false;
    this._emitOffline();
    this.attempt = 0;
    this._open();
  }

  /** Close for good: socket closed with 1000, every timer and listener removed (AC-10). */
  stop() {
    if (this._stopped) return;
    this._stopped = true;
    this._gen++;
    for (const t of [this._retryTimer, this._connectTimer, this._pingTimer, this._pongTimer, this._renewTimer, this._probeTimer]) t.cancel();
    this._document?.removeEventListener?.('visibilitychange', this._onVisibility);
    this._window?.removeEventListener?.('online', this._onOnline);
    this._window?.removeEventListener?.('offline', this._onOffline);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(1000, 'client stopped');
      } catch {
        /* already closed */
      }
    }
    this._probing = false;
    this.nextRetryAt = null;
    this._setState('disconnected');
  }

  /** Try now, with a fresh backoff (tab visible again, network back, or the user asked). */
  reconnectNow() {
    if (this._stopped) return;
    if (this.state === 'connected' || (this.state === 'connecting' && this._ws)) return;
    this._retryTimer.cancel();
    this._probeTimer.cancel();
    this.attempt = 0;
    this._probing = false;
    this._open();
  }

  /**
   * Send a frame. Only while `connected` (after `hello`); returns false when it could not be sent.
   * @param {object} frame
   */
  send(frame) {
    const ws = this._ws;
    if (this.state !== 'connected' || !ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  async _open() {
    const gen = ++this._gen;
    this.nextRetryAt = null;
    if (!this._probing) this._setState('connecting');
    let token;
    try {
      token = await this._auth.token();
    } catch (err) {
      if (gen !== this._gen || this._stopped) return;
      if (/** @type {any} */ (err)?.sessionExpired) return this._expire();
      return this._scheduleReconnect();
    }
    if (gen !== this._gen || this._stopped) return;
    if (typeof this._WebSocket !== 'function') {
      this._log.warn?.('chat sdk: no WebSocket in this environment, using HTTP polling');
      return this._enterFailed();
    }
    let ws;
    try {
      ws = new this._WebSocket(`${this._url}?token=${encodeURIComponent(token)}`);
    } catch {
      return this._scheduleReconnect();
    }
    this._ws = ws;
    this._connectTimer.start(this._t.connectTimeoutMs, () => this._drop(ws, 'connect timeout'));
    ws.onmessage = (/** @type {MessageEvent} */ ev) => this._onMessage(ws, ev);
    ws.onclose = (/** @type {CloseEvent} */ ev) => this._onClose(ws, ev?.code ?? 1006, ev?.reason ?? '');
    ws.onerror = () => {
      /* a close event follows */
    };
  }

  /** @param {any} ws @param {MessageEvent} ev */
  _onMessage(ws, ev) {
    if (ws !== this._ws) return;
    let frame;
    try {
      frame = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
    } catch {
      this._log.warn?.('chat sdk: ignoring a frame that is not JSON');
      return;
    }
    if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') {
      this._log.warn?.('chat sdk: ignoring a frame without a type');
      return;
    }
    // Any frame proves the link is alive.
    this._pongTimer.cancel();
    if (frame.type === 'pong') return;
    if (frame.type === 'hello') this._onHello();
    if (frame.type === 'auth_ok') this._scheduleRenewal();
    this.emit('frame', frame);
  }

  _onHello() {
    this._connectTimer.cancel();
    this.attempt = 0;
    this._authFailures = 0;
    this._probing = false;
    this._probeTimer.cancel();
    this.everConnected = true;
    this._silent = false;
    this._browserOffline = false;
    this._emitOffline();
    this._setState('connected');
    this._pingTimer.start(this._t.pingIntervalMs, () => this._heartbeat());
    this._scheduleRenewal();
  }

  _heartbeat() {
    this._ping();
    this._pingTimer.start(this._t.pingIntervalMs, () => this._heartbeat());
  }

  _ping() {
    const ws = this._ws;
    if (!this.send({ type: 'ping' })) return;
    if (!this._pongTimer.pending) this._pongTimer.start(this._t.pongTimeoutMs, () => this._drop(ws, 'heartbeat timeout'));
  }

  /**
   * @param {any} ws
   * @param {number} code
   * @param {string} reason
   */
  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._detach(ws);
    this._ws = null;
    const wasConnected = this.state === 'connected';
    for (const t of [this._connectTimer, this._pingTimer, this._pongTimer, this._renewTimer]) t.cancel();
    this.emit('disconnected', { code, reason, wasConnected });
    if (this._stopped) return;
    if (wasConnected) this.attempt = 0;
    if (code === 4001) {
      this._onAuthClose();
      return;
    }
    if (code === 4003) {
      this._enterFailed();
      return;
    }
    this._scheduleReconnect();
  }

  /** Give up on a socket that went silent (no hello, no pong) and treat it as closed. @param {any} ws @param {string} reason */
  _drop(ws, reason) {
    if (ws !== this._ws) return;
    this._log.debug?.(`chat sdk: dropping the socket (${reason})`);
    if (reason === 'heartbeat timeout' || reason === 'connect timeout') {
      this._silent = true;
      this._emitOffline();
    }
    this._detach(ws);
    try {
      ws.close(4000, reason);
    } catch {
      /* ignore */
    }
    // Do not wait for the closing handshake of a dead link.
    this._onClose(ws, 1006, reason);
  }

  async _onAuthClose() {
    const gen = ++this._gen;
    this._authFailures++;
    if (!this._probing) this._setState('connecting');
    try {
      await this._auth.token({ force: true });
    } catch (err) {
      if (gen !== this._gen || this._stopped) return;
      if (/** @type {any} */ (err)?.sessionExpired) return this._expire();
      return this._scheduleReconnect();
    }
    if (gen !== this._gen || this._stopped) return;
    // The first 4001 in a row reconnects at once with the fresh token; repeated ones back off.
    if (this._authFailures === 1) this._open();
    else this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._probing) {
      // A quiet probe from the `failed` state did not work: stay failed, try again later.
      this._probing = false;
      this._setState('failed');
      this._scheduleProbe();
      return;
    }
    const delays = this._t.backoffMs;
    if (this._browserOffline) {
      // No network: `online` reconnects at once. Meanwhile a slow retry (in case the browser
      // is wrong), which spends no attempt: being offline never turns into `failed`.
      const delay = delays[delays.length - 1] ?? 16000;
      this.nextRetryAt = this._clock.now() + delay;
      this._setState('disconnected');
      this._retryTimer.start(delay, () => this._open());
      return;
    }
    if (this.attempt >= delays.length) {
      this._enterFailed();
      return;
    }
    const delay = delays[this.attempt];
    this.attempt++;
    this.nextRetryAt = this._clock.now() + delay;
    this._setState('disconnected');
    this._retryTimer.start(delay, () => this._open());
  }

  _enterFailed() {
    this.nextRetryAt = null;
    this._setState('failed');
    this._scheduleProbe();
  }

  _scheduleProbe() {
    if (!(this._t.failedProbeMs > 0)) return;
    this._probeTimer.start(this._t.failedProbeMs, () => {
      this._probing = true;
      this._open();
    });
  }

  _expire() {
    this.nextRetryAt = null;
    this._setState('disconnected');
    this.emit('session_expired');
  }

  _scheduleRenewal() {
    const exp = this._auth.expiresAt();
    if (!exp || this.state !== 'connected') return;
    const issued = this._auth.issuedAt() ?? exp;
    const margin = Math.min(this._t.tokenRenewMarginMs, Math.max(0, exp - issued) / 2);
    const delay = Math.max(0, exp - margin - this._clock.now());
    this._renewTimer.start(delay, () => this._renew());
  }

  async _renew() {
    const ws = this._ws;
    try {
      const token = await this._auth.token({ force: true });
      if (ws !== this._ws || this.state !== 'connected') return;
      this.send({ type: 'auth', token });
      this._scheduleRenewal();
    } catch (err) {
      if (ws !== this._ws || this._stopped) return;
      if (/** @type {any} */ (err)?.sessionExpired) {
        this.stop();
        this.emit('session_expired');
        return;
      }
      // Network trouble: try again shortly; if the token runs out first, the server closes 4001.
      this._renewTimer.start(5000, () => this._renew());
    }
  }

  /** @param {any} ws */
  _detach(ws) {
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
    ws.onopen = null;
  }

  /** @param {ConnectionState} state */
  _setState(state) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.emit('state', { state, previous, attempt: this.attempt, nextRetryAt: this.nextRetryAt, everConnected: this.everConnected });
  }
}
