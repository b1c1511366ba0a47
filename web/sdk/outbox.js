// Messages this client wrote that the server has not acknowledged yet (seed 004). Each has a
// `temp_id` (a UUID, the server's idempotency key) that never changes, so a resend, a flush after
// reconnecting or after a reload can never create a second message. The outbox lives in storage
// and so survives a reload.
//
// Schedule of one message: sent; no ack after 1 s: sent again; then after 2 s, then after 4 s;
// no ack `sendFinalAckMs` after the last resend: `failed` (tap to retry). Each resend also probes
// the link (a ping): a link that went silent is dropped within `pongTimeoutMs`, long before that,
// and the message goes back to `queued`, pending, not failed. While the connection is down or the
// browser is offline the message waits as `queued` and goes out once when it is back; while the
// WebSocket has given up (`failed` state, polling) it goes out over REST with the same temp_id.

import { Timer, systemClock } from './clock.js';
import { resolveTimings } from './timings.js';

/**
 * @typedef {object} OutboxEntry
 * @property {string} temp_id
 * @property {string} conversation_id
 * @property {string} content
 * @property {string} content_type
 * @property {string|null} [reply_to]  the message answered
 * @property {string[]} [attachment_ids]  confirmed attachments sent with it (kept across retries and reloads)
 * @property {import('./attachments.js').AttachmentDto[]} [attachments]  what the pending copy shows of them
 * @property {string} created_at     ISO time it was written
 * @property {'queued'|'sending'|'failed'} status
 * @property {number} attempt        sends made in the current round
 * @property {string} [error]        why it failed, for the user
 */

/**
 * @typedef {object} OutboxTransport
 * @property {() => 'ws'|'rest'|'offline'} mode
 * @property {(frame: object) => boolean} sendFrame
 * @property {() => void} [probe]  check the link now (a ping); a dead one is dropped, so what waits goes back to `queued`
 * @property {(conversationId: string, body: {content: string, content_type: string, temp_id: string, reply_to?: string, attachment_ids?: string[]}) => Promise<import('./rest.js').Message>} post
 */

/** Error codes after which resending the same message cannot help. */
const PERMANENT = new Set(['encryption_required', 'not_encrypted', 'validation_failed', 'temp_id_conflict', 'not_participant', 'message_not_found', 'unknown_type', 'invalid_json', 'attachment_unavailable', 'attachment_already_sent', 'upload_missing']);

export class Outbox {
  /**
   * @param {object} opts
   * @param {OutboxTransport} opts.transport
   * @param {(entry: OutboxEntry, change: 'added'|'status'|'acked', serverMessage?: import('./rest.js').Message) => void} opts.onChange
   * @param {Storage|null} [opts.storage]
   * @param {string} [opts.key]
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Partial<import('./timings.js').Timings>} [opts.timings]
   * @param {() => string} [opts.randomUUID]
   */
  constructor({ transport, onChange, storage = null, key = 'chat.outbox.v1', clock = systemClock, timings, randomUUID = () => globalThis.crypto.randomUUID() }) {
    this._transport = transport;
    this._onChange = onChange;
    this._storage = storage;
    this._key = key;
    this._clock = clock;
    this._t = resolveTimings(timings);
    this._uuid = randomUUID;
    /** @type {Map<string, OutboxEntry>} */
    this.entries = new Map();
    /** @type {Map<string, Timer>} */
    this._timers = new Map();
    /** temp_ids with a REST send in flight. @type {Set<string>} */
    this._inflight = new Set();
  }

  /** Restore what a previous page left unsent: failed ones stay failed, the rest wait for a flush. */
  load() {
    let stored = [];
    try {
      stored = JSON.parse(this._storage?.getItem(this._key) || '[]');
    } catch {
      stored = [];
    }
    if (!Array.isArray(stored)) stored = [];
    for (const e of stored) {
      if (!e || typeof e.temp_id !== 'string' || typeof e.conversation_id !== 'string' || this.entries.has(e.temp_id)) continue;
      /** @type {OutboxEntry} */
      const entry = {
        temp_id: e.temp_id,
        conversation_id: e.conversation_id,
        content: String(e.content ?? ''),
        content_type: e.content_type || 'text',
        reply_to: typeof e.reply_to === 'string' ? e.reply_to : null,
        ...(Array.isArray(e.attachment_ids) && e.attachment_ids.length ? { attachment_ids: e.attachment_ids.filter((/** @type {any} */ x) => typeof x === 'string') } : {}),
        ...(Array.isArray(e.attachments) && e.attachments.length ? { attachments: e.attachments.filter((/** @type {any} */ a) => a && typeof a.id === 'string') } : {}),
        created_at: e.created_at || new Date(this._clock.now()).toISOString(),
        status: e.status === 'failed' ? 'failed' : 'queued',
        attempt: 0,
        error: e.error,
      };
      this.entries.set(entry.temp_id, entry);
    }
    return [...this.entries.values()];
  }

  /**
   * Write a new message: it is stored at once, then sent (or queued).
   * @param {string} conversationId
   * @param {string} content
   * @param {string} [contentType]
   * @param {string|null} [replyTo]  the message answered
   * @param {string} [tempId]  one chosen already (an encrypted send shown before it was encrypted)
   * @param {{attachmentIds?: string[], attachments?: import('./attachments.js').AttachmentDto[]}} [files]  confirmed attachments to send with it
   * @returns {OutboxEntry}
   */
  send(conversationId, content, contentType = 'text', replyTo = null, tempId = undefined, { attachmentIds = [], attachments = [] } = {}) {
    /** @type {OutboxEntry} */
    const entry = {
      temp_id: tempId ?? this._uuid(),
      conversation_id: conversationId,
      content,
      content_type: contentType,
      reply_to: replyTo,
      ...(attachmentIds.length ? { attachment_ids: [...attachmentIds] } : {}),
      ...(attachments.length ? { attachments: attachments.map((a) => ({ ...a })) } : {}),
      created_at: new Date(this._clock.now()).toISOString(),
      status: 'queued',
      attempt: 0,
    };
    this.entries.set(entry.temp_id, entry);
    this._save();
    this._onChange(entry, 'added');
    this._dispatch(entry);
    return entry;
  }

  /** The connection is (back) up or switched to REST: send every queued message once, in order. */
  flush() {
    for (const entry of [...this.entries.values()]) {
      if (entry.status !== 'queued' || this._inflight.has(entry.temp_id)) continue;
      entry.attempt = 0;
      this._dispatch(entry);
    }
  }

  /** The WebSocket went away: whatever waited for an ack over it waits for the next flush. */
  onDisconnected() {
    for (const entry of this.entries.values()) {
      if (entry.status !== 'sending' || this._inflight.has(entry.temp_id)) continue;
      this._timer(entry.temp_id).cancel();
      entry.status = 'queued';
      this._onChange(entry, 'status');
    }
  }

  /**
   * The server acknowledged (`message_sent`, a REST answer, or the echo of our message).
   * @param {string} tempId
   * @param {import('./rest.js').Message} [serverMessage]
   * @returns {OutboxEntry|null}
   */
  ack(tempId, serverMessage) {
    const entry = this.entries.get(tempId);
    if (!entry) return null;
    this._timer(tempId).cancel();
    this._timers.delete(tempId);
    this.entries.delete(tempId);
    this._save();
    this._onChange(entry, 'acked', serverMessage);
    return entry;
  }

  /**
   * An `error` frame named this message (`ref`). Transient codes leave the retry schedule running.
   * @param {string} tempId
   * @param {string} code
   * @param {string} message
   */
  rejected(tempId, code, message) {
    const entry = this.entries.get(tempId);
    if (!entry || entry.status === 'failed') return;
    if (PERMANENT.has(code)) this._fail(entry, message || code);
  }

  /** Tap-to-retry: a failed message starts a fresh round with the same temp_id. @param {string} tempId */
  retry(tempId) {
    const entry = this.entries.get(tempId);
    if (!entry || entry.status !== 'failed') return false;
    entry.attempt = 0;
    entry.error = undefined;
    this._dispatch(entry);
    return true;
  }

  /** Give up on a message for good. @param {string} tempId */
  discard(tempId) {
    const entry = this.entries.get(tempId);
    if (!entry) return null;
    this._timer(tempId).cancel();
    this._timers.delete(tempId);
    this.entries.delete(tempId);
    this._save();
    return entry;
  }

  /** Stop every timer (the entries stay stored). */
  stop() {
    for (const t of this._timers.values()) t.cancel();
    this._timers.clear();
  }

  /** Forget everything, storage included (sign-out). */
  clear() {
    this.stop();
    this.entries.clear();
    try {
      this._storage?.removeItem(this._key);
    } catch {
      /* ignore */
    }
  }

  /** @param {OutboxEntry} entry */
  _dispatch(entry) {
    if (!this.entries.has(entry.temp_id)) return;
    const timer = this._timer(entry.temp_id);
    timer.cancel();
    const mode = this._transport.mode();
    if (mode === 'offline') {
      this._setStatus(entry, 'queued');
      return;
    }
    /** @type {{content: string, content_type: string, temp_id: string, reply_to?: string, attachment_ids?: string[]}} */
    const body = { content: entry.content, content_type: entry.content_type, temp_id: entry.temp_id };
    if (entry.reply_to) body.reply_to = entry.reply_to;
    if (entry.attachment_ids?.length) body.attachment_ids = [...entry.attachment_ids];
    if (mode === 'ws') {
      const sent = this._transport.sendFrame({ type: 'message', conversation_id: entry.conversation_id, ...body });
      if (!sent) {
        this._setStatus(entry, 'queued');
        return;
      }
      entry.attempt++;
      this._setStatus(entry, 'sending');
      // A resend: the ack is late. Is the link still there?
      if (entry.attempt > 1) this._transport.probe?.();
      const delays = this._t.sendRetryMs;
      if (entry.attempt <= delays.length) timer.start(delays[entry.attempt - 1], () => this._dispatch(entry));
      else timer.start(this._t.sendFinalAckMs, () => this._fail(entry, 'The server did not confirm this message.'));
      return;
    }
    // REST fallback.
    entry.attempt++;
    this._setStatus(entry, 'sending');
    this._inflight.add(entry.temp_id);
    this._transport.post(entry.conversation_id, body).then(
      (message) => {
        this._inflight.delete(entry.temp_id);
        this.ack(entry.temp_id, message);
      },
      (err) => {
        this._inflight.delete(entry.temp_id);
        if (!this.entries.has(entry.temp_id) || entry.status === 'failed') return;
        if (!err?.sessionExpired && this._transport.mode() === 'offline') {
          // The network went away under the request: wait for it, pending.
          this._setStatus(entry, 'queued');
          return;
        }
        if (err?.sessionExpired || !err?.transient) {
          this._fail(entry, err?.message || 'The message was refused.');
          return;
        }
        const delays = this._t.sendRetryMs;
        if (entry.attempt > delays.length) {
          this._fail(entry, err.message || 'Cannot reach the server.');
          return;
        }
        const wait = Math.max(delays[entry.attempt - 1], err.retryAfterMs || 0);
        timer.start(wait, () => this._dispatch(entry));
      },
    );
  }

  /** @param {OutboxEntry} entry @param {string} error */
  _fail(entry, error) {
    if (!this.entries.has(entry.temp_id)) return;
    this._timer(entry.temp_id).cancel();
    entry.error = error;
    this._setStatus(entry, 'failed', true);
  }

  /** @param {OutboxEntry} entry @param {OutboxEntry['status']} status @param {boolean} [force] */
  _setStatus(entry, status, force = false) {
    const changed = entry.status !== status;
    entry.status = status;
    if (changed || force) {
      this._save();
      this._onChange(entry, 'status');
    }
  }

  /** @param {string} tempId */
  _timer(tempId) {
    let t = this._timers.get(tempId);
    if (!t) {
      t = new Timer(this._clock);
      this._timers.set(tempId, t);
    }
    return t;
  }

  _save() {
    if (!this._storage) return;
    const rows = [...this.entries.values()].map(({ temp_id, conversation_id, content, content_type, reply_to, attachment_ids, attachments, created_at, status, error }) => ({
      temp_id,
      conversation_id,
      content,
      content_type,
      reply_to: reply_to ?? undefined,
      attachment_ids: attachment_ids?.length ? attachment_ids : undefined,
      attachments: attachments?.length ? attachments : undefined,
      created_at,
      status,
      error,
    }));
    try {
      if (rows.length) this._storage.setItem(this._key, JSON.stringify(rows));
      else this._storage.removeItem(this._key);
    } catch {
      /* storage full: the messages still live in memory */
    }
  }
}
