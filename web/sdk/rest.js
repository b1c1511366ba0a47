// The REST API of SPEC section 5 (`/api/v1`), with the access token attached, refreshed before
// it expires and once more on a 401.

import { systemClock } from './clock.js';
import { SessionExpiredError } from './session.js';

/** An HTTP error answer (`{"error":{"code","message"}}`) or a network failure (`status` 0). */
export class ApiError extends Error {
  /**
   * @param {number} status  HTTP status, 0 for a network error or timeout
   * @param {string} code    the server's machine-readable code (`network` when there was no answer)
   * @param {string} message
   * @param {{retryAfterMs?: number}} [extra]
   */
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfterMs = extra.retryAfterMs;
  }

  /** Worth retrying later with the same request (network, timeout, 5xx, 429). */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/**
 * @typedef {import('./session.js').User} User
 * @typedef {import('./session.js').AuthAnswer} AuthAnswer
 *
 * @typedef {object} Participant
 * @property {string} user_id
 * @property {string} display_name
 * @property {string} [email]
 * @property {string|null} [avatar_url]
 * @property {'owner'|'admin'|'member'} role
 * @property {string} [joined_at]
 * @property {number} [delivered_seq]
 * @property {number} [read_seq]
 * @property {string|null} [last_seen]
 * @property {string} [status]  presence, when the server includes it
 *
 * @typedef {object} Message
 * @property {string} id
 * @property {string} conversation_id
 * @property {number} seq
 * @property {string} sender_id
 * @property {string} content
 * @property {string} content_type
 * @property {string|null} [reply_to]
 * @property {string|null} [temp_id]
 * @property {string} created_at
 * @property {string|null} [edited_at]
 * @property {string|null} [deleted_at]   set: a tombstone (`content` is "")
 * @property {string|null} [deleted_by]
 * @property {number} [change_seq]   the conversation's change number of its latest edit, deletion or reaction (0: never)
 * @property {Reaction[]} [reactions]
 * @property {ReplyPreview|null} [reply_preview]  the message answered (`reply_to`), as it is now
 * @property {string} [status]
 * @property {import('./attachments.js').AttachmentDto[]} [attachments]  its files, in the order sent
 *
 * @typedef {object} Reaction
 * @property {string} emoji
 * @property {number} count
 * @property {string[]} user_ids   who, earliest first, at most 10
 * @property {boolean} [me]        the signed-in user is one of them
 *
 * @typedef {object} ReplyPreview
 * @property {string} id
 * @property {string} sender_id
 * @property {string} content      its first 100 characters ("" when deleted)
 * @property {boolean} deleted
 *
 * @typedef {object} ReactionsAnswer
 * @property {string} message_id
 * @property {number} change_seq
 * @property {Reaction[]} reactions
 *
 * @typedef {object} Conversation
 * @property {string} id
 * @property {'direct'|'group'} type
 * @property {string|null} title
 * @property {string} [created_by]
 * @property {string} created_at
 * @property {number} last_seq
 * @property {string|null} last_message_at
 * @property {number} unread_count
 * @property {Message|null} last_message
 * @property {Participant[]} participants
 */

export class RestClient {
  /**
   * @param {object} opts
   * @param {string} opts.baseUrl   origin of the server ('' = same origin)
   * @param {typeof fetch} opts.fetch
   * @param {import('./session.js').Session} opts.session
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {number} [opts.timeoutMs]
   * @param {number} [opts.tokenMinValidityMs]
   * @param {typeof AbortController} [opts.AbortController]
   */
  constructor({ baseUrl, fetch, session, clock = systemClock, timeoutMs = 15000, tokenMinValidityMs = 10000, AbortController = globalThis.AbortController }) {
    /** Origin of the server ('' = same origin): where a server path such as an upload URL is. */
    this.origin = baseUrl.replace(/\/$/, '');
    this._base = `${this.origin}/api/v1`;
    this._fetch = fetch;
    this._session = session;
    this._clock = clock;
    this._timeoutMs = timeoutMs;
    this._minValidity = tokenMinValidityMs;
    this._Abort = AbortController;
    session.setRefresher((refreshToken) => this.refresh(refreshToken));
  }

  /**
   * @param {string} method
   * @param {string} path  below /api/v1
   * @param {{body?: any, auth?: boolean}} [opts]
   * @returns {Promise<any>}
   */
  async request(method, path, { body, auth = true } = {}) {
    let res = await this._send(method, path, body, auth ? await this._session.token({ minValidityMs: this._minValidity }) : null);
    if (res.status === 401 && auth) {
      // The token may have been revoked or the clocks disagree: refresh once and try again.
      const token = await this._session.token({ force: true });
      res = await this._send(method, path, body, token);
      if (res.status === 401) {
        this._session.clear();
        throw new SessionExpiredError();
      }
    }
    return this._parse(res);
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {any} body
   * @param {string|null} token
   * @returns {Promise<Response>}
   */
  async _send(method, path, body, token) {
    /** @type {Record<string,string>} */
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const controller = this._Abort ? new this._Abort() : null;
    const timer = controller ? this._clock.setTimeout(() => controller.abort(), this._timeoutMs) : null;
    try {
      return await this._fetch(this._base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller?.signal,
      });
    } catch (err) {
      const aborted = /** @type {any} */ (err)?.name === 'AbortError';
      throw new ApiError(0, 'network', aborted ? 'The server took too long to answer.' : 'Cannot reach the server.');
    } finally {
      if (timer !== null) this._clock.clearTimeout(timer);
    }
  }

  /** @param {Response} res */
  async _parse(res) {
    let data = null;
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (res.ok) return data;
    const err = data && data.error ? data.error : {};
    const retryAfter = Number(res.headers?.get?.('Retry-After'));
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || `The server answered ${res.status}.`, {
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
    });
  }

  // --- auth ---

  /** @param {{email: string, password: string, display_name: string}} body @returns {Promise<AuthAnswer>} */
  register(body) {
    return this.request('POST', '/auth/register', { body, auth: false });
  }

  /** @param {{email: string, password: string}} body @returns {Promise<AuthAnswer>} */
  login(body) {
    return this.request('POST', '/auth/login', { body, auth: false });
  }

  /** @param {string} refreshToken @returns {Promise<AuthAnswer>} */
  refresh(refreshToken) {
    return this.request('POST', '/auth/refresh', { body: { refresh_token: refreshToken }, auth: false });
  }

  /** Revoke the refresh token family. Never refreshes first: a dead session is simply gone. */
  async logout() {
    const token = this._session.accessToken;
    const refresh_token = this._session.refreshToken;
    const res = await this._send('POST', '/auth/logout', refresh_token ? { refresh_token } : {}, token);
    if (!res.ok && res.status !== 401) await this._parse(res);
  }

  /** @returns {Promise<User>} */
  me() {
    return this.request('GET', '/users/me');
  }

  // --- users ---

  /** @param {string} q @param {number} [limit] @returns {Promise<User[]>} */
  searchUsers(q, limit = 20) {
    return this.request('GET', `/users/search?q=${encodeURIComponent(q)}&limit=${limit}`);
  }

  /** @param {string} id @returns {Promise<User>} */
  getUser(id) {
    return this.request('GET', `/users/${encodeURIComponent(id)}`);
  }

  // --- conversations ---

  /** @param {{type?: string, page?: number}} [q] @returns {Promise<Conversation[]>} */
  listConversations({ type, page = 1 } = {}) {
    const params = new URLSearchParams({ page: String(page) });
    if (type) params.set('type', type);
    return this.request('GET', `/conversations?${params}`);
  }

  /** @param {string} id @returns {Promise<Conversation>} */
  getConversation(id) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}`);
  }

  /** @param {{type: 'direct'|'group', participant_ids: string[], title?: string}} body @returns {Promise<Conversation>} */
  createConversation(body) {
    return this.request('POST', '/conversations', { body });
  }

  /** @param {string} id @param {string} title @returns {Promise<Conversation>} */
  renameConversation(id, title) {
    return this.request('PATCH', `/conversations/${encodeURIComponent(id)}`, { body: { title } });
  }

  /** @param {string} id @param {string} userId */
  addMember(id, userId) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/members`, { body: { user_id: userId } });
  }

  /** @param {string} id @param {string} userId */
  removeMember(id, userId) {
    return this.request('DELETE', `/conversations/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
  }

  /** @param {string} id */
  leave(id) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/leave`);
  }

  // --- messages ---

  /**
   * Newest first (seed 000), `before` a message id.
   * @param {string} id @param {{before?: string, limit?: number}} [q] @returns {Promise<Message[]>}
   */
  messagesBefore(id, { before, limit = 50 } = {}) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (before) params.set('before', before);
    return this.request('GET', `/conversations/${encodeURIComponent(id)}/messages?${params}`);
  }

  /**
   * Oldest first, every message with a seq above `afterSeq`.
   * @param {string} id @param {number} afterSeq @param {number} [limit] @returns {Promise<Message[]>}
   */
  messagesAfter(id, afterSeq, limit = 100) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}/messages?after_seq=${afterSeq}&limit=${limit}`);
  }

  /**
   * The message `messageId` with about `limit / 2` older and newer ones, newest first.
   * @param {string} id @param {string} messageId @param {number} [limit] @returns {Promise<Message[]>}
   */
  messagesAround(id, messageId, limit = 50) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}/messages?around=${encodeURIComponent(messageId)}&limit=${limit}`);
  }

  /** @param {string} id @param {string} messageId @param {string} content @returns {Promise<Message>} */
  editMessage(id, messageId, content) {
    return this.request('PATCH', `/conversations/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`, { body: { content } });
  }

  /** Idempotent; answers the tombstone. @param {string} id @param {string} messageId @returns {Promise<Message>} */
  deleteMessage(id, messageId) {
    return this.request('DELETE', `/conversations/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`);
  }

  /**
   * Add (`add`) or remove the user's reaction.
   * @param {string} id @param {string} messageId @param {string} emoji @param {boolean} add @returns {Promise<ReactionsAnswer>}
   */
  react(id, messageId, emoji, add) {
    return this.request(add ? 'PUT' : 'DELETE', `/conversations/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}/reactions/${encodeURIComponent(emoji)}`);
  }

  /**
   * The REST fallback of a send; same `temp_id` idempotency as the WebSocket.
   * @param {string} id @param {{content: string, content_type?: string, temp_id: string, reply_to?: string, attachment_ids?: string[]}} body @returns {Promise<Message>}
   */
  sendMessage(id, body) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/messages`, { body });
  }

  /** @param {string} id @param {string} messageId @returns {Promise<{unread_count: number}>} */
  markRead(id, messageId) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/read`, { body: { last_read_message_id: messageId } });
  }

  /** @param {string} id @returns {Promise<{conversation_id: string, participants: {user_id: string, status: string, last_seen: string|null}[]}>} */
  presence(id) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}/presence`);
  }

  /** @returns {Promise<{total: number, conversations: {conversation_id: string, unread_count: number}[]}>} */
  unread() {
    return this.request('GET', '/unread');
  }

  // --- attachments (issue 14) ---

  /**
   * Announce an upload: where to PUT the bytes.
   * @param {{conversation_id: string, filename: string, mime_type: string, size: number}} body
   * @returns {Promise<{attachment_id: string, upload_url: string, upload_method: string, expires_at: string}>}
   */
  requestUpload(body) {
    return this.request('POST', '/attachments/upload-url', { body });
  }

  /** The bytes are there: the server checks them. @param {string} id @returns {Promise<import('./attachments.js').AttachmentDto>} */
  confirmAttachment(id) {
    return this.request('POST', `/attachments/${encodeURIComponent(id)}/confirm`);
  }

  /** An attachment with fresh signed URLs. @param {string} id @returns {Promise<import('./attachments.js').AttachmentDto>} */
  getAttachment(id) {
    return this.request('GET', `/attachments/${encodeURIComponent(id)}`);
  }

  // --- end-to-end encryption (docs/security.md) ---

  /** Turn a conversation's encryption on (never off). @param {string} id @returns {Promise<Conversation>} */
  enableEncryption(id) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/encryption`);
  }

  /** Register this browser as a device. @param {{public_key: string, name: string}} body */
  registerDevice(body) {
    return this.request('POST', '/devices', { body });
  }

  /** A user's live devices (oneself, or someone sharing a conversation). @param {string} userId */
  userDevices(userId) {
    return this.request('GET', `/users/${encodeURIComponent(userId)}/devices`);
  }

  /** @param {string} deviceId */
  deleteDevice(deviceId) {
    return this.request('DELETE', `/devices/${encodeURIComponent(deviceId)}`);
  }

  /** Every key version wrapped for one device. @param {string} id @param {string} deviceId */
  conversationKeys(id, deviceId) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}/keys?device_id=${encodeURIComponent(deviceId)}`);
  }

  /** Live devices of current members lacking the current key version. @param {string} id */
  missingKeys(id) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}/keys/missing`);
  }

  /**
   * Store version `version` wrapped for devices: the current one (sharing it), or with
   * `new_version` the next one (a new key, made once: a racing upload gets 409
   * `key_version_exists`).
   * @param {string} id @param {number} version
   * @param {{from_device_id: string, wrapped: {device_id: string, wrapped_key: string}[], new_version?: boolean}} body
   * @returns {Promise<{key_version: number, rotated: boolean}>}
   */
  putKeys(id, version, body) {
    return this.request('PUT', `/conversations/${encodeURIComponent(id)}/keys/${version}`, { body });
  }

  /** Ask the members' clients for the current key. @param {string} id @param {string} deviceId */
  requestKey(id, deviceId) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/keys/requests`, { body: { device_id: deviceId } });
  }

  /** @param {object} backup the object `encryptBackup` made */
  putKeyBackup(backup) {
    return this.request('PUT', '/users/me/key_backup', { body: backup });
  }

  getKeyBackup() {
    return this.request('GET', '/users/me/key_backup');
  }

  deleteKeyBackup() {
    return this.request('DELETE', '/users/me/key_backup');
  }
}
