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
    this.convs.set(id, { conv, messages: [], reads: new Map(members.map((m) => [m, 0])) });
    return conv;
  }

  /** A message written by someone (not through the SDK). */
  addMessage(convId, senderId, content, tempId = null) {
    const c = this.convs.get(convId);
    const seq = c.messages.length + 1;
    const msg = {
      id: `m-${convId}-${seq}`,
      conversation_id: convId,
      seq,
      sender_id: senderId,
      content,
      content_type: 'text',
      reply_to: null,
      temp_id: tempId,
      created_at: new Date(this.clock.now()).toISOString(),
      edited_at: null,
      deleted_at: null,
      status: 'sent',
    };
    c.messages.push(msg);
    c.conv.last_seq = seq;
    c.conv.last_message_at = msg.created_at;
    c.reads.set(senderId, seq);
    return msg;
  }

  auth() {
    this.tokenSeq++;
    return { access_token: `at-${this.tokenSeq}`, refresh_token: `rt-${this.tokenSeq}`, token_type: 'bearer', expires_in: this.expiresIn, user: this.me };
  }

  callsTo(method, prefix) {
    return this.calls.filter((c) => c.method === method && c.path.startsWith(prefix));
  }

  _conversationJson(c) {
    const last = c.messages[c.messages.length - 1] ?? null;
    const read = c.reads.get(this.me.id) ?? 0;
    return { ...c.conv, participants: c.conv.participants.map((p) => ({ ...p, read_seq: c.reads.get(p.user_id) ?? 0 })), last_message: last, unread_count: Math.max(0, c.conv.last_seq - read) };
  }

  async _handle(url, init) {
    const u = new URL(url);
    const path = u.pathname.replace(/^\/api\/v1/, '') + u.search;
    const method = (init.method || 'GET').toUpperCase();
    const body = init.body ? JSON.parse(init.body) : undefined;
    const auth = init.headers?.Authorization ?? null;
    this.calls.push({ method, path, body, auth, at: this.clock.now() });
    await Promise.resolve();
    if (this.down) throw new TypeError('fetch failed');
    if (this.override) {
      const o = this.override(method, path, body);
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
      if (method === 'GET' && sub === '/messages') {
        const limit = Number(q.get('limit') || 50);
        if (q.has('after_seq')) {
          const after = Number(q.get('after_seq'));
          return json(200, c.messages.filter((x) => x.seq > after).slice(0, limit));
        }
        let list = [...c.messages].reverse();
        if (q.get('before')) {
          const idx = list.findIndex((x) => x.id === q.get('before'));
          list = idx >= 0 ? list.slice(idx + 1) : [];
        }
        return json(200, list.slice(0, limit));
      }
      if (method === 'POST' && sub === '/messages') {
        const existing = c.messages.find((x) => x.temp_id === body.temp_id && x.sender_id === this.me.id);
        if (existing) return json(200, existing);
        return json(201, this.addMessage(c.conv.id, this.me.id, body.content, body.temp_id));
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

function json(status, body) {
  return new Response(body === null || status === 204 ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}
