// Fakes for the SDK's injected environment: a clock that only moves when told, WebSockets the
// test plays the server side of, an in-memory REST backend, storage and a document.

/** Let every pending promise chain run (fetch fakes resolve through microtasks). */
export async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

export class FakeClock {
  constructor(start = Date.UTC(2026, 0, 1, 12, 0, 0)) {
    this._now = start;
    this._seq = 0;
    /** @type {Map<number, {at: number, fn: () => void, id: number}>} */
    this._timers = new Map();
    this.now = () => this._now;
    this.setTimeout = (/** @type {() => void} */ fn, /** @type {number} */ ms) => {
      const id = ++this._seq;
      this._timers.set(id, { at: this._now + Math.max(0, ms || 0), fn, id });
      return id;
    };
    this.clearTimeout = (/** @type {number} */ id) => {
      this._timers.delete(id);
    };
  }

  /** Move time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms) {
    const end = this._now + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const t of this._timers.values()) {
        if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      }
      if (!next) break;
      this._timers.delete(next.id);
      this._now = next.at;
      next.fn();
      await settle();
    }
    this._now = end;
    await settle();
  }

  /** Advance to an absolute offset (ms) from `origin`. */
  async advanceTo(origin, offset) {
    await this.advance(origin + offset - this._now);
  }

  get pendingTimers() {
    return this._timers.size;
  }
}

export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

export class FakeDocument {
  constructor() {
    this.visibilityState = 'visible';
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  listenerCount(type) {
    return this.listeners.get(type)?.size ?? 0;
  }
  dispatch(type) {
    for (const fn of [...(this.listeners.get(type) ?? [])]) fn({ type });
  }
  setVisible(visible) {
    this.visibilityState = visible ? 'visible' : 'hidden';
    this.dispatch('visibilitychange');
  }
}

/**
 * A WebSocket class whose instances the test drives from the server side.
 * @returns {any} the class, with `instances` and `last()`
 */
export function makeFakeWebSocket(clock) {
  class FakeWebSocket {
    static instances = [];
    static last() {
      return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    }
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.openedAt = clock ? clock.now() : 0;
      this.onopen = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      /** Answer pings like a healthy server. */
      this.autoPong = false;
      FakeWebSocket.instances.push(this);
    }
    get token() {
      return new URL(this.url).searchParams.get('token');
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      const frame = JSON.parse(data);
      this.sent.push(frame);
      if (this.autoPong && frame.type === 'ping') queueMicrotask(() => this.readyState === 1 && this.receive({ type: 'pong' }));
    }
    close(code = 1000, reason = '') {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
    // --- server side ---
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }
    /** Accept and send `hello`. */
    hello(extra = {}) {
      this.accept();
      this.receive({ type: 'hello', user: { id: 'u-me', email: 'me@example.com', display_name: 'Me' }, session_id: 's1', server_time: new Date(clock ? clock.now() : Date.now()).toISOString(), heartbeat_interval_ms: 30000, conversations: [], ...extra });
    }
    receive(frame) {
      this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }
    serverClose(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    fail() {
      this.onerror?.({});
      this.serverClose(1006);
    }
    framesOfType(type) {
      return this.sent.filter((f) => f.type === type);
    }
  }
  return FakeWebSocket;
}

/**
 * An in-memory REST backend answering the SDK's fetch calls (SPEC section 5 shapes).
 */
export class FakeBackend {
  constructor(clock) {
    this.clock = clock;
    this.me = { id: 'u-me', email: 'me@example.com', display_name: 'Me', avatar_url: null };
    /** @type {Map<string, any>} */
    this.users = new Map([[this.me.id, this.me]]);
    /** @type {Map<string, {conv: any, messages: any[], reads: Map<string, number>}>} */
    this.convs = new Map();
    /** @type {{method: string, path: string, body: any, auth: string|null}[]} */
    this.calls = [];
    this.down = false;
    this.tokenSeq = 0;
    this.expiresIn = 900;
    this.refreshFails = false;
    /** @type {((method: string, path: string, body: any) => any)|null} */
    this.override = null;
    /** Told of every change a REST call made (what the server would broadcast): `message_updated`, `message_deleted`, `reaction` frames. @type {((frame: any) => void)|null} */
    this.onChange = null;
    this.editWindowMs = 48 * 3600_000;
    /** Attachments (issue 14), by id. @type {Map<string, any>} */
    this.attachments = new Map();
    this.attachmentSeq = 0;
    this.maxAttachmentBytes = 50 * 1024 * 1024;
    this.allowedTypes = ['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'video/mp4', 'audio/mpeg', 'application/pdf', 'application/msword', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'];
    this.fetch = (url, init = {}) => this._handle(url, init);
  }

  addUser(id, name) {
    const u = { id, email: `${id}@example.com`, display_name: name, avatar_url: null };
    this.users.set(id, u);
    return u;
  }

  addConversation(id, { type = 'direct', title = null, members = ['u-me', 'u-b'] } = {}) {
    for (const m of members) if (!this.users.has(m)) this.addUser(m, m.replace('u-', '').toUpperCase());
    const conv = {
      id,
      type,
      title,
      created_by: members[0],
      created_at: new Date(this.clock.now() - 3600_000).toISOString(),
      last_seq: 0,
      last_message_at: null,
      participants: members.map((m) => ({ user_id: m, display_name: this.users.get(m).display_name, email: this.users.get(m).email, avatar_url: null, role: m === members[0] ? 'owner' : 'member', joined_at: new Date(0).toISOString(), delivered_seq: 0, read_seq: 0, last_seen: null })),
    };
    this.convs.set(id, { conv, messages: [], reads: new Map(members.map((m) => [m, 0])), changeSeq: 0, changes: [] });
    return conv;
  }

  /**
   * An attachment as a member sees it, links signed (as the server signs them).
   * @param {any} a
   */
  attachmentJson(a) {
    const image = a.mime_type.startsWith('image/');
    return {
      id: a.id,
      filename: a.filename,
      mime_type: a.mime_type,
      size: a.size,
      width: a.width ?? null,
      height: a.height ?? null,
      thumbnail_url: image ? `${this.origin ?? ''}/api/v1/attachments/${a.id}/content?thumb=1&sig=s${this.attachmentSeq}` : null,
      url: `${this.origin ?? ''}/api/v1/attachments/${a.id}/content?sig=s${this.attachmentSeq}`,
    };
  }

  /** A confirmed attachment made directly (someone else's upload). */
  addAttachment(convId, uploaderId, { filename, mime_type, bytes, width = null, height = null }) {
    const id = `00000000-0000-4000-8000-${String(++this.attachmentSeq).padStart(12, '0')}`;
    const a = { id, conversation_id: convId, uploader: uploaderId, filename, mime_type, size: bytes.length, bytes, width, height, confirmed: true, sent: false };
    this.attachments.set(id, a);
    return a;
  }

  /** A message written by someone (not through the SDK). */
  addMessage(convId, senderId, content, tempId = null, replyTo = null, attachmentIds = []) {
    const c = this.convs.get(convId);
    const seq = c.messages.length + 1;
    const msg = {
      id: `m-${convId}-${seq}`,
      conversation_id: convId,
      seq,
      sender_id: senderId,
      content,
      content_type: 'text',
      reply_to: replyTo,
      temp_id: tempId,
      created_at: new Date(this.clock.now()).toISOString(),
      edited_at: null,
      deleted_at: null,
      status: 'sent',
      deleted_by: null,
      change_seq: 0,
      reactions: [],
      reply_preview: null,
      attachments: [],
    };
    Object.defineProperty(msg, 'attachmentIds', { value: [...attachmentIds], enumerable: false });
    for (const id of attachmentIds) {
      const a = this.attachments.get(id);
      if (a) a.sent = true;
    }
    /** emoji -> user ids, in the order they reacted. @type {Map<string, string[]>} */
    Object.defineProperty(msg, 'reactors', { value: new Map(), enumerable: false });
    c.messages.push(msg);
    c.conv.last_seq = seq;
    c.conv.last_message_at = msg.created_at;
    c.reads.set(senderId, seq);
    return msg;
  }

  /**
   * A message as the server shows it to `viewer` (`me` of reactions when given, the reply's
   * preview as the original is now).
   * @param {string} convId @param {any} m @param {string|null} [viewer]
   */
  messageJson(convId, m, viewer = this.me.id) {
    const c = this.convs.get(convId);
    const out = { ...m, reactions: this._reactions(m, viewer), attachments: m.deleted_at ? [] : (m.attachmentIds ?? []).map((id) => this.attachments.get(id)).filter(Boolean).map((a) => this.attachmentJson(a)) };
    if (m.reply_to) {
      const o = c?.messages.find((x) => x.id === m.reply_to);
      // The server cannot quote an encrypted original: it says so (the client shows its own decryption).
      const encrypted = o?.content_type === 'encrypted' && !o.deleted_at;
      out.reply_preview = o ? { id: o.id, sender_id: o.sender_id, content: o.deleted_at ? '' : encrypted ? 'Encrypted message' : [...o.content].slice(0, 100).join(''), ...(encrypted ? { content_type: 'encrypted' } : {}), deleted: !!o.deleted_at } : null;
    }
    return out;
  }

  /** @param {any} m @param {string|null} viewer */
  _reactions(m, viewer) {
    return [...(m.reactors ?? new Map())].filter(([, ids]) => ids.length).map(([emoji, ids]) => ({ emoji, count: ids.length, user_ids: ids.slice(0, 10), ...(viewer ? { me: ids.includes(viewer) } : {}) }));
  }

  /** Someone edits a message (as the server would): returns the `message_updated` frame. */
  editMessage(convId, messageId, content) {
    const c = this.convs.get(convId);
    const m = c.messages.find((x) => x.id === messageId);
    m.content = content;
    m.edited_at = new Date(this.clock.now()).toISOString();
    m.change_seq = ++c.changeSeq;
    c.changes.push({ change_seq: m.change_seq, message_id: m.id });
    return { type: 'message_updated', conversation_id: convId, message: this.messageJson(convId, m, null), change_seq: m.change_seq };
  }

  /** Someone deletes a message: returns the `message_deleted` frame. */
  deleteMessage(convId, messageId, by) {
    const c = this.convs.get(convId);
    const m = c.messages.find((x) => x.id === messageId);
    m.content = '';
    m.deleted_at = new Date(this.clock.now()).toISOString();
    m.deleted_by = by;
    m.reactors.clear();
    m.change_seq = ++c.changeSeq;
    c.changes.push({ change_seq: m.change_seq, message_id: m.id });
    return { type: 'message_deleted', conversation_id: convId, message_id: m.id, seq: m.seq, deleted_at: m.deleted_at, deleted_by: by, change_seq: m.change_seq };
  }

  /** Someone adds or removes a reaction: returns the `reaction` frame, or null when nothing changed. */
  react(convId, messageId, userId, emoji, added) {
    const c = this.convs.get(convId);
    const m = c.messages.find((x) => x.id === messageId);
    const ids = m.reactors.get(emoji) ?? [];
    if (added === ids.includes(userId)) return null;
    if (added) m.reactors.set(emoji, [...ids, userId]);
    else if (ids.length === 1) m.reactors.delete(emoji);
    else m.reactors.set(emoji, ids.filter((u) => u !== userId));
    m.change_seq = ++c.changeSeq;
    c.changes.push({ change_seq: m.change_seq, message_id: m.id });
    return { type: 'reaction', conversation_id: convId, message_id: m.id, user_id: userId, emoji, added, reactions: this._reactions(m, null), change_seq: m.change_seq };
  }

  /**
   * What a `sync` with a change cursor replays: each message changed after it, once, as it is
   * now, in change order (`message_deleted` for tombstones, `message_updated` otherwise).
   * @param {string} convId @param {number} after
   */
  changesAfter(convId, after) {
    const c = this.convs.get(convId);
    const latest = new Map();
    for (const ch of c.changes) if (ch.change_seq > after) latest.set(ch.message_id, ch.change_seq);
    return [...latest]
      .sort((a, b) => a[1] - b[1])
      .map(([id]) => {
        const m = c.messages.find((x) => x.id === id);
        return m.deleted_at
          ? { type: 'message_deleted', conversation_id: convId, message_id: m.id, seq: m.seq, deleted_at: m.deleted_at, deleted_by: m.deleted_by, change_seq: m.change_seq }
          : { type: 'message_updated', conversation_id: convId, message: this.messageJson(convId, m), change_seq: m.change_seq };
      });
  }

  auth() {
    this.tokenSeq++;
    return { access_token: `at-${this.tokenSeq}`, refresh_token: `rt-${this.tokenSeq}`, token_type: 'bearer', expires_in: this.expiresIn, user: this.me };
  }

  callsTo(method, prefix) {
    return this.calls.filter((c) => c.method === method && c.path.startsWith(prefix));
  }

  _conversationJson(c) {
    const lastRaw = c.messages[c.messages.length - 1] ?? null;
    const last = lastRaw ? this.messageJson(c.conv.id, lastRaw) : null;
    const read = c.reads.get(this.me.id) ?? 0;
    return { ...c.conv, participants: c.conv.participants.map((p) => ({ ...p, read_seq: c.reads.get(p.user_id) ?? 0 })), last_message: last, unread_count: Math.max(0, c.conv.last_seq - read) };
  }

  async _handle(url, init) {
    const u = new URL(url);
    const path = u.pathname.replace(/^\/api\/v1/, '') + u.search;
    const method = (init.method || 'GET').toUpperCase();
    const body = typeof init.body === 'string' && init.body ? JSON.parse(init.body) : init.body || undefined;
    const auth = init.headers?.Authorization ?? null;
    this.calls.push({ method, path, body, auth, at: this.clock.now() });
    await Promise.resolve();
    if (this.down) throw new TypeError('fetch failed');
    if (this.override) {
      const o = await this.override(method, path, body);
      if (o) return json(o.status ?? 200, o.body);
    }
    const route = u.pathname.replace(/^\/api\/v1/, '');
    const q = u.searchParams;
    let m;
    if (method === 'POST' && route === '/auth/login') return json(200, this.auth());
    if (method === 'POST' && route === '/auth/register') return json(201, this.auth());
    if (method === 'POST' && route === '/auth/refresh') {
      if (this.refreshFails) return json(401, { error: { code: 'unauthorized', message: 'refresh refused' } });
      return json(200, this.auth());
    }
    if (method === 'POST' && route === '/auth/logout') return json(204, null);
    if (method === 'GET' && route === '/users/me') return json(200, this.me);
    if (method === 'GET' && (m = route.match(/^\/users\/([^/]+)$/)) && m[1] !== 'search') {
      const user = this.users.get(m[1]);
      return user ? json(200, user) : json(404, { error: { code: 'not_found', message: 'no such user' } });
    }
    if (method === 'GET' && route === '/users/search') {
      const needle = (q.get('q') || '').toLowerCase();
      return json(200, [...this.users.values()].filter((x) => x.display_name.toLowerCase().includes(needle)));
    }
    if (method === 'GET' && route === '/conversations') {
      const page = Number(q.get('page') || 1);
      const all = [...this.convs.values()].map((c) => this._conversationJson(c));
      return json(200, page === 1 ? all : []);
    }
    if (method === 'POST' && route === '/conversations') {
      const id = `c-new-${this.convs.size + 1}`;
      this.addConversation(id, { type: body.type, title: body.title ?? null, members: ['u-me', ...body.participant_ids] });
      return json(201, this._conversationJson(this.convs.get(id)));
    }
    if ((m = route.match(/^\/attachments(?:\/([^/]+))?\/?(upload-url|confirm|content)?$/))) {
      const fail = (/** @type {number} */ status, /** @type {string} */ code) => json(status, { error: { code, message: code } });
      if (method === 'POST' && route === '/attachments/upload-url') {
        const c = this.convs.get(body?.conversation_id);
        if (!c || !c.conv.participants.some((p) => p.user_id === this.me.id)) return fail(403, 'not_participant');
        if (!body.filename || /[\/\\\u0000-\u001f]/.test(body.filename)) return fail(422, 'malformed_filename');
        if (!(body.size > 0)) return fail(422, 'empty_file');
        if (body.size > this.maxAttachmentBytes) return fail(413, 'too_large');
        const allowed = c.conv.encrypted ? body.mime_type === 'application/octet-stream' || this.allowedTypes.includes(body.mime_type) : this.allowedTypes.includes(body.mime_type);
        if (!allowed) return fail(415, 'type_not_allowed');
        const id = `00000000-0000-4000-8000-${String(++this.attachmentSeq).padStart(12, '0')}`;
        this.attachments.set(id, { id, conversation_id: c.conv.id, uploader: this.me.id, filename: body.filename, mime_type: body.mime_type, size: body.size, bytes: null, confirmed: false, sent: false, encrypted: !!c.conv.encrypted });
        return json(201, { attachment_id: id, upload_url: `/api/v1/attachments/${id}/content?upload=1&sig=u${id.slice(-4)}`, upload_method: 'PUT', expires_at: new Date(this.clock.now() + 3600_000).toISOString() });
      }
      const a = this.attachments.get(m[1] ?? '');
      if (!a) return fail(404, 'not_found');
      if (method === 'PUT' && m[2] === 'content') {
        if (init.headers?.Authorization) return fail(400, 'unexpected_authorization');
        a.bytes = body instanceof Uint8Array ? body : new Uint8Array(await new Response(body).arrayBuffer());
        return json(204, null);
      }
      if (method === 'POST' && m[2] === 'confirm') {
        if (!a.bytes) return fail(422, 'upload_missing');
        if (a.bytes.length !== a.size) return fail(422, 'upload_missing');
        if (!a.encrypted || a.mime_type !== 'application/octet-stream') {
          const png = a.bytes[0] === 0x89 && a.bytes[1] === 0x50 && a.bytes[2] === 0x4e && a.bytes[3] === 0x47;
          const jpeg = a.bytes[0] === 0xff && a.bytes[1] === 0xd8;
          const pdf = a.bytes[0] === 0x25 && a.bytes[1] === 0x50 && a.bytes[2] === 0x44 && a.bytes[3] === 0x46;
          const ok = a.mime_type === 'image/png' ? png : a.mime_type === 'image/jpeg' ? jpeg : a.mime_type === 'application/pdf' ? pdf : true;
          if (!ok) return fail(415, 'content_mismatch');
          if (png && a.bytes.length >= 24) {
            const v = new DataView(a.bytes.buffer, a.bytes.byteOffset, a.bytes.byteLength);
            a.width = v.getUint32(16);
            a.height = v.getUint32(20);
          }
        }
        a.confirmed = true;
        return json(200, this.attachmentJson(a));
      }
      if (method === 'GET' && m[2] === 'content') {
        if (!a.bytes) return fail(404, 'not_found');
        return new Response(a.bytes, { status: 200, headers: { 'Content-Type': a.mime_type } });
      }
      if (method === 'GET' && !m[2]) return a.confirmed ? json(200, this.attachmentJson(a)) : fail(404, 'not_found');
    }
    if (method === 'GET' && route === '/unread') {
      const conversations = [...this.convs.values()].map((c) => ({ conversation_id: c.conv.id, unread_count: Math.max(0, c.conv.last_seq - (c.reads.get(this.me.id) ?? 0)) }));
      return json(200, { total: conversations.reduce((a, r) => a + r.unread_count, 0), conversations });
    }
    if ((m = route.match(/^\/conversations\/([^/]+)(\/.*)?$/))) {
      const c = this.convs.get(m[1]);
      if (!c) return json(403, { error: { code: 'not_participant', message: 'not a participant' } });
      const sub = m[2] || '';
      if (method === 'GET' && sub === '') return json(200, this._conversationJson(c));
      if (method === 'PATCH' && sub === '') {
        c.conv.title = body.title;
        return json(200, this._conversationJson(c));
      }
      if (method === 'POST' && sub === '/members') {
        const u = this.users.get(body.user_id);
        if (!u) return json(404, { error: { code: 'not_found', message: 'no such user' } });
        c.conv.participants.push({ user_id: u.id, display_name: u.display_name, email: u.email, avatar_url: null, role: 'member', joined_at: new Date(this.clock.now()).toISOString(), delivered_seq: 0, read_seq: 0, last_seen: null });
        c.reads.set(u.id, 0);
        return json(200, this._conversationJson(c));
      }
      if ((m = sub.match(/^\/members\/([^/]+)$/)) && method === 'DELETE') {
        c.conv.participants = c.conv.participants.filter((p) => p.user_id !== m[1]);
        return json(204, null);
      }
      if (method === 'POST' && sub === '/leave') {
        this.convs.delete(c.conv.id);
        return json(204, null);
      }
      if (method === 'GET' && sub === '/presence') return json(200, { conversation_id: c.conv.id, participants: c.conv.participants.map((p) => ({ user_id: p.user_id, status: 'online', last_seen: null })) });
      const view = (/** @type {any} */ x) => this.messageJson(c.conv.id, x);
      const fail = (/** @type {number} */ status, /** @type {string} */ code, /** @type {string} */ message) => json(status, { error: { code, message } });
      if (method === 'GET' && sub === '/messages') {
        const limit = Number(q.get('limit') || 50);
        if (q.has('after_seq')) {
          const after = Number(q.get('after_seq'));
          return json(200, c.messages.filter((x) => x.seq > after).slice(0, limit).map(view));
        }
        if (q.has('around')) {
          const at = c.messages.findIndex((x) => x.id === q.get('around'));
          if (at < 0) return fail(404, 'not_found', 'no such message');
          const half = Math.floor(limit / 2);
          return json(200, c.messages.slice(Math.max(0, at - half), at + half + 1).reverse().map(view));
        }
        let list = [...c.messages].reverse();
        if (q.get('before')) {
          const idx = list.findIndex((x) => x.id === q.get('before'));
          list = idx >= 0 ? list.slice(idx + 1) : [];
        }
        return json(200, list.slice(0, limit).map(view));
      }
      if (method === 'POST' && sub === '/messages') {
        const existing = c.messages.find((x) => x.temp_id === body.temp_id && x.sender_id === this.me.id);
        if (existing) return json(200, view(existing));
        const ids = body.attachment_ids ?? [];
        for (const id of ids) {
          const a = this.attachments.get(id);
          if (!a || !a.confirmed || a.conversation_id !== c.conv.id || a.uploader !== this.me.id) return fail(422, 'attachment_unavailable', 'not an attachment of yours');
          if (a.sent) return fail(409, 'attachment_already_sent', 'sent already');
        }
        if (!ids.length && !String(body.content ?? '').trim()) return fail(422, 'validation_failed', 'content must not be blank');
        const made = this.addMessage(c.conv.id, this.me.id, body.content, body.temp_id, body.reply_to ?? null, ids);
        made.content_type = body.content_type ?? 'text';
        return json(201, view(made));
      }
      if ((m = sub.match(/^\/messages\/([^/]+)(\/reactions\/([^/]+))?$/))) {
        const msg = c.messages.find((x) => x.id === m[1]);
        if (!msg) return fail(404, 'not_found', 'no such message');
        if (m[3] !== undefined && (method === 'PUT' || method === 'DELETE')) {
          const emoji = decodeURIComponent(m[3]);
          if (!emoji || [...emoji].length > 8 || /^[\w\s]+$/.test(emoji)) return fail(422, 'validation_failed', 'not an emoji');
          if (msg.deleted_at) return fail(409, 'message_deleted', 'the message was deleted');
          const frame = this.react(c.conv.id, msg.id, this.me.id, emoji, method === 'PUT');
          if (frame) this.onChange?.(frame);
          return json(200, { message_id: msg.id, change_seq: msg.change_seq, reactions: this._reactions(msg, this.me.id) });
        }
        if (method === 'PATCH' && m[3] === undefined) {
          if (msg.sender_id !== this.me.id) return fail(403, 'not_sender', 'only the sender can edit');
          if (msg.deleted_at) return fail(409, 'message_deleted', 'the message was deleted');
          if (this.clock.now() - Date.parse(msg.created_at) > this.editWindowMs) return fail(409, 'edit_window_closed', 'too late to edit');
          if (typeof body?.content !== 'string' || !body.content.trim()) return fail(422, 'validation_failed', 'content must not be blank');
          const frame = this.editMessage(c.conv.id, msg.id, body.content);
          this.onChange?.(frame);
          return json(200, view(msg));
        }
        if (method === 'DELETE' && m[3] === undefined) {
          if (msg.deleted_at) return json(200, view(msg));
          const role = c.conv.participants.find((p) => p.user_id === this.me.id)?.role;
          if (msg.sender_id !== this.me.id && !(c.conv.type === 'group' && (role === 'owner' || role === 'admin'))) return fail(403, 'not_sender', 'not yours to delete');
          const frame = this.deleteMessage(c.conv.id, msg.id, this.me.id);
          this.onChange?.(frame);
          return json(200, view(msg));
        }
      }
      if (method === 'POST' && sub === '/read') {
        const msg = c.messages.find((x) => x.id === body.last_read_message_id);
        c.reads.set(this.me.id, Math.max(c.reads.get(this.me.id) ?? 0, msg?.seq ?? 0));
        return json(200, { unread_count: Math.max(0, c.conv.last_seq - c.reads.get(this.me.id)) });
      }
    }
    return json(404, { error: { code: 'not_found', message: `no route ${method} ${route}` } });
  }
}

/**
 * An XMLHttpRequest class for uploads whose instances the test answers (or, with `backend`,
 * that answer themselves through its fetch after `autoMs` of fake time... immediately).
 * @param {{backend?: FakeBackend}} [opts]
 */
export function makeFakeXHR({ backend } = {}) {
  class FakeXHR {
    static instances = [];
    static last() {
      return FakeXHR.instances[FakeXHR.instances.length - 1];
    }
    constructor() {
      this.headers = {};
      this.status = 0;
      this.responseText = '';
      this.upload = { onprogress: null };
      this.aborted = false;
      this.body = undefined;
      this._responseHeaders = {};
      FakeXHR.instances.push(this);
    }
    open(method, url) {
      this.method = method;
      this.url = url;
    }
    setRequestHeader(k, v) {
      this.headers[k] = v;
    }
    getResponseHeader(k) {
      return this._responseHeaders[k] ?? null;
    }
    send(body) {
      this.body = body;
      if (backend) {
        queueMicrotask(async () => {
          const res = await backend.fetch(this.url, { method: this.method, headers: this.headers, body });
          const size = body?.byteLength ?? body?.size ?? 0;
          this.progress(size, size);
          this.respond(res.status, await res.text());
        });
      }
    }
    abort() {
      if (this.aborted || this.status) return;
      this.aborted = true;
      this.onabort?.({});
    }
    // --- server side ---
    progress(loaded, total) {
      this.upload.onprogress?.({ loaded, total, lengthComputable: true });
    }
    respond(status, body = '', headers = {}) {
      if (this.aborted) return;
      this.status = status;
      this.responseText = typeof body === 'string' ? body : JSON.stringify(body);
      this._responseHeaders = headers;
      this.onload?.({});
    }
    fail() {
      if (this.aborted) return;
      this.onerror?.({});
    }
  }
  return FakeXHR;
}

function json(status, body) {
  return new Response(body === null || status === 204 ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}
