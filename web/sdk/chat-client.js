// ChatClient: the SDK's front door. It owns the session, the one WebSocket, the REST fallback,
// and an in-memory model of the user's conversations and messages that apps render from.
//
//   const client = new ChatClient();              // same origin, browser globals
//   await client.login({ email, password });
//   client.on('conversations', render);
//   client.start();
//
// Everything it needs from the environment (fetch, WebSocket, storage, clock, document) can be
// injected, so it runs in any app and under tests with fakes. See docs/client.md.

import { Emitter } from './events.js';
import { Timer, systemClock } from './clock.js';
import { resolveTimings } from './timings.js';
import { Session, SessionExpiredError } from './session.js';
import { RestClient, ApiError } from './rest.js';
import { Connection } from './connection.js';
import { MessageThread, mergeCopy, withMe } from './thread.js';
import { Outbox } from './outbox.js';
import { TypingSender, TypingRoster } from './typing.js';
import { Poller } from './poller.js';
import { ChatCache, DEFAULT_CACHE_LIMIT } from './cache.js';
import { E2EE, NoKeyError } from './e2ee.js';
import { keyStoreDatabaseName } from './keystore.js';
import { ENCRYPTED_NAME, ENCRYPTED_TYPE, MAX_ATTACHMENTS, Uploader, UploadCancelled, bytesOf, decryptFile, encryptFile, isInlineImage, makeThumbnail, messagePlaintext, parsePlaintext, typeOf } from './attachments.js';

/**
 * @typedef {import('./rest.js').Conversation} Conversation
 * @typedef {import('./rest.js').Participant} Participant
 * @typedef {import('./rest.js').Message} Message
 * @typedef {import('./session.js').User} User
 * @typedef {import('./thread.js').HeldMessage} HeldMessage
 * @typedef {import('./connection.js').ConnectionState} ConnectionState
 *
 * @typedef {object} ConversationView
 * @property {string} id
 * @property {'direct'|'group'} type
 * @property {string|null} title       the group title as set
 * @property {string} name             what to call it: the title, or the other person's name
 * @property {Participant[]} participants
 * @property {Participant[]} others    everyone but the signed-in user
 * @property {string|null} my_role
 * @property {string} created_at
 * @property {number} last_seq
 * @property {HeldMessage|Message|null} last_message  newest message, our unacknowledged ones included
 * @property {string|null} last_activity_at
 * @property {number} unread_count
 * @property {boolean} encrypted     end-to-end encrypted (never turns off)
 * @property {number} key_version    newest key version the server stores (0: none yet)
 * @property {boolean} key_held       this device holds that version (it can send)
 *
 * @typedef {object} Receipt
 * @property {'sending'|'sent'|'delivered'|'read'|'failed'} status
 * @property {number} deliveredTo   other members who have it
 * @property {number} readBy        other members who read it
 * @property {number} of            other members
 *
 * @typedef {object} ChatClientEvents
 * @property {{state: ConnectionState, previous: ConnectionState, attempt: number, nextRetryAt: number|null, everConnected: boolean}} state
 * @property {boolean} offline            no network (browser offline, or the link went silent), or back
 * @property {void} conversations          the list (or anything shown in it) changed
 * @property {{conversationId: string}} messages   a conversation's messages changed (new, status, ticks)
 * @property {{conversationId: string, message: HeldMessage, live: boolean}} message  a message we did not hold arrived
 * @property {{conversationId: string, userIds: string[]}} typing
 * @property {{userId: string, status: string, last_seen: string|null}} presence
 * @property {{total: number}} unread
 * @property {{conversationId: string}} removed  we are no longer a member (removed, left)
 * @property {User|null} session          signed in (user) or out (null)
 * @property {void} session_expired        the session ended; sign in again
 * @property {{code: string, message: string}} error  a server error not tied to one of our messages
 * @property {MessageChange} message_changed  a message was edited, deleted or (un)reacted to (ours optimistically, or the server's)
 * @property {{conversationId: string, messageId: string, kind: 'edit'|'delete'|'reaction', error: Error}} change_failed  an edit, deletion or reaction of ours was refused and rolled back
 *
 * @typedef {object} MessageChange
 * @property {string} conversationId
 * @property {string} messageId
 * @property {'edit'|'delete'|'reaction'} kind
 * @property {HeldMessage|null} message   the message as held now (null when not held)
 * @property {boolean} local   our own optimistic change (or its rollback), not yet the server's word
 */

/** The six reactions offered first. */
export const QUICK_REACTIONS = Object.freeze(['👍', '❤️', '😂', '😮', '😢', '🙏']);
/** How much of the original a reply quotes (the server's `reply_preview`). */
const PREVIEW_CHARS = 100;
/** What the server (and the cache) quote of an encrypted message. */
export const ENCRYPTED_PREVIEW = 'Encrypted message';

/** Page size of history. */
const PAGE = 50;
/** Conversations whose members' presence is fetched on connect. */
const PRESENCE_PREFETCH = 25;
/** Oldest first pages when catching up. */
const CATCH_UP_PAGE = 100;
const STATUS_RANK = { sending: 0, sent: 1, delivered: 2, read: 3 };

/**
 * @typedef {object} ConversationState
 * @property {Conversation} data      the server's latest view of it
 * @property {number} lastSeq
 * @property {number} readSeq         our own read watermark
 * @property {Map<string, {delivered: number, read: number}>} marks  other members' watermarks
 * @property {number} peerDelivered   lowest delivered watermark among the others (hello/sync_done)
 * @property {number} peerRead
 * @property {number|null} lastChange  highest change number applied (edits, deletions, reactions); null: none known yet
 * @property {boolean} [staleCache]   restored from a cache without a change cursor: its messages are not trusted
 */

/**
 * @extends {Emitter<ChatClientEvents>}
 */
export class ChatClient extends Emitter {
  /**
   * @param {object} [opts]
   * @param {string} [opts.baseUrl]   server origin; default the page's origin
   * @param {string} [opts.wsUrl]     WebSocket endpoint; default derived from baseUrl + `/ws`
   * @param {typeof fetch} [opts.fetch]
   * @param {any} [opts.WebSocket]    constructor; null to force HTTP polling
   * @param {Storage|null} [opts.storage]  session and offline queue; default localStorage
   * @param {IDBFactory|null} [opts.indexedDB]  the local cache of conversations and recent messages; default globalThis.indexedDB, null: no cache
   * @param {number} [opts.cacheLimit]  messages kept in the cache per conversation (default 200)
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Document|any} [opts.document]   for visibility (reconnect, read marks, away)
   * @param {Window|any} [opts.window]       for the `online` event
   * @param {() => string} [opts.randomUUID]
   * @param {any} [opts.locks]        Web Locks, to refresh tokens once across tabs; default navigator.locks
   * @param {Partial<import('./timings.js').Timings>} [opts.timings]
   * @param {Pick<Console,'warn'|'debug'|'error'>} [opts.logger]
   * @param {string} [opts.deviceName]  what this browser is called in the device list (default e.g. "Chrome on Linux")
   * @param {any} [opts.XMLHttpRequest]  constructor for uploads (progress events); default the global one; null: fetch
   * @param {number[]} [opts.uploadRetryMs]  waits before retrying a failed upload step
   */
  constructor(opts = {}) {
    super();
    const g = /** @type {any} */ (globalThis);
    this._clock = opts.clock ?? systemClock;
    this._t = resolveTimings(opts.timings);
    this._storage = opts.storage !== undefined ? opts.storage : defaultStorage();
    this._idb = opts.indexedDB !== undefined ? opts.indexedDB : defaultIndexedDB();
    this._cacheLimit = opts.cacheLimit ?? DEFAULT_CACHE_LIMIT;
    this._fetch = opts.fetch ?? (g.fetch ? g.fetch.bind(g) : undefined);
    this._WebSocket = opts.WebSocket !== undefined ? opts.WebSocket : g.WebSocket;
    this._document = opts.document !== undefined ? opts.document : g.document;
    this._window = opts.window !== undefined ? opts.window : g.window;
    this._uuid = opts.randomUUID ?? (() => g.crypto.randomUUID());
    this._log = opts.logger ?? console;
    this._deviceName = opts.deviceName;
    /** @type {E2EE|null} */
    this.e2ee = null;
    const baseUrl = (opts.baseUrl ?? g.location?.origin ?? '').replace(/\/$/, '');
    this._wsUrl = opts.wsUrl ?? `${baseUrl.replace(/^http/, 'ws')}/ws`;
    this.session = new Session({ storage: this._storage, clock: this._clock, locks: opts.locks !== undefined ? opts.locks : g.navigator?.locks ?? null });
    this.rest = new RestClient({
      baseUrl,
      fetch: /** @type {typeof fetch} */ (this._fetch),
      session: this.session,
      clock: this._clock,
      timeoutMs: this._t.requestTimeoutMs,
      tokenMinValidityMs: this._t.tokenMinValidityMs,
    });
    this.session.onChange((user) => {
      if (!user && this._started) this._expire();
    });
    this.uploader = new Uploader({
      rest: this.rest,
      clock: this._clock,
      XMLHttpRequest: opts.XMLHttpRequest !== undefined ? opts.XMLHttpRequest : g.XMLHttpRequest,
      fetch: this._fetch,
      retryMs: opts.uploadRetryMs,
    });
    /** Decrypted files of encrypted messages: `<attachment id>:<iv>:<thumb|file>` -> the Blob, and `...:<blob|data>` -> its URL (memory only). @type {Map<string, Promise<any>>} */
    this._fileUrls = new Map();
    this._started = false;
    /** @type {ChatCache|null} */
    this._cache = null;
    this._onPageHide = () => this._cache?.flush();
    this._resetModel();
  }

  // ------------------------------------------------------------------ session

  /** The signed-in user, or null. @returns {User|null} */
  get user() {
    return this._me ?? this.session.user;
  }

  get isAuthenticated() {
    return this.session.isAuthenticated;
  }

  /** @returns {ConnectionState} */
  get state() {
    return this._connection?.state ?? 'disconnected';
  }

  /** Reconnect attempts made in the current outage (0 while connected). */
  get reconnectAttempt() {
    return this._connection?.attempt ?? 0;
  }

  /**
   * No network: the browser is offline, or the link went silent (a ping or a connect got no
   * answer in time); until the next `hello` or the browser's `online`. Sends wait as pending.
   */
  get offline() {
    return this._connection?.offline ?? false;
  }

  /** True once the WebSocket connected at least once since `start()`. */
  get everConnected() {
    return this._connection?.everConnected ?? false;
  }

  /** @param {{email: string, password: string, display_name: string}} form @returns {Promise<User>} */
  async register(form) {
    const answer = await this.rest.register(form);
    return this._signedIn(answer);
  }

  /** @param {{email: string, password: string}} form @returns {Promise<User>} */
  async login(form) {
    const answer = await this.rest.login(form);
    return this._signedIn(answer);
  }

  /** Sign out: revoke the refresh token, close everything, forget the local state and queue. */
  async logout() {
    const outbox = this._outbox;
    const userId = this.user?.id ?? null;
    try {
      await this.rest.logout();
    } catch {
      /* signed out locally anyway */
    }
    // The cache goes with the session: taken away before stop(), which would write it once more.
    const cache = this._cache;
    this._cache = null;
    this.stop();
    outbox?.clear();
    this._outbox = null;
    // Decrypted files go too.
    for (const run of this._fileUrls.values()) run.then((url) => typeof url === 'string' && url.startsWith('blob:') && URL.revokeObjectURL(url), () => {});
    this._fileUrls.clear();
    this.session.clear();
    this._resetModel();
    if (cache) await cache.destroy();
    else if (userId && this._idb) await ChatCache.remove({ indexedDB: this._idb, storage: this._storage, userId });
    // The conversation keys go too (docs/security.md: a backup brings them back).
    const e2ee = this.e2ee;
    this.e2ee = null;
    if (e2ee) await e2ee.destroy();
    else if (userId && this._idb) await deleteDatabase(this._idb, keyStoreDatabaseName(userId));
    this.emit('session', null);
  }

  /** @param {import('./session.js').AuthAnswer} answer */
  _signedIn(answer) {
    if (this._started) this.stop();
    this.session.set(answer);
    this._resetModel();
    this._me = answer.user ?? null;
    // Someone else used this browser before: their cache goes (ours, if any, stays).
    if (this._me?.id && this._idb) {
      ChatCache.removeOthers({ indexedDB: this._idb, storage: this._storage, keep: this._me.id }).catch(() => {});
    }
    this.emit('session', this.user);
    return /** @type {User} */ (this.user);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Load the conversations and connect. Needs a session (login, register, or one restored from
   * storage). Returns when the list is loaded (or failed to load); the connection goes on.
   */
  async start() {
    if (this._started) return this._listReady;
    if (!this.session.isAuthenticated) throw new SessionExpiredError('Not signed in.');
    this._started = true;
    this._me = this.session.user;
    if (!this._me) {
      try {
        this._me = await this.rest.me();
        this.session.updateUser(this._me);
      } catch (err) {
        this._started = false;
        throw err;
      }
    }
    const me = /** @type {User} */ (this._me);
    this._users.set(me.id, me);
    if (this._idb && (!this.e2ee || this.e2ee.userId !== me.id)) {
      // Another user's (signed in over a session that merely ended): its store stays on disk, closed.
      this.e2ee?.close();
      this.e2ee = new E2EE({
        rest: this.rest,
        indexedDB: this._idb,
        userId: me.id,
        clock: this._clock,
        logger: this._log,
        deviceName: this._deviceName,
        onKeys: (id) => this._keysArrived(id),
        refetch: async (id) => {
          await this._fetchConversation(id).catch(() => {});
          return this._convs.get(id)?.data ?? null;
        },
      });
      this.e2ee.ready.then(
        () => {
          for (const st of this._convs.values()) this._syncKeys(st);
          this._markDirty({ conversations: true });
        },
        (err) => this._log.warn?.('chat sdk: end-to-end encryption is not available on this device', err),
      );
    }

    this._outbox = new Outbox({
      storage: this._storage,
      key: `chat.outbox.v1.${me.id}`,
      clock: this._clock,
      timings: this._t,
      randomUUID: this._uuid,
      transport: {
        mode: () => (this.offline ? 'offline' : this.state === 'connected' ? 'ws' : this.state === 'failed' ? 'rest' : 'offline'),
        sendFrame: (frame) => this._connection?.send(frame) ?? false,
        probe: () => this._connection?.probe(),
        post: (conversationId, body) => this.rest.sendMessage(conversationId, body),
      },
      onChange: (entry, change, serverMessage) => this._onOutboxChange(entry, change, serverMessage),
    });
    for (const entry of this._outbox.load()) this._onOutboxChange(entry, 'added');

    this._cache = this._idb
      ? new ChatCache({
          indexedDB: this._idb,
          userId: me.id,
          storage: this._storage,
          limit: this._cacheLimit,
          writeDelayMs: this._t.cacheWriteMs,
          openTimeoutMs: this._t.cacheOpenTimeoutMs,
          clock: this._clock,
          logger: this._log,
          source: {
            conversations: () => [...this._convs.values()].map((st) => conversationRecord(st)),
            thread: (id) => this._threadRecord(id),
          },
        })
      : null;

    this._typingSender = new TypingSender({
      clock: this._clock,
      timings: this._t,
      send: (conversationId, isTyping) => this._connection?.send({ type: 'typing', conversation_id: conversationId, is_typing: isTyping }) ?? false,
    });
    this._roster = new TypingRoster({
      clock: this._clock,
      timings: this._t,
      onChange: (conversationId, userIds) => this.emit('typing', { conversationId, userIds }),
    });
    this._poller = new Poller({
      clock: this._clock,
      timings: this._t,
      tasks: {
        messages: () => (this._activeId ? this._pollMessages(this._activeId) : undefined),
        conversations: () => this.refreshConversations(),
        unread: () => this.refreshUnread(),
      },
    });
    this._readTimer = new Timer(this._clock);

    const connection = new Connection({
      url: this._wsUrl,
      WebSocket: this._WebSocket,
      clock: this._clock,
      timings: this._t,
      document: this._document,
      window: this._window,
      logger: this._log,
      auth: {
        token: (o) => this.session.token({ minValidityMs: this._t.tokenMinValidityMs, ...o }),
        expiresAt: () => this.session.expiresAt,
        issuedAt: () => this.session.issuedAt,
      },
    });
    this._connection = connection;
    connection.on('state', (change) => this._onState(change));
    connection.on('frame', (frame) => this._onFrame(frame));
    connection.on('session_expired', () => this._expire());
    connection.on('visibility', (visible) => this._onVisibility(visible));
    connection.on('offline', (offline) => {
      this.emit('offline', offline);
      // Back online: whatever waited (even over REST while polling) goes out now.
      if (!offline && this.state === 'failed') this._outbox?.flush();
    });

    // The cached list shows at once; the server's answer, whenever it comes, is merged into it.
    this._hydrated = this._hydrate();
    const listed = this.refreshConversations().then(
      () => undefined,
      (err) => {
        this._log.warn?.('chat sdk: could not load conversations', err);
      },
    );
    this._listReady = Promise.all([this._hydrated, listed]).then(() => undefined);
    this._window?.addEventListener?.('pagehide', this._onPageHide);
    connection.start();
    return this._listReady;
  }

  /** Close the connection and stop every timer and poll (the model and queue stay). */
  stop() {
    if (!this._started) return;
    this._started = false;
    this._connection?.stop();
    this._connection?.removeAllListeners();
    this._connection = null;
    this._poller?.stop();
    this._outbox?.stop();
    this._typingSender?.reset();
    this._roster?.reset();
    this._readTimer?.cancel();
    this._window?.removeEventListener?.('pagehide', this._onPageHide);
    this._cache?.close();
    this._cache = null;
  }

  /** Reconnect now (e.g. a "retry" button), with a fresh backoff. */
  reconnect() {
    this._connection?.reconnectNow();
  }

  _expire() {
    if (!this._started) return;
    this.stop();
    this.emit('session_expired');
    this.emit('session', null);
  }

  _resetModel() {
    /** @type {User|null} */
    this._me = null;
    /** @type {Map<string, ConversationState>} */
    this._convs = new Map();
    /** @type {Map<string, MessageThread>} */
    this._threads = new Map();
    /** @type {Map<string, User>} */
    this._users = new Map();
    /** @type {Map<string, {status: string, last_seen: string|null}>} */
    this._presence = new Map();
    /** @type {string|null} */
    this._activeId = null;
    /** @type {Map<string, Promise<void>>} */
    this._catchUps = new Map();
    /** @type {Set<string>} */
    this._catchUpAgain = new Set();
    /** @type {Map<string, Promise<any>>} */
    this._convFetches = new Map();
    /** @type {Map<string, Promise<any>>} */
    this._olderLoads = new Map();
    /** @type {Map<string, string>} conversation -> message id to mark read */
    this._readQueue = new Map();
    /** @type {Map<string, Promise<User|null>>} */
    this._userFetches = new Map();
    this._listReady = Promise.resolve();
    this._hydrated = Promise.resolve();
    /** @type {Map<string, Promise<void>>} conversation -> its cached messages being read */
    this._threadLoads = new Map();
    /** The server's list was loaded at least once since start (it then wins over the cache). */
    this._listFromServer = false;
    this._awaySent = false;
    this._helloGen = 0;
    this._helloSeen = false;
    this._dirty = { conversations: false, unread: false, /** @type {Set<string>} */ messages: new Set() };
    this._flushQueued = false;
    /** Envelopes decrypted (or found tampered), `<conversation>\n<envelope>` -> result; memory only. @type {Map<string, {state: 'ok', text: string}|{state: 'failed'}>} */
    this._plain = new Map();
    /** conversation -> when a waiting message last made us look for its key. @type {Map<string, number>} */
    this._waitSync = new Map();
  }

  // -------------------------------------------------------------------- reads

  /** Conversations, newest activity first. @returns {ConversationView[]} */
  conversations() {
    return [...this._convs.values()].map((st) => this._view(st)).sort((a, b) => compareTime(b.last_activity_at, a.last_activity_at));
  }

  /** @param {string} id @returns {ConversationView|null} */
  conversation(id) {
    const st = this._convs.get(id);
    return st ? this._view(st) : null;
  }

  /** Messages held for a conversation, oldest first, our unacknowledged ones last. @param {string} id @returns {HeldMessage[]} */
  messages(id) {
    return this._threads.get(id)?.list() ?? [];
  }

  /** Older history exists that `loadOlder` can page in. @param {string} id */
  hasOlder(id) {
    return this._threads.get(id)?.hasOlder ?? false;
  }

  /** The newest page was loaded for this conversation. @param {string} id */
  isLoaded(id) {
    return this._threads.get(id)?.loaded ?? false;
  }

  /** Who is typing in a conversation (user ids). @param {string} id @returns {string[]} */
  typingUsers(id) {
    return this._roster?.users(id) ?? [];
  }

  /**
   * A user's presence as the app shows it. Ourselves: what this client tells the server
   * ("online", or "away" while the tab is hidden) while connected, "offline" otherwise: our
   * own status is what we say, not what presence frames about others carry (a group's member
   * list showed us "Offline"). Others, while we are not connected: `unknown`, with what we
   * last knew (`last_known`); the next connection fetches them again.
   * @param {string} userId @returns {{status: string, last_seen: string|null, last_known?: string|null}}
   */
  presence(userId) {
    if (userId && userId === this.user?.id) {
      if (this.state !== 'connected') return { status: 'offline', last_seen: null };
      return { status: this._awaySent ? 'away' : 'online', last_seen: null };
    }
    const known = this._presence.get(userId) ?? null;
    if (this.state !== 'connected') return { status: 'unknown', last_seen: known?.last_seen ?? null, last_known: known?.status ?? null };
    return known ?? { status: 'offline', last_seen: null };
  }

  /** A user we know of (participants, search results, ourselves). @param {string} userId @returns {User|null} */
  userInfo(userId) {
    return this._users.get(userId) ?? null;
  }

  /** Display name of a user, fetched in the background when unknown. @param {string} userId */
  displayName(userId) {
    const u = this._users.get(userId);
    if (u) return u.display_name;
    this._fetchUser(userId);
    return 'Someone';
  }

  /** Total unread messages over all conversations. */
  unreadTotal() {
    let total = 0;
    for (const st of this._convs.values()) total += this._unread(st);
    return total;
  }

  /** The active (open, on screen) conversation. */
  get activeConversationId() {
    return this._activeId;
  }

  /**
   * How far one of our messages got: `sending`/`failed` while unacknowledged, then `sent`,
   * `delivered` (every other member has it), `read` (every other member read it); in groups with
   * the per-member counts for "read by k of n".
   * @param {HeldMessage|Message} message
   * @returns {Receipt}
   */
  receipt(message) {
    const st = this._convs.get(message.conversation_id);
    const others = st ? this._others(st) : [];
    const of = others.length;
    const held = /** @type {HeldMessage} */ (message);
    if (held.local || !message.seq) {
      return { status: message.status === 'failed' ? 'failed' : 'sending', deliveredTo: 0, readBy: 0, of };
    }
    let readBy = 0;
    let deliveredTo = 0;
    if (st) {
      for (const p of others) {
        const m = this._marks(st, p.user_id);
        if (m.read >= message.seq) readBy++;
        if (m.delivered >= message.seq || m.read >= message.seq) deliveredTo++;
      }
    }
    let status = of > 0 && readBy === of ? 'read' : of > 0 && deliveredTo === of ? 'delivered' : 'sent';
    const serverRank = STATUS_RANK[/** @type {keyof STATUS_RANK} */ (message.status)] ?? 0;
    if (serverRank > STATUS_RANK[/** @type {keyof STATUS_RANK} */ (status)]) {
      status = /** @type {any} */ (message.status);
      if (status === 'read') {
        readBy = of;
        deliveredTo = of;
      } else if (status === 'delivered') deliveredTo = of;
    }
    return { status: /** @type {any} */ (status), deliveredTo, readBy, of };
  }

  // ------------------------------------------------------------ conversations

  /** Reload the conversation list (every page) from REST. */
  async refreshConversations() {
    const seen = new Set();
    let complete = false;
    for (let page = 1; page <= 20; page++) {
      const list = await this.rest.listConversations({ page });
      if (!Array.isArray(list)) break;
      for (const c of list) {
        seen.add(c.id);
        this._upsert(c);
      }
      if (list.length < PAGE) {
        complete = true;
        break;
      }
    }
    if (complete) {
      for (const [id, st] of [...this._convs]) {
        // Gone from the server's list: we left or were removed (keep ones created a moment ago).
        if (!seen.has(id) && this._clock.now() - Date.parse(st.data.created_at) > 30000) this._removeConversation(id);
      }
    }
    this._listFromServer = true;
    this._markDirty({ conversations: true, unread: true });
  }

  /** Reload unread counts from REST. */
  async refreshUnread() {
    const answer = await this.rest.unread();
    for (const row of answer?.conversations ?? []) {
      const st = this._convs.get(row.conversation_id);
      if (!st) continue;
      st.readSeq = Math.max(st.readSeq, st.lastSeq - row.unread_count);
    }
    this._markDirty({ conversations: true, unread: true });
  }

  /**
   * Start (or find) the 1:1 conversation with a user.
   * @param {string} userId @param {{encrypted?: boolean}} [opts]  `encrypted`: end-to-end encrypted from the start
   * @returns {Promise<ConversationView>}
   */
  async createDirect(userId, { encrypted = false } = {}) {
    const c = await this.rest.createConversation({ type: 'direct', participant_ids: [userId], ...(encrypted ? { encrypted: true } : {}) });
    // Asked encrypted and no key yet: this create caused it (new, or an existing pair turned on).
    if (encrypted && c?.encrypted && !c.key_version) this.e2ee?.initiated(c.id);
    return this._viewOf(this._upsert(c));
  }

  /** @param {string} title @param {string[]} userIds @param {{encrypted?: boolean}} [opts] @returns {Promise<ConversationView>} */
  async createGroup(title, userIds, { encrypted = false } = {}) {
    const c = await this.rest.createConversation({ type: 'group', title, participant_ids: userIds, ...(encrypted ? { encrypted: true } : {}) });
    if (c?.encrypted) this.e2ee?.initiated(c.id);
    return this._viewOf(this._upsert(c));
  }

  /**
   * Turn end-to-end encryption on for a conversation (it cannot be turned off). Direct: either
   * member; group: owner or admin (else ApiError 403 `forbidden`).
   * @param {string} id @returns {Promise<ConversationView|null>}
   */
  async enableEncryption(id) {
    const c = await this.rest.enableEncryption(id);
    if (c && !c.key_version) this.e2ee?.initiated(id);
    if (c && c.id) this._upsert(c);
    else await this._fetchConversation(id);
    return this.conversation(id);
  }

  /** May the signed-in user turn encryption on here. @param {string} id */
  canEnableEncryption(id) {
    const v = this.conversation(id);
    if (!v || v.encrypted) return false;
    return v.type === 'direct' || v.my_role === 'owner' || v.my_role === 'admin';
  }

  // ------------------------------------------------------------------- e2ee

  /** This device's fingerprint (null without end-to-end encryption on this browser). */
  async deviceFingerprint() {
    return this.e2ee ? this.e2ee.myFingerprint() : null;
  }

  /**
   * Every member's live devices with fingerprints (computed here) and, for others' devices,
   * the safety number with this device.
   * @param {string} id
   * @returns {Promise<{user_id: string, display_name: string, devices: any[]}[]>}
   */
  async memberDevices(id) {
    if (!this.e2ee) throw new Error('End-to-end encryption is not available in this browser.');
    const v = this.conversation(id);
    const members = v?.participants ?? [];
    return Promise.all(members.map(async (p) => ({ user_id: p.user_id, display_name: p.display_name, devices: await this.e2ee.devicesOf(p.user_id) })));
  }

  /** The server holds a key backup of ours. */
  async hasKeyBackup() {
    return this.e2ee ? this.e2ee.hasBackup() : false;
  }

  /** Back up every key this device holds under `passphrase` (replacing the stored backup). @param {string} passphrase */
  async createKeyBackup(passphrase) {
    if (!this.e2ee) throw new Error('End-to-end encryption is not available in this browser.');
    return this.e2ee.createBackup(passphrase);
  }

  /**
   * Import the keys of the stored backup. A wrong passphrase: DecryptError `bad_passphrase`.
   * @param {string} passphrase
   */
  async restoreKeyBackup(passphrase) {
    if (!this.e2ee) throw new Error('End-to-end encryption is not available in this browser.');
    return this.e2ee.restoreBackup(passphrase);
  }

  /** Messages held for a conversation that wait for a key this device lacks. @param {string} id */
  waitingForKeys(id) {
    return this.messages(id).filter((m) => /** @type {any} */ (m).e2ee?.state === 'waiting').length;
  }

  /** @param {ConversationState} st */
  _syncKeys(st) {
    const c = st.data;
    if (!c.encrypted || !this.e2ee || !this._started) return;
    const sig = `${c.key_version ?? 0}:${!!c.rotation_needed}:${(c.participants ?? []).map((p) => p.user_id).sort().join(',')}`;
    if (st.keySig === sig) return;
    st.keySig = sig;
    this.e2ee.sync(c).then(() => this._markDirty({ conversations: true, messages: c.id }));
  }

  /** New keys for a conversation: what waited for them is decrypted and shown. @param {string} id */
  _keysArrived(id) {
    const thread = this._threads.get(id);
    const st = this._convs.get(id);
    for (const m of thread ? [...thread.bySeq.values(), ...thread.pending.values()] : []) {
      const e = /** @type {any} */ (m).e2ee;
      if (e && e.state !== 'ok') this._decryptInto(id, m, e.envelope);
    }
    const last = /** @type {any} */ (st?.data.last_message);
    if (last?.e2ee && last.e2ee.state !== 'ok') this._decryptInto(id, last, last.e2ee.envelope);
    this._markDirty({ conversations: true, messages: id });
  }

  /**
   * Server data came into a message we hold (its `content` is an envelope again, unless it is
   * still the text we decrypted): decrypt it. Synchronous when the envelope was decrypted
   * before (our own sends, edits). Tombstones stay tombstones.
   * @param {string} conversationId @param {any} m
   */
  _adopt(conversationId, m) {
    if (!m || m.content_type !== 'encrypted') return;
    if (m.deleted_at) {
      delete m.e2ee;
      m.content = '';
      return;
    }
    if (m.e2ee && m.content === m.e2ee.shown) return;
    this._decryptInto(conversationId, m, String(m.content ?? ''));
  }

  /** @param {string} conversationId @param {any} m @param {string} envelope */
  _decryptInto(conversationId, m, envelope) {
    const key = `${conversationId}\n${envelope}`;
    const known = this._plain.get(key);
    if (known) {
      const p = known.state === 'ok' ? parsePlaintext(known.text, hasAttachments(m)) : { text: '', files: [] };
      m.content = p.text;
      m.e2ee = { state: known.state, envelope, shown: m.content, ...(p.files.length ? { files: p.files } : {}) };
      return;
    }
    m.content = '';
    m.e2ee = { state: this.e2ee ? 'pending' : 'waiting', envelope, shown: '' };
    if (!this.e2ee) return;
    const e2ee = this.e2ee;
    e2ee.decrypt(conversationId, envelope).then((r) => {
      if (this.e2ee !== e2ee) return;
      if (r.state !== 'waiting') this._plain.set(key, r.state === 'ok' ? { state: 'ok', text: r.text } : { state: 'failed' });
      // Changed again since (an edit, a deletion): that change decrypts itself.
      if (m.e2ee?.envelope !== envelope || m.deleted_at) return;
      const p = r.state === 'ok' ? parsePlaintext(r.text, hasAttachments(m)) : { text: '', files: [] };
      m.content = p.text;
      m.e2ee = { state: r.state, envelope, shown: m.content, ...(p.files.length ? { files: p.files } : {}), ...(r.state === 'waiting' ? { kid: r.kid } : {}) };
      const st = this._convs.get(conversationId);
      const last = this._waitSync.get(conversationId);
      if (r.state === 'waiting' && st && (last === undefined || this._clock.now() - last > 5000)) {
        // Not here yet: fetch, and ask when the server has none for us (rate-limited there).
        this._waitSync.set(conversationId, this._clock.now());
        e2ee.sync({ ...st.data, key_version: Math.max(Number(st.data.key_version ?? 0), r.kid) });
      }
      this._threads.get(conversationId)?.touch();
      if (m.id && r.state === 'ok') this._updateQuotes(conversationId, m.id, { content: previewText(m.content), deleted: false });
      this._markDirty({ conversations: true, messages: conversationId });
    });
  }

  /** @param {string} id @param {string} title */
  async rename(id, title) {
    const c = await this.rest.renameConversation(id, title);
    if (c && c.id) this._upsert(c);
    else await this._fetchConversation(id);
    return this.conversation(id);
  }

  /** @param {string} id @param {string} userId */
  async addMember(id, userId) {
    await this.rest.addMember(id, userId);
    await this._fetchConversation(id);
    // Encrypted: the member who added shares the current key with the newcomer's devices
    // (others' clients answer the newcomer's key requests).
    if (this._convs.get(id)?.data.encrypted) this.e2ee?.shareMissing(id);
    return this.conversation(id);
  }

  /** @param {string} id @param {string} userId */
  async removeMember(id, userId) {
    await this.rest.removeMember(id, userId);
    // Encrypted: this client makes the rotation that shuts the removed member out.
    if (this._convs.get(id)?.data.encrypted) this.e2ee?.initiated(id);
    await this._fetchConversation(id);
    return this.conversation(id);
  }

  /** @param {string} id */
  async leave(id) {
    await this.rest.leave(id);
    this._removeConversation(id);
  }

  /** Users matching a query, ourselves excluded. @param {string} q @returns {Promise<User[]>} */
  async searchUsers(q) {
    const users = (await this.rest.searchUsers(q)) ?? [];
    for (const u of users) this._users.set(u.id, { ...this._users.get(u.id), ...u });
    return users.filter((u) => u.id !== this._me?.id);
  }

  /**
   * The user opened a conversation (it is on screen): load its newest page (or what was missed),
   * its presence, and mark it read. Pass null when no conversation is on screen.
   * @param {string|null} id
   */
  async openConversation(id) {
    const previous = this._activeId;
    if (previous && previous !== id) this._typingSender?.stop(previous);
    this._activeId = id;
    if (!id) return;
    const thread = this._thread(id);
    // What the cache holds first: shown at once, then only what is newer is fetched.
    await this._hydrated;
    if (!this._convs.has(id)) await this._fetchConversation(id).catch(() => {});
    this._fetchPresence(id);
    await this._hydrateThread(id);
    if (!thread.loaded) await this._loadLatest(id);
    else await this._catchUp(id);
    if (this._activeId === id) this._maybeMarkRead(id);
  }

  /** The conversation on screen was closed (phone: back to the list). */
  closeConversation() {
    return this.openConversation(null);
  }

  /**
   * Page in older history (infinite scroll up).
   * @param {string} id
   * @returns {Promise<{added: number, hasOlder: boolean}>}
   */
  loadOlder(id) {
    const inflight = this._olderLoads.get(id);
    if (inflight) return inflight;
    const run = (async () => {
      const thread = this._thread(id);
      if (!thread.loaded) {
        await this._loadLatest(id);
        return { added: thread.list().length, hasOlder: thread.hasOlder };
      }
      const oldest = thread.oldest();
      if (!oldest || !thread.hasOlder) return { added: 0, hasOlder: false };
      const page = (await this.rest.messagesBefore(id, { before: oldest.id, limit: PAGE })) ?? [];
      let added = 0;
      for (const m of [...page].sort((a, b) => a.seq - b.seq)) if (this._ingest(m, false)) added++;
      if (page.length < PAGE) thread.reachedStart = true;
      this._markDirty({ messages: id });
      return { added, hasOlder: thread.hasOlder };
    })().finally(() => this._olderLoads.delete(id));
    this._olderLoads.set(id, run);
    return run;
  }

  // ----------------------------------------------------------------- messages

  /**
   * Send a message: shown at once (`sending`), sent with a new temp_id, retried, queued
   * while offline. Returns the optimistic message. With `attachments` (what `uploadAttachment`
   * resolved with, at most 10) the text may be empty.
   * @param {string} conversationId
   * @param {string} content
   * @param {{replyTo?: string|null, attachments?: import('./attachments.js').UploadResult[]}} [opts]  `replyTo`: the id of the message answered
   * @returns {HeldMessage}
   */
  send(conversationId, content, { replyTo = null, attachments = [] } = {}) {
    if (!this._outbox) throw new Error('Call start() first.');
    if (typeof content !== 'string') throw new RangeError('A message cannot be empty.');
    if (!content.trim() && !attachments.length) throw new RangeError('A message cannot be empty.');
    if (attachments.length > MAX_ATTACHMENTS) throw new RangeError(`At most ${MAX_ATTACHMENTS} files go with one message.`);
    if (!content.trim()) content = '';
    this._typingSender?.stop(conversationId);
    if (this._convs.get(conversationId)?.data.encrypted) return this._sendEncrypted(conversationId, content, replyTo || null, attachments);
    if (attachments.some((a) => a.file)) throw new TypeError('These files were encrypted for an encrypted conversation.');
    const files = { attachmentIds: attachments.map((a) => a.id), attachments: attachments.map(plainDto) };
    const entry = this._outbox.send(conversationId, content, 'text', replyTo || null, undefined, files);
    return /** @type {HeldMessage} */ (this._thread(conversationId).pending.get(entry.temp_id));
  }

  /**
   * Upload a file for a message of this conversation: announced, its bytes PUT (progress),
   * confirmed; network errors, 5xx and 429 are retried a few times, refusals (413, 415, 422,
   * 403) are not: they reject with the ApiError (`code` e.g. `content_mismatch`). Aborting
   * `signal` cancels it (an error with `code` `aborted`). In an end-to-end encrypted
   * conversation the file (and an image's thumbnail, made here) is encrypted first: the
   * server sees neither its name nor its type. Resolves with what `send` takes.
   * @param {string} conversationId
   * @param {Blob & {name?: string}} file
   * @param {{onProgress?: (p: {loaded: number, total: number}) => void, signal?: AbortSignal}} [opts]
   * @returns {Promise<import('./attachments.js').UploadResult>}
   */
  async uploadAttachment(conversationId, file, { onProgress, signal } = {}) {
    const name = file.name || 'file';
    const type = typeOf(file);
    if (!this._convs.get(conversationId)?.data.encrypted) {
      return this.uploader.upload(conversationId, file, { filename: name, mime_type: type, size: file.size }, { onProgress, signal });
    }
    // Encrypted: a fresh key per file; the thumbnail under the same key, another IV.
    const bytes = await bytesOf(file);
    if (signal?.aborted) throw new UploadCancelled();
    const sealed = await encryptFile(bytes);
    const thumb = isInlineImage(type) ? await makeThumbnail(file).catch(() => null) : null;
    const sealedThumb = thumb ? await encryptFile(await bytesOf(thumb.blob), { key: sealed.key }) : null;
    const total = sealed.ciphertext.length + (sealedThumb?.ciphertext.length ?? 0);
    const progress = (/** @type {number} */ base) => (/** @type {{loaded: number}} */ p) => onProgress?.({ loaded: base + p.loaded, total });
    const meta = (/** @type {Uint8Array} */ ct) => ({ filename: ENCRYPTED_NAME, mime_type: ENCRYPTED_TYPE, size: ct.length });
    const main = await this.uploader.upload(conversationId, sealed.ciphertext, meta(sealed.ciphertext), { onProgress: progress(0), signal });
    const thumbDto = sealedThumb ? await this.uploader.upload(conversationId, sealedThumb.ciphertext, meta(sealedThumb.ciphertext), { onProgress: progress(sealed.ciphertext.length), signal }) : null;
    /** @type {import('./attachments.js').FileKey} */
    const fileKey = {
      attachment_id: main.id,
      ...(thumbDto ? { thumbnail_attachment_id: thumbDto.id } : {}),
      key: sealed.rawKey,
      iv: sealed.iv,
      ...(sealedThumb ? { thumb_iv: sealedThumb.iv } : {}),
      name,
      type,
      size: file.size,
      ...(thumb ? { width: thumb.width, height: thumb.height } : {}),
    };
    return {
      ...main,
      filename: name,
      mime_type: type,
      size: file.size,
      width: thumb?.width ?? null,
      height: thumb?.height ?? null,
      file: fileKey,
      attachment_ids: thumbDto ? [main.id, thumbDto.id] : [main.id],
      attachments: thumbDto ? [main, thumbDto] : [main],
    };
  }

  /**
   * An attachment with fresh signed URLs (a link or image that answered 403 had expired), put
   * into the held message. Resolves with the attachment (null when it is gone).
   * @param {string} conversationId @param {string} messageId @param {string} attachmentId
   * @returns {Promise<import('./attachments.js').AttachmentDto|null>}
   */
  async refreshAttachment(conversationId, messageId, attachmentId) {
    let dto;
    try {
      dto = await this.rest.getAttachment(attachmentId);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 403)) return null;
      throw err;
    }
    const held = /** @type {any} */ (this.message(conversationId, messageId));
    if (held && Array.isArray(held.attachments)) {
      held.attachments = held.attachments.map((/** @type {any} */ a) => (a.id === attachmentId ? { ...a, ...dto } : a));
      this._threads.get(conversationId)?.touch();
      this._markDirty({ messages: conversationId });
    }
    return dto;
  }

  /**
   * An encrypted message's file (or its thumbnail), decrypted, as a URL (memory only; each
   * made once per file): `as: 'data'` a data: URL, for `<img src>` (the server's Content
   * Security Policy allows data: images, not blob: ones); `as: 'blob'` (default) a blob:
   * object URL, for a download. Rejects when it cannot be fetched or fails authentication
   * (`code` 'tampered').
   * @param {string} conversationId @param {string} messageId
   * @param {import('./attachments.js').FileKey} file  one of the message's `e2ee.files`
   * @param {{thumbnail?: boolean, message?: any, as?: 'blob'|'data'}} [opts]  `message`: the message as held (our own unsent one has no id yet)
   * @returns {Promise<string>}
   */
  decryptedFileUrl(conversationId, messageId, file, { thumbnail = false, message, as = 'blob' } = {}) {
    const useThumb = thumbnail && !!file.thumbnail_attachment_id && !!file.thumb_iv;
    const id = useThumb ? /** @type {string} */ (file.thumbnail_attachment_id) : file.attachment_id;
    const base = `${id}:${file.iv}:${useThumb ? 'thumb' : 'file'}`;
    let blob = this._fileUrls.get(base);
    if (!blob) {
      blob = (async () => {
        const find = () => /** @type {any} */ ((messageId && this.message(conversationId, messageId)) || message)?.attachments?.find((/** @type {any} */ a) => a.id === id);
        let dto = find();
        const get = async (/** @type {string|null|undefined} */ url) => {
          if (!url) return null;
          const res = await /** @type {typeof fetch} */ (this._fetch)(url);
          return res.ok ? new Uint8Array(await res.arrayBuffer()) : null;
        };
        let ct = await get(dto?.url).catch(() => null);
        // Expired (or not signed yet): fresh links, once.
        if (!ct) {
          dto = (messageId ? await this.refreshAttachment(conversationId, messageId, id) : await this.rest.getAttachment(id).catch(() => null)) ?? dto;
          ct = await get(dto?.url);
        }
        if (!ct) throw Object.assign(new Error('The file could not be fetched.'), { code: 'unavailable' });
        const plain = await decryptFile(ct, { key: file.key, iv: useThumb ? /** @type {string} */ (file.thumb_iv) : file.iv });
        // The type is the sender's word: only an image type is kept (shown), anything else is bytes.
        const type = useThumb ? 'image/jpeg' : isInlineImage(file.type) ? file.type : 'application/octet-stream';
        return /** @type {any} */ (new Blob([plain], { type }));
      })();
      blob.catch(() => this._fileUrls.delete(base));
      this._fileUrls.set(base, blob);
    }
    const key = `${base}:${as}`;
    let run = this._fileUrls.get(key);
    if (run) return run;
    run = blob.then((b) => (as === 'data' ? blobToDataUrl(b) : URL.createObjectURL(b)));
    run.catch(() => this._fileUrls.delete(key));
    this._fileUrls.set(key, run);
    return run;
  }

  /**
   * A send in an end-to-end encrypted conversation: shown at once, encrypted, then handed to
   * the outbox (which stores and sends only the envelope). Without a key it fails visibly; it is
   * never sent as text.
   * @param {string} conversationId @param {string} content @param {string|null} replyTo
   * @param {import('./attachments.js').UploadResult[]} [uploads]  files encrypted and uploaded for it
   * @returns {HeldMessage}
   */
  _sendEncrypted(conversationId, content, replyTo, uploads = []) {
    if (uploads.some((a) => !a.file)) throw new TypeError('Files for an encrypted conversation must be encrypted (upload them after it was turned on).');
    const files = uploads.map((a) => /** @type {import('./attachments.js').FileKey} */ (a.file));
    const attachments = uploads.flatMap((a) => (a.attachments ?? []).map(plainDto));
    const attachmentIds = uploads.flatMap((a) => a.attachment_ids ?? []);
    const tempId = this._uuid();
    /** @type {any} */
    const local = {
      key: `t:${tempId}`,
      local: true,
      id: '',
      seq: 0,
      conversation_id: conversationId,
      sender_id: this._me?.id ?? '',
      content,
      content_type: 'encrypted',
      reply_to: replyTo,
      reply_preview: replyTo ? this._previewOf(conversationId, replyTo) : null,
      temp_id: tempId,
      created_at: new Date(this._clock.now()).toISOString(),
      edited_at: null,
      deleted_at: null,
      status: 'sending',
      change_seq: 0,
      reactions: [],
      ...(attachments.length ? { attachments } : {}),
      e2ee: { state: 'ok', envelope: '', shown: content, ...(files.length ? { files } : {}) },
      unsent: { content, replyTo, files, attachmentIds, attachments },
    };
    this._thread(conversationId).addPending(local);
    this._markDirty({ conversations: true, messages: conversationId });
    this._encryptAndQueue(local);
    return local;
  }

  /** @param {any} local */
  async _encryptAndQueue(local) {
    const { conversation_id: id, temp_id: tempId } = local;
    const { content, replyTo, files = [], attachmentIds = [], attachments = [] } = local.unsent;
    try {
      if (!this.e2ee) throw new NoKeyError('End-to-end encryption is not available in this browser: the message was not sent.');
      await this.e2ee.ready;
      // A key being fetched or made right now is worth waiting for.
      if (!this.e2ee.heldVersion(id)) await this.e2ee.sync({ ...(this._convs.get(id)?.data ?? { id }), encrypted: true });
      const plaintext = messagePlaintext(content, files);
      const envelope = await this.e2ee.encrypt(id, plaintext);
      this._plain.set(`${id}\n${envelope}`, { state: 'ok', text: plaintext });
      if (this._thread(id).pending.get(tempId) !== local || !this._outbox) return; // discarded meanwhile
      delete local.unsent;
      this._outbox.send(id, envelope, 'encrypted', replyTo, tempId, { attachmentIds, attachments });
    } catch (err) {
      if (this._thread(id).pending.get(tempId) !== local) return;
      local.status = 'failed';
      local.error = err instanceof NoKeyError ? err.message : 'The message could not be encrypted: it was not sent.';
      this._thread(id).touch();
      this._markDirty({ conversations: true, messages: id });
    }
  }

  /**
   * Answer a message: a send with `reply_to`; the optimistic copy carries the quote.
   * @param {string} conversationId @param {string} messageId @param {string} content @returns {HeldMessage}
   */
  reply(conversationId, messageId, content) {
    return this.send(conversationId, content, { replyTo: messageId });
  }

  /** A message held for a conversation, by id. @param {string} conversationId @param {string} messageId @returns {HeldMessage|null} */
  message(conversationId, messageId) {
    return this._threads.get(conversationId)?.byId.get(messageId) ?? null;
  }

  /**
   * May the signed-in user edit this message: their own, sent, not deleted, within the edit
   * window (`timings.editWindowMs`, the server's `limits.edit_window_secs`).
   * @param {HeldMessage|Message} m
   */
  canEdit(m) {
    if (!m || !m.id || /** @type {HeldMessage} */ (m).local || m.deleted_at || m.sender_id !== this._me?.id) return false;
    // Encrypted conversation: only messages we could decrypt, never a text one from before.
    if (this._convs.get(m.conversation_id)?.data.encrypted && (m.content_type !== 'encrypted' || /** @type {any} */ (m).e2ee?.state !== 'ok')) return false;
    return this._clock.now() - Date.parse(m.created_at) < this._t.editWindowMs;
  }

  /** May the signed-in user delete this message: their own, or anyone's as a group's owner or admin. @param {HeldMessage|Message} m */
  canDelete(m) {
    if (!m || !m.id || /** @type {HeldMessage} */ (m).local || m.deleted_at) return false;
    if (m.sender_id === this._me?.id) return true;
    const v = this.conversation(m.conversation_id);
    return v?.type === 'group' && (v.my_role === 'owner' || v.my_role === 'admin');
  }

  /**
   * Edit one of our messages (PATCH). Shown at once; rolled back (and `change_failed`) when
   * the server refuses (`edit_window_closed`, `message_deleted`, `not_sender`, `validation_failed`,
   * `rate_limited`, a network error). Resolves with the message as held.
   * @param {string} conversationId @param {string} messageId @param {string} content
   * @returns {Promise<HeldMessage|Message>}
   */
  async edit(conversationId, messageId, content) {
    const held = this.message(conversationId, messageId);
    if (typeof content !== 'string' || (!content.trim() && !hasAttachments(held))) throw new RangeError('A message cannot be empty.');
    // The same text again changes nothing (the server would answer the same change_seq).
    if (held && !held.deleted_at && held.content === content) return held;
    let body = content;
    let plaintext = content;
    /** @type {any[]} */
    let files = [];
    /** @type {any} */
    const patch = { content, edited_at: new Date(this._clock.now()).toISOString() };
    if (this._convs.get(conversationId)?.data.encrypted) {
      // Encrypted before it leaves; a failure here is a refused edit (nothing was sent).
      try {
        if (!this.e2ee) throw new NoKeyError('End-to-end encryption is not available in this browser.');
        // Its files stay: their keys are encrypted again with the new text.
        files = /** @type {any} */ (held)?.e2ee?.files ?? [];
        plaintext = messagePlaintext(content, files);
        body = await this.e2ee.encrypt(conversationId, plaintext);
      } catch (err) {
        this._changeFailed(conversationId, messageId, 'edit', err);
        throw err;
      }
      this._plain.set(`${conversationId}\n${body}`, { state: 'ok', text: plaintext });
      patch.e2ee = { state: 'ok', envelope: body, shown: content, ...(files.length ? { files } : {}) };
    }
    const undo = held ? this._optimistic(conversationId, held, 'edit', patch) : null;
    try {
      const copy = await this.rest.editMessage(conversationId, messageId, body);
      this._applyCopy(conversationId, copy, 'edit');
      return this.message(conversationId, messageId) ?? copy;
    } catch (err) {
      undo?.();
      this._changeFailed(conversationId, messageId, 'edit', err);
      throw err;
    }
  }

  /**
   * Delete a message (own, or anyone's as a group's owner or admin): a tombstone at once,
   * rolled back when refused. Idempotent on the server. Resolves with the tombstone.
   * @param {string} conversationId @param {string} messageId
   * @returns {Promise<HeldMessage|Message>}
   */
  async delete(conversationId, messageId) {
    const held = this.message(conversationId, messageId);
    const now = new Date(this._clock.now()).toISOString();
    const undo = held ? this._optimistic(conversationId, held, 'delete', { content: '', deleted_at: now, deleted_by: this._me?.id ?? null, reactions: [] }) : null;
    if (held) this._updateQuotes(conversationId, messageId, { content: '', deleted: true });
    try {
      const copy = await this.rest.deleteMessage(conversationId, messageId);
      this._applyCopy(conversationId, copy, 'delete');
      return this.message(conversationId, messageId) ?? copy;
    } catch (err) {
      if (undo?.()) this._updateQuotes(conversationId, messageId, { content: previewText(held?.content), deleted: false });
      this._changeFailed(conversationId, messageId, 'delete', err);
      throw err;
    }
  }

  /**
   * Add or remove our reaction `emoji` (`add` omitted: toggle). Shown at once, rolled back when
   * refused. Resolves with the message's reactions as the server answered them.
   * @param {string} conversationId @param {string} messageId @param {string} emoji @param {boolean} [add]
   * @returns {Promise<import('./rest.js').Reaction[]>}
   */
  async react(conversationId, messageId, emoji, add) {
    if (typeof emoji !== 'string' || !emoji) throw new RangeError('No emoji.');
    const held = this.message(conversationId, messageId);
    const mine = !!held?.reactions?.find((r) => r.emoji === emoji)?.me;
    const adding = typeof add === 'boolean' ? add : !mine;
    /** @type {(() => boolean)|null} */
    let undo = null;
    if (held && adding !== mine) {
      const before = held.change_seq ?? 0;
      this._toggleReaction(held, emoji, adding);
      this._changed(conversationId, messageId, 'reaction', true);
      undo = () => {
        if ((held.change_seq ?? 0) !== before) return false;
        this._toggleReaction(held, emoji, !adding);
        this._changed(conversationId, messageId, 'reaction', true);
        return true;
      };
    }
    try {
      const answer = await this.rest.react(conversationId, messageId, emoji, adding);
      const now = this.message(conversationId, messageId);
      if (now && answer && Array.isArray(answer.reactions) && (answer.change_seq ?? 0) >= (now.change_seq ?? 0)) {
        now.change_seq = answer.change_seq ?? now.change_seq;
        now.reactions = withMe(answer.reactions, now.reactions ?? [], this._me?.id ?? null, { emoji, added: adding });
        this._changed(conversationId, messageId, 'reaction', false);
      }
      return answer?.reactions ?? [];
    } catch (err) {
      undo?.();
      this._changeFailed(conversationId, messageId, 'reaction', err);
      throw err;
    }
  }

  /**
   * Make sure a message is held, with everything between it and the newest held ones (for
   * jumping to a reply's original): `?around=` its id, then the pages between. Resolves with
   * the message, or null when the server does not have it.
   * @param {string} conversationId @param {string} messageId
   * @returns {Promise<HeldMessage|null>}
   */
  async loadAround(conversationId, messageId) {
    try {
      return await this._loadAround(conversationId, messageId);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 403)) return null;
      throw err;
    }
  }

  /** @param {string} conversationId @param {string} messageId @returns {Promise<HeldMessage|null>} */
  async _loadAround(conversationId, messageId) {
    const have = this.message(conversationId, messageId);
    if (have) return have;
    const thread = this._thread(conversationId);
    if (!thread.loaded) await this._loadLatest(conversationId);
    if (this.message(conversationId, messageId)) return this.message(conversationId, messageId);
    const around = (await this.rest.messagesAround(conversationId, messageId, PAGE)) ?? [];
    if (!around.some((m) => m.id === messageId)) return null;
    const pages = [around];
    // Fill in what lies between the page and the oldest held, so the thread stays contiguous.
    const top = Math.max(...around.map((m) => m.seq));
    let oldest = thread.oldest();
    for (let n = 0; oldest && oldest.seq > top + 1 && n < 50; n++) {
      const page = (await this.rest.messagesBefore(conversationId, { before: oldest.id, limit: CATCH_UP_PAGE })) ?? [];
      if (!page.length) break;
      pages.push(page);
      const low = page.reduce((a, m) => (m.seq < a.seq ? m : a), page[0]);
      if (low.seq <= top + 1 || page.length < CATCH_UP_PAGE) break;
      oldest = /** @type {any} */ (low);
    }
    const all = pages.flat().sort((a, b) => a.seq - b.seq);
    for (const m of all) this._ingest(m, false);
    if (all[0]?.seq === 1) thread.reachedStart = true;
    this._markDirty({ messages: conversationId });
    return this.message(conversationId, messageId);
  }

  /** Send a failed message again (same temp_id). @param {string} tempId */
  retry(tempId) {
    if (this._outbox?.retry(tempId)) return true;
    // An encrypted send that failed before it reached the outbox (no key then): encrypt again.
    for (const thread of this._threads.values()) {
      const local = /** @type {any} */ (thread.pending.get(tempId));
      if (local?.unsent && local.status === 'failed') {
        local.status = 'sending';
        local.error = undefined;
        thread.touch();
        this._markDirty({ conversations: true, messages: thread.conversationId });
        this._encryptAndQueue(local);
        return true;
      }
    }
    return false;
  }

  /** Drop an unsent message. @param {string} tempId */
  discard(tempId) {
    const entry = this._outbox?.discard(tempId);
    if (!entry) {
      for (const thread of this._threads.values()) {
        if (thread.pending.has(tempId)) {
          thread.removePending(tempId);
          this._refreshPreview(thread.conversationId);
        }
      }
      return;
    }
    this._thread(entry.conversation_id).removePending(tempId);
    this._refreshPreview(entry.conversation_id);
  }

  /** Messages written but not yet acknowledged (queued, sending, failed). */
  pendingMessages() {
    return this._outbox ? [...this._outbox.entries.values()] : [];
  }

  /** Mark a conversation read up to its newest message held. @param {string} id */
  markRead(id) {
    const st = this._convs.get(id);
    const newest = this._threads.get(id)?.newest();
    if (!st || !newest || newest.seq <= st.readSeq) return;
    st.readSeq = newest.seq;
    this._readQueue.set(id, newest.id);
    this._markDirty({ conversations: true, unread: true });
    if (!this._readTimer?.pending) this._readTimer?.start(this._t.readCoalesceMs, () => this._flushReads());
  }

  /** Call on every input in a conversation's composer (debounced into typing frames). @param {string} id */
  typing(id) {
    this._typingSender?.input(id);
  }

  /** The composer was cleared or left. @param {string} id */
  stopTyping(id) {
    this._typingSender?.stop(id);
  }

  // ------------------------------------------------------------ frame handling

  /** @param {any} change */
  _onState(change) {
    const { state, previous } = change;
    if (previous === 'connected' && state !== 'connected') {
      this._outbox?.onDisconnected();
      this._typingSender?.reset();
      this._roster?.reset();
    }
    if (state === 'connected') this._poller?.setMode('light');
    else if (state === 'failed') {
      this._poller?.setMode('fallback');
      // Polling mode: what waits in the queue goes out over REST, once.
      this._outbox?.flush();
    } else this._poller?.setMode('off');
    this.emit('state', change);
  }

  /** @param {any} f */
  _onFrame(f) {
    switch (f.type) {
      case 'hello':
        this._onHello(f);
        break;
      case 'message':
        if (f.message && typeof f.message === 'object') this._ingest(f.message, true);
        break;
      case 'message_updated':
      case 'message_deleted':
      case 'reaction':
        this._onChangeFrame(f);
        break;
      case 'message_sent':
        this._onAck(f);
        break;
      case 'delivered':
        this._moveMark(f.conversation_id, f.user_id, f.seq, 0);
        break;
      case 'read_receipt':
        this._moveMark(f.conversation_id, f.read_by, f.seq, f.seq);
        break;
      case 'typing':
        if (f.user_id && f.user_id !== this._me?.id && f.conversation_id) this._roster?.update(f.conversation_id, f.user_id, !!f.is_typing);
        break;
      case 'presence':
        if (f.user_id) this._setPresence(f.user_id, f.status, f.last_seen ?? null);
        break;
      case 'sync_done':
        this._onSyncDone(f);
        break;
      case 'conversation':
        this._onConversationEvent(f);
        break;
      case 'unread': {
        const st = this._convs.get(f.conversation_id);
        if (st && typeof f.unread_count === 'number') {
          st.readSeq = Math.max(st.readSeq, st.lastSeq - f.unread_count);
          this._markDirty({ conversations: true, unread: true });
        }
        break;
      }
      case 'error':
        if (f.ref && this._outbox?.entries.has(f.ref)) this._outbox.rejected(f.ref, f.code, f.message);
        else this.emit('error', { code: f.code, message: f.message });
        break;
      case 'key_request':
        this.e2ee?.onKeyRequest(f);
        break;
      case 'key_shared': {
        const st = this._convs.get(f.conversation_id);
        if (st && typeof f.key_version === 'number' && f.key_version >= Number(st.data.key_version ?? 0)) {
          st.data = { ...st.data, key_version: f.key_version, rotation_needed: f.rotated ? false : !!st.data.rotation_needed };
          st.keySig = undefined;
          this._markDirty({ conversations: true, messages: f.conversation_id });
        }
        this.e2ee?.onKeyShared(f).then((mine) => {
          // Not for us, but the version moved: check we have it (we may be a new device).
          if (!mine && st) this._syncKeys(st);
        });
        break;
      }
      case 'auth_ok':
        break;
      default:
        this._log.debug?.(`chat sdk: ignoring a "${f.type}" frame`);
    }
  }

  /** @param {any} hello */
  async _onHello(hello) {
    const gen = ++this._helloGen;
    const connection = this._connection;
    const reconnect = this._helloSeen === true;
    this._helloSeen = true;
    if (hello.user?.id) {
      this._me = { ...this._me, ...hello.user };
      this._users.set(hello.user.id, /** @type {User} */ (this._me));
    }
    await this._listReady;
    if (gen !== this._helloGen || this._connection !== connection || this.state !== 'connected') return;

    /** @type {Record<string, number>} */
    const cursors = {};
    /** @type {Record<string, number>} */
    const changes = {};
    const snapshot = Array.isArray(hello.conversations) ? hello.conversations : [];
    const listed = new Set();
    for (const snap of snapshot) {
      const id = snap.conversation_id;
      listed.add(id);
      const st = this._convs.get(id);
      if (!st) {
        // New while we were away: fetch it whole; its history pages in when opened.
        this._fetchConversation(id).catch(() => {});
        continue;
      }
      this._applyWatermarks(st, snap);
      const thread = this._thread(id);
      const lastChange = typeof snap.last_change === 'number' ? snap.last_change : null;
      // No change cursor yet (first load): what REST loads is current, so start from here.
      if (st.lastChange === null && lastChange !== null) {
        st.lastChange = lastChange;
        st.staleCache = false;
      }
      const changesBehind = lastChange !== null && lastChange > (st.lastChange ?? 0);
      if (snap.last_seq > thread.cursor || changesBehind) {
        cursors[id] = thread.cursor;
        if (lastChange !== null && st.lastChange !== null) changes[id] = st.lastChange;
      }
      if (typeof snap.unread_count === 'number' && !(snap.last_seq > thread.cursor)) {
        st.readSeq = Math.max(st.readSeq, snap.last_seq - snap.unread_count);
      }
    }
    const serverTime = Date.parse(hello.server_time) || this._clock.now();
    for (const [id, st] of [...this._convs]) {
      if (!listed.has(id) && Date.parse(st.data.created_at) < serverTime - 5000) this._removeConversation(id);
    }
    if (Object.keys(cursors).length) this._connection?.send(Object.keys(changes).length ? { type: 'sync', cursors, changes } : { type: 'sync', cursors });
    this._outbox?.flush();
    // A new server session starts online, whatever the last one was told: a tab shown again
    // while the socket was gone could not say so then.
    this._awaySent = false;
    if (this._document?.visibilityState === 'hidden') this._sendPresence(false);
    // After a reconnect, or when the list so far is only the cache's (the server was down).
    if (reconnect || !this._listFromServer) this.refreshConversations().catch(() => {});
    // Presence of the list's most recent contacts (changes then arrive live).
    this._prefetchPresence();
    if (this._activeId) this._maybeMarkRead(this._activeId);
    this._markDirty({ conversations: true, unread: true });
  }

  /** @param {any} f */
  _onSyncDone(f) {
    /** @type {Record<string, number>} */
    const next = {};
    /** @type {Record<string, number>} */
    const nextChanges = {};
    for (const [id, info] of Object.entries(f.conversations ?? {})) {
      const st = this._convs.get(id);
      if (!st) continue;
      this._applyWatermarks(st, /** @type {any} */ (info));
      const thread = this._thread(id);
      const i = /** @type {any} */ (info);
      // Every change up to it was replayed before this frame.
      if (typeof i.last_change === 'number') st.lastChange = Math.max(st.lastChange ?? 0, i.last_change);
      if (i.has_more) {
        next[id] = thread.cursor;
        if (st.lastChange !== null && typeof i.last_change === 'number') nextChanges[id] = st.lastChange;
      }
      else if (typeof i.last_seq === 'number' && thread.cursor < i.last_seq) this._catchUp(id);
      this._markDirty({ messages: id });
    }
    if (Object.keys(next).length) this._connection?.send(Object.keys(nextChanges).length ? { type: 'sync', cursors: next, changes: nextChanges } : { type: 'sync', cursors: next });
    this._markDirty({ conversations: true, unread: true });
  }

  /**
   * `message_updated`, `message_deleted`, `reaction`: live, or replayed by a `sync`. Applied
   * when newer than the held copy (`change_seq`); never adds a message we do not hold (its
   * history, when loaded, is current). Moves the conversation's change cursor.
   * @param {any} f
   */
  _onChangeFrame(f) {
    const id = f.conversation_id ?? f.message?.conversation_id;
    const st = id ? this._convs.get(id) : undefined;
    if (!st) return;
    const changeSeq = typeof f.change_seq === 'number' ? f.change_seq : (f.message?.change_seq ?? 0);
    if (changeSeq > 0) st.lastChange = Math.max(st.lastChange ?? 0, changeSeq);
    this._markDirty({ conversations: true });
    // Cached messages not on screen yet are brought in first, so the change reaches them too.
    const thread = this._thread(id);
    if (this._cache && !thread.loaded && !thread.bySeq.size) this._hydrateThread(id).then(() => this._applyChangeFrame(f, changeSeq));
    else this._applyChangeFrame(f, changeSeq);
  }

  /** @param {any} f @param {number} changeSeq */
  _applyChangeFrame(f, changeSeq) {
    const id = f.conversation_id ?? f.message?.conversation_id;
    const st = this._convs.get(id);
    if (!st) return;
    if (f.type === 'message_updated') {
      if (!f.message || typeof f.message !== 'object') return;
      this._applyCopy(id, { ...f.message, conversation_id: id, change_seq: Math.max(changeSeq, f.message.change_seq ?? 0) }, f.message.deleted_at ? 'delete' : 'edit');
      return;
    }
    const messageId = f.message_id;
    const held = this.message(id, messageId);
    if (f.type === 'message_deleted') {
      if (held && changeSeq > (held.change_seq ?? 0)) {
        Object.assign(held, { content: '', deleted_at: f.deleted_at ?? new Date(this._clock.now()).toISOString(), deleted_by: f.deleted_by ?? null, change_seq: changeSeq, reactions: [] });
        delete /** @type {any} */ (held).e2ee;
        this._changed(id, messageId, 'delete', false);
      }
      this._updateLast(st, messageId, { content: '', deleted_at: f.deleted_at ?? null });
      this._updateQuotes(id, messageId, { content: '', deleted: true });
      return;
    }
    // reaction
    if (!held || changeSeq <= (held.change_seq ?? 0) || !Array.isArray(f.reactions)) return;
    const mine = f.user_id && f.user_id === this._me?.id ? { emoji: f.emoji, added: !!f.added } : null;
    held.reactions = withMe(f.reactions, held.reactions ?? [], this._me?.id ?? null, mine);
    held.change_seq = changeSeq;
    // The frame carries the whole message as it is now: an edit this copy missed (made while
    // we were away, its own number absorbed by this one) comes with it.
    const now = f.message && typeof f.message === 'object' && !f.message.deleted_at ? f.message : null;
    const raw = /** @type {any} */ (held).e2ee ? /** @type {any} */ (held).e2ee.envelope : held.content;
    if (now && typeof now.content === 'string' && now.content !== raw) {
      Object.assign(held, { content: now.content, edited_at: now.edited_at ?? null });
      this._adopt(id, held);
      this._updateLast(st, messageId, { content: held.content, edited_at: now.edited_at ?? null, deleted_at: null });
      if (held.content_type !== 'encrypted' || /** @type {any} */ (held).e2ee?.state === 'ok') this._updateQuotes(id, messageId, { content: previewText(held.content), deleted: false });
    }
    this._changed(id, messageId, 'reaction', false);
  }

  /**
   * A server copy of a message (an answer to our change, a `message_updated`): merged into the
   * held one when newer; the quotes of its replies and the list preview follow.
   * @param {string} conversationId @param {Message} copy @param {'edit'|'delete'} kind
   */
  _applyCopy(conversationId, copy, kind) {
    if (!copy || !copy.id) return;
    const st = this._convs.get(conversationId);
    const held = this.message(conversationId, copy.id);
    const merged = held ? mergeCopy(held, copy, this._me?.id ?? null) : false;
    if (held) this._adopt(conversationId, held);
    if (held && merged) this._changed(conversationId, copy.id, kind, false);
    else if (held) this._markDirty({ messages: conversationId });
    const now = held ?? copy;
    if ((copy.change_seq ?? 0) >= (held?.change_seq ?? 0)) {
      if (st) this._updateLast(st, copy.id, { content: now.content, edited_at: now.edited_at ?? null, deleted_at: now.deleted_at ?? null });
      // An envelope not decrypted (yet) is never quoted as text: its decryption updates the quotes.
      const opaque = now.content_type === 'encrypted' && /** @type {any} */ (now).e2ee?.state !== 'ok';
      if (now.deleted_at || !opaque) this._updateQuotes(conversationId, copy.id, { content: now.deleted_at ? '' : previewText(now.content), deleted: !!now.deleted_at });
    }
  }

  /**
   * Our change shown before the server answers. Returns the undo, which restores what was there
   * unless the server's word came since (then that stands) and says whether it did.
   * @param {string} conversationId @param {HeldMessage} held @param {'edit'|'delete'} kind @param {Partial<Message>} patch
   */
  _optimistic(conversationId, held, kind, patch) {
    /** @type {any} */
    const saved = { content: held.content, edited_at: held.edited_at ?? null, deleted_at: held.deleted_at ?? null, deleted_by: held.deleted_by ?? null, reactions: held.reactions ?? [] };
    if (/** @type {any} */ (held).e2ee) saved.e2ee = /** @type {any} */ (held).e2ee;
    const before = held.change_seq ?? 0;
    Object.assign(held, patch);
    this._changed(conversationId, held.id, kind, true);
    return () => {
      if ((held.change_seq ?? 0) !== before) return false;
      Object.assign(held, saved);
      this._changed(conversationId, held.id, kind, true);
      return true;
    };
  }

  /** @param {HeldMessage} held @param {string} emoji @param {boolean} add */
  _toggleReaction(held, emoji, add) {
    const meId = this._me?.id ?? '';
    const list = (held.reactions ?? []).map((r) => ({ ...r, user_ids: [...(r.user_ids ?? [])] }));
    let r = list.find((x) => x.emoji === emoji);
    if (add) {
      if (!r) list.push((r = { emoji, count: 0, user_ids: [], me: false }));
      if (!r.me) {
        r.count++;
        r.me = true;
        if (!r.user_ids.includes(meId) && r.user_ids.length < 10) r.user_ids.push(meId);
      }
    } else if (r && r.me) {
      r.count--;
      r.me = false;
      r.user_ids = r.user_ids.filter((u) => u !== meId);
    }
    held.reactions = list.filter((x) => x.count > 0);
  }

  /** @param {string} conversationId @param {string} messageId @param {'edit'|'delete'|'reaction'} kind @param {boolean} local */
  _changed(conversationId, messageId, kind, local) {
    this._threads.get(conversationId)?.touch();
    const st = this._convs.get(conversationId);
    const held = this.message(conversationId, messageId);
    if (st && held && kind !== 'reaction') this._updateLast(st, messageId, { content: held.content, edited_at: held.edited_at ?? null, deleted_at: held.deleted_at ?? null });
    this.emit('message_changed', { conversationId, messageId, kind, message: held, local });
    this._markDirty({ conversations: kind !== 'reaction', messages: conversationId });
  }

  /** @param {string} conversationId @param {string} messageId @param {'edit'|'delete'|'reaction'} kind @param {any} error */
  _changeFailed(conversationId, messageId, kind, error) {
    this.emit('change_failed', { conversationId, messageId, kind, error });
  }

  /** The list's copy of the last message, when it is this one. @param {ConversationState} st @param {string} messageId @param {Partial<Message>} patch */
  _updateLast(st, messageId, patch) {
    const last = st.data.last_message;
    if (!last || last.id !== messageId) return;
    const held = /** @type {any} */ (this.message(st.data.id, messageId));
    /** @type {any} */
    let next = last;
    if (last !== held) {
      // The held copy's decryption, when there is one; else the server's envelope is decrypted.
      next = { ...last, ...patch, ...(held?.e2ee && !held.deleted_at ? { content: held.content, e2ee: held.e2ee } : {}) };
      this._adopt(st.data.id, next);
    }
    st.data = { ...st.data, last_message: next };
    this._markDirty({ conversations: true });
  }

  /**
   * The quotes of replies to a message, after it changed.
   * @param {string} conversationId @param {string} messageId @param {{content: string, deleted: boolean}} patch
   */
  _updateQuotes(conversationId, messageId, patch) {
    const thread = this._threads.get(conversationId);
    if (!thread) return;
    // Quotes of an encrypted original say so (the cache then never keeps their text).
    if (this.message(conversationId, messageId)?.content_type === 'encrypted') patch = { ...patch, content_type: 'encrypted' };
    let touched = false;
    for (const m of [...thread.bySeq.values(), ...thread.pending.values()]) {
      if (m.reply_to !== messageId) continue;
      const prev = m.reply_preview ?? { id: messageId, sender_id: this.message(conversationId, messageId)?.sender_id ?? '', content: '', deleted: false };
      if (prev.content === patch.content && prev.deleted === patch.deleted) continue;
      m.reply_preview = { ...prev, ...patch };
      touched = true;
    }
    if (touched) {
      thread.touch();
      this._markDirty({ messages: conversationId });
    }
  }

  /** A quote of a held message, for the optimistic copy of a reply. @param {string} conversationId @param {string} messageId @returns {import('./rest.js').ReplyPreview|null} */
  _previewOf(conversationId, messageId) {
    const m = this.message(conversationId, messageId);
    if (!m) return null;
    if (m.content_type === 'encrypted' && !m.deleted_at) {
      const ok = /** @type {any} */ (m).e2ee?.state === 'ok';
      return /** @type {any} */ ({ id: m.id, sender_id: m.sender_id, content: ok ? previewText(m.content) : ENCRYPTED_PREVIEW, content_type: 'encrypted', deleted: false });
    }
    return { id: m.id, sender_id: m.sender_id, content: m.deleted_at ? '' : previewText(m.content), deleted: !!m.deleted_at };
  }

  /** @param {any} f */
  _onAck(f) {
    const entry = this._outbox?.entries.get(f.temp_id);
    if (!entry) return;
    /** @type {Message} */
    const message = {
      id: f.message_id,
      conversation_id: f.conversation_id ?? entry.conversation_id,
      seq: f.seq,
      sender_id: /** @type {User} */ (this._me).id,
      content: entry.content,
      content_type: entry.content_type,
      reply_to: entry.reply_to ?? null,
      temp_id: entry.temp_id,
      created_at: f.created_at ?? entry.created_at,
      edited_at: null,
      deleted_at: null,
      status: 'sent',
      change_seq: 0,
      reactions: [],
    };
    const local = this._threads.get(message.conversation_id)?.pending.get(entry.temp_id);
    const files = /** @type {any} */ (local)?.attachments ?? entry.attachments;
    if (files?.length) message.attachments = files;
    if (local?.reply_preview !== undefined) message.reply_preview = local.reply_preview;
    this._outbox?.ack(f.temp_id, message);
  }

  /** @param {any} f */
  _onConversationEvent(f) {
    const c = f.conversation;
    if (!c || !c.id) return;
    if (f.event === 'member_removed' && f.user_id === this._me?.id) {
      this._removeConversation(c.id);
      return;
    }
    const known = this._convs.get(c.id);
    if (Array.isArray(c.participants) && c.participants.length) this._upsert(c);
    else if (known) {
      if (typeof c.title !== 'undefined') known.data = { ...known.data, title: c.title };
      this._markDirty({ conversations: true, messages: c.id });
    }
    // Membership changed or we do not know the members yet: fetch the full conversation.
    if (!known || f.event === 'member_added' || f.event === 'member_removed' || !(c.participants?.length)) this._fetchConversation(c.id).catch(() => {});
  }

  /**
   * @param {import('./outbox.js').OutboxEntry} entry
   * @param {'added'|'status'|'acked'} change
   * @param {Message} [serverMessage]
   */
  _onOutboxChange(entry, change, serverMessage) {
    const thread = this._thread(entry.conversation_id);
    if (change === 'added') {
      /** @type {HeldMessage} */
      const local = {
        key: `t:${entry.temp_id}`,
        local: true,
        id: '',
        seq: 0,
        conversation_id: entry.conversation_id,
        sender_id: this._me?.id ?? '',
        content: entry.content,
        content_type: entry.content_type,
        reply_to: entry.reply_to ?? null,
        reply_preview: entry.reply_to ? this._previewOf(entry.conversation_id, entry.reply_to) : null,
        temp_id: entry.temp_id,
        created_at: entry.created_at,
        edited_at: null,
        deleted_at: null,
        status: entry.status === 'failed' ? 'failed' : 'sending',
        error: entry.error,
        change_seq: 0,
        reactions: [],
        ...(entry.attachments?.length ? { attachments: entry.attachments.map((a) => ({ ...a })) } : {}),
      };
      // An encrypted send shown before it was encrypted: the same message, now with its envelope.
      const shown = thread.pending.get(entry.temp_id);
      if (shown?.reply_preview) local.reply_preview = shown.reply_preview;
      this._adopt(entry.conversation_id, local);
      thread.addPending(local);
      const st = this._convs.get(entry.conversation_id);
      if (st) st.readSeq = Math.max(st.readSeq, st.lastSeq);
    } else if (change === 'status') {
      const local = thread.pending.get(entry.temp_id);
      if (local) {
        local.status = entry.status === 'failed' ? 'failed' : 'sending';
        local.error = entry.error;
        /** @type {any} */ (local).queued = entry.status === 'queued';
        thread.touch();
      }
    } else if (change === 'acked') {
      if (serverMessage) this._ingest(serverMessage, false);
      else thread.removePending(entry.temp_id);
    }
    this._markDirty({ conversations: true, messages: entry.conversation_id });
  }

  /**
   * Take one message from anywhere (live, replay, history, polling, ack). Returns true when it
   * was new to us.
   * @param {Message} msg
   * @param {boolean} live
   */
  _ingest(msg, live) {
    if (!msg || !msg.conversation_id || typeof msg.seq !== 'number') return false;
    const id = msg.conversation_id;
    const st = this._convs.get(id);
    if (!st) {
      // A conversation we do not know yet (just created, or we were added): learn it first, so
      // its cursor starts at its last seq instead of fetching its whole history as a "gap".
      this._fetchConversation(id).then(
        () => {
          if (this._convs.has(id)) this._ingest(msg, live);
        },
        () => {},
      );
      return false;
    }
    const thread = this._thread(id);
    const { added, message, gap } = thread.ingest(msg);
    this._adopt(id, message);
    const mine = msg.sender_id === this._me?.id;
    if (mine && msg.temp_id) this._outbox?.ack(msg.temp_id);
    if (added) {
      st.lastSeq = Math.max(st.lastSeq, msg.seq);
      if (mine) st.readSeq = Math.max(st.readSeq, msg.seq);
      const last = st.data.last_message;
      if (!last || (last.seq ?? 0) <= msg.seq) st.data = { ...st.data, last_message: message, last_message_at: message.created_at };
      if (!mine) this._roster?.clear(id, msg.sender_id);
      this.emit('message', { conversationId: id, message, live });
      if (!mine && id === this._activeId) this._maybeMarkRead(id);
    }
    this._markDirty({ conversations: true, unread: true, messages: id });
    if (gap) this._catchUp(id);
    return added;
  }

  /**
   * Fetch, oldest first, everything after what we hold contiguously (a gap, a poll, a reopen).
   * One at a time per conversation; a request during a run triggers one more run.
   * @param {string} id
   */
  _catchUp(id) {
    const running = this._catchUps.get(id);
    if (running) {
      this._catchUpAgain.add(id);
      return running;
    }
    const run = (async () => {
      const thread = this._thread(id);
      for (let page = 0; page < 50; page++) {
        const before = thread.cursor;
        const list = (await this.rest.messagesAfter(id, thread.cursor, CATCH_UP_PAGE)) ?? [];
        for (const m of list) this._ingest(m, false);
        if (list.length < CATCH_UP_PAGE || thread.cursor === before) break;
      }
    })()
      .catch((err) => this._log.debug?.('chat sdk: catch-up failed', err))
      .finally(() => {
        this._catchUps.delete(id);
        if (this._catchUpAgain.delete(id)) {
          const thread = this._threads.get(id);
          if (thread && thread.gap()) this._catchUp(id);
        }
      });
    this._catchUps.set(id, run);
    return run;
  }

  /**
   * Polling (no WebSocket, so no change frames): what is new, and the newest page again, whose
   * edits, deletions and reactions are merged by `change_seq`.
   * @param {string} id
   */
  async _pollMessages(id) {
    await this._catchUp(id);
    const thread = this._threads.get(id);
    if (!thread?.loaded) return;
    const page = await this.rest.messagesBefore(id, { limit: PAGE }).catch(() => null);
    for (const m of page ?? []) {
      if (!m || typeof m.change_seq !== 'number') continue;
      if (this.message(id, m.id)) this._applyCopy(id, m, m.deleted_at ? 'delete' : 'edit');
    }
  }

  /** @param {string} id */
  async _loadLatest(id) {
    const thread = this._thread(id);
    const page = (await this.rest.messagesBefore(id, { limit: PAGE })) ?? [];
    for (const m of [...page].sort((a, b) => a.seq - b.seq)) this._ingest(m, false);
    thread.loaded = true;
    if (page.length < PAGE) thread.reachedStart = true;
    this._markDirty({ messages: id });
    // Anything newer than the page (it raced with live traffic) or a hole below the live tail.
    if (thread.gap(this._convs.get(id)?.lastSeq ?? 0)) await this._catchUp(id);
  }

  /** @param {string} id */
  _fetchConversation(id) {
    const inflight = this._convFetches.get(id);
    if (inflight) return inflight;
    const run = this.rest
      .getConversation(id)
      .then((c) => {
        if (c && c.id) this._upsert(c);
      })
      .catch((err) => {
        if (err instanceof ApiError && (err.status === 403 || err.status === 404)) this._removeConversation(id);
        throw err;
      })
      .finally(() => this._convFetches.delete(id));
    this._convFetches.set(id, run);
    return run;
  }

  /**
   * Presence of a conversation's members (live changes then come as `presence` frames).
   * @param {string} id
   */
  _fetchPresence(id) {
    return this.rest.presence(id).then(
      (p) => {
        for (const row of p?.participants ?? []) if (row.user_id !== this._me?.id) this._setPresence(row.user_id, row.status, row.last_seen ?? null);
      },
      () => {},
    );
  }

  /** Presence for the most recent conversations, a few requests at a time. */
  async _prefetchPresence() {
    const ids = this.conversations()
      .slice(0, PRESENCE_PREFETCH)
      .map((v) => v.id);
    const workers = Array.from({ length: 4 }, async () => {
      for (let id = ids.shift(); id; id = ids.shift()) {
        if (!this._started) return;
        await this._fetchPresence(id);
      }
    });
    await Promise.all(workers);
  }

  /** @param {string} userId */
  _fetchUser(userId) {
    if (!userId || this._userFetches.has(userId) || !this._started) return;
    const run = this.rest.getUser(userId).then(
      (u) => {
        if (u && u.id) {
          this._users.set(u.id, u);
          this._markDirty({ conversations: true });
          if (this._activeId) this._markDirty({ messages: this._activeId });
        }
        return u;
      },
      () => null,
    );
    this._userFetches.set(userId, run);
  }

  // -------------------------------------------------------------------- cache

  /** The cached list, shown while (or instead of, when the server is down) the server answers. */
  async _hydrate() {
    const cache = this._cache;
    if (!cache) return;
    const records = await cache.loadConversations();
    // The server's list came first: it is newer, and what it no longer lists is gone.
    if (cache !== this._cache || !this._started) return;
    if (this._listFromServer) {
      // The server's list wins, but the change cursors are only ours: what the cached messages
      // reflect, and where the next `sync` of changes starts.
      for (const rec of records) {
        const st = this._convs.get(rec?.id);
        if (!st || st.lastChange !== null) continue;
        if (typeof rec.lastChange === 'number' && rec.lastChange >= 0) st.lastChange = rec.lastChange;
        else if (!('lastChange' in rec)) st.staleCache = true;
      }
      return;
    }
    for (const rec of records) {
      try {
        this._restoreConversation(rec);
      } catch (err) {
        this._log.debug?.('chat sdk: skipped a cached conversation', err);
      }
    }
  }

  /** @param {import('./cache.js').ConversationRecord} rec */
  _restoreConversation(rec) {
    if (this._convs.has(rec.id) || rec.data.id !== rec.id || typeof rec.data.created_at !== 'string') return;
    const participants = Array.isArray(rec.data.participants) ? rec.data.participants.filter((p) => p && typeof p.user_id === 'string') : [];
    const st = this._upsert({ ...rec.data, participants });
    const n = (/** @type {any} */ v) => (typeof v === 'number' && v > 0 ? v : 0);
    st.lastSeq = Math.max(st.lastSeq, n(rec.lastSeq));
    st.readSeq = Math.max(st.readSeq, n(rec.readSeq));
    st.peerDelivered = Math.max(st.peerDelivered, n(rec.peerDelivered));
    st.peerRead = Math.max(st.peerRead, n(rec.peerRead));
    if (typeof rec.lastChange === 'number' && rec.lastChange >= 0) st.lastChange = Math.max(st.lastChange ?? 0, rec.lastChange);
    // Written before change cursors existed: edits and deletions since then are unknown.
    else if (!('lastChange' in rec) && st.lastChange === null) st.staleCache = true;
    for (const [userId, m] of Array.isArray(rec.marks) ? rec.marks : []) {
      const cur = st.marks.get(userId) ?? { delivered: 0, read: 0 };
      st.marks.set(userId, { delivered: Math.max(cur.delivered, n(m?.delivered)), read: Math.max(cur.read, n(m?.read)) });
    }
    this._thread(rec.id).noteLastSeq(st.lastSeq);
  }

  /**
   * Put a conversation's cached messages in its thread, once, unless the server's got there
   * first. Everything up to the cached cursor is then known; only what is newer is fetched.
   * @param {string} id
   */
  _hydrateThread(id) {
    const cache = this._cache;
    if (!cache) return Promise.resolve();
    let run = this._threadLoads.get(id);
    if (run) return run;
    run = cache.loadThread(id).then((rec) => {
      if (!rec || cache !== this._cache) return;
      const thread = this._thread(id);
      if (thread.loaded || thread.bySeq.size) return;
      const cursor = typeof rec.cursor === 'number' && rec.cursor > 0 ? rec.cursor : 0;
      // Far behind: the newest page is worth more than catching up from here.
      const st = this._convs.get(id);
      if (st && st.lastSeq - cursor > cache.limit) return;
      // Cached before change cursors existed: edits and deletions since are unknown.
      if (st?.staleCache) return;
      thread.cursor = cursor;
      const messages = rec.messages.filter((m) => m && typeof m.id === 'string' && typeof m.seq === 'number' && m.seq <= cursor).sort((a, b) => a.seq - b.seq);
      for (const m of messages) {
        this._adopt(id, thread.ingest({ ...m, conversation_id: id }).message);
        // The server had it: an outbox entry still waiting for its ack is done.
        if (m.temp_id && m.sender_id === this._me?.id) this._outbox?.ack(m.temp_id);
      }
      if (rec.reachedStart) thread.reachedStart = true;
      thread.loaded = true;
      this._markDirty({ conversations: true, messages: id });
    }).catch((err) => this._log.debug?.('chat sdk: skipped the cached messages', err));
    this._threadLoads.set(id, run);
    return run;
  }

  /**
   * What the cache keeps of a conversation's messages: the newest contiguous ones up to the
   * cursor, at most `cacheLimit`. Undefined (keep what is cached) while the thread holds
   * nothing loaded; null (drop it) when nothing can be kept.
   * @param {string} id
   * @returns {import('./cache.js').ThreadRecord|null|undefined}
   */
  _threadRecord(id) {
    const thread = this._threads.get(id);
    if (!thread || !thread.loaded || !this._convs.has(id)) return undefined;
    const held = [...thread.bySeq.values()].filter((m) => m.seq <= thread.cursor).sort((a, b) => a.seq - b.seq);
    if (!held.length) return thread.cursor === 0 ? { id, cursor: 0, reachedStart: thread.reachedStart, messages: [] } : null;
    const floor = Math.max(0, held.length - this._cacheLimit);
    let start = held.length - 1;
    while (start > floor && held[start - 1].seq === held[start].seq - 1) start--;
    const window = held.slice(start);
    return {
      id,
      cursor: window[window.length - 1].seq,
      reachedStart: (thread.reachedStart && start === 0) || window[0].seq === 1,
      messages: window.map(storedMessage),
    };
  }

  // -------------------------------------------------------------------- model

  /** @param {string} id */
  _thread(id) {
    let t = this._threads.get(id);
    if (!t) {
      t = new MessageThread(id, this._me?.id ?? null);
      this._threads.set(id, t);
    }
    if (!t.meId && this._me) t.meId = this._me.id;
    return t;
  }

  /**
   * Merge a conversation from the server.
   * @param {Conversation} c
   * @returns {ConversationState}
   */
  _upsert(c) {
    let st = this._convs.get(c.id);
    const lastSeq = typeof c.last_seq === 'number' ? c.last_seq : (c.last_message?.seq ?? 0);
    if (!st) {
      st = { data: c, lastSeq: 0, readSeq: 0, marks: new Map(), peerDelivered: 0, peerRead: 0, lastChange: null };
      this._convs.set(c.id, st);
      // A conversation that appears while connected (created, or we were added): its presence.
      if (this._helloSeen && this._started) queueMicrotask(() => this._fetchPresence(c.id));
    } else {
      const keepLast = st.data.last_message && (!c.last_message || (st.data.last_message.seq ?? 0) > (c.last_message.seq ?? 0));
      st.data = {
        ...st.data,
        ...c,
        participants: Array.isArray(c.participants) && c.participants.length ? c.participants : st.data.participants,
        last_message: keepLast ? st.data.last_message : (c.last_message ?? st.data.last_message),
        last_message_at: keepLast ? st.data.last_message_at : (c.last_message_at ?? st.data.last_message_at),
      };
    }
    st.lastSeq = Math.max(st.lastSeq, lastSeq);
    this._adopt(c.id, st.data.last_message);
    this._syncKeys(st);
    // Messages we should hold are missing (a poll saw them first): fetch them now for the open
    // conversation; others catch up when opened.
    if (this._thread(c.id).noteLastSeq(lastSeq) && c.id === this._activeId && this._started) this._catchUp(c.id);
    if (typeof c.unread_count === 'number') st.readSeq = Math.max(st.readSeq, lastSeq - c.unread_count);
    for (const p of st.data.participants ?? []) {
      this._users.set(p.user_id, {
        ...this._users.get(p.user_id),
        id: p.user_id,
        display_name: p.display_name,
        email: p.email ?? this._users.get(p.user_id)?.email ?? '',
        avatar_url: p.avatar_url ?? null,
      });
      if (p.user_id === this._me?.id) {
        if (typeof p.read_seq === 'number') st.readSeq = Math.max(st.readSeq, p.read_seq);
        continue;
      }
      const m = this._marks(st, p.user_id);
      st.marks.set(p.user_id, { delivered: Math.max(m.delivered, p.delivered_seq ?? 0, p.read_seq ?? 0), read: Math.max(m.read, p.read_seq ?? 0) });
      const status = p.status ?? /** @type {any} */ (p).presence?.status;
      if (status) this._setPresence(p.user_id, status, p.last_seen ?? null);
      else if (!this._presence.has(p.user_id) && p.last_seen) this._presence.set(p.user_id, { status: 'offline', last_seen: p.last_seen });
    }
    this._markDirty({ conversations: true, unread: true, messages: c.id });
    return st;
  }

  /** @param {string} id */
  _removeConversation(id) {
    if (!this._convs.delete(id)) return;
    this._threads.delete(id);
    this._cache?.forget(id);
    if (this._activeId === id) this._activeId = null;
    this.emit('removed', { conversationId: id });
    this._markDirty({ conversations: true, unread: true });
  }

  /** @param {ConversationState} st @param {any} w */
  _applyWatermarks(st, w) {
    if (typeof w.read_seq === 'number') st.readSeq = Math.max(st.readSeq, w.read_seq);
    if (typeof w.last_seq === 'number') st.lastSeq = Math.max(st.lastSeq, w.last_seq);
    if (typeof w.peer_delivered_seq === 'number') st.peerDelivered = Math.max(st.peerDelivered, w.peer_delivered_seq);
    if (typeof w.peer_read_seq === 'number') st.peerRead = Math.max(st.peerRead, w.peer_read_seq);
    this._markDirty({ messages: st.data.id });
  }

  /**
   * A member's delivered (and read) watermark moved.
   * @param {string} conversationId @param {string} userId @param {number} delivered @param {number} read
   */
  _moveMark(conversationId, userId, delivered, read) {
    const st = this._convs.get(conversationId);
    if (!st || typeof delivered !== 'number') return;
    if (userId === this._me?.id) {
      // Our own read state moved on another device.
      if (read) st.readSeq = Math.max(st.readSeq, read);
      this._markDirty({ conversations: true, unread: true });
      return;
    }
    const m = this._marks(st, userId);
    st.marks.set(userId, { delivered: Math.max(m.delivered, delivered, read), read: Math.max(m.read, read) });
    this._markDirty({ messages: conversationId, conversations: true });
  }

  /** @param {ConversationState} st @param {string} userId */
  _marks(st, userId) {
    const m = st.marks.get(userId) ?? { delivered: 0, read: 0 };
    return { delivered: Math.max(m.delivered, st.peerDelivered, st.peerRead), read: Math.max(m.read, st.peerRead) };
  }

  /** @param {ConversationState} st */
  _others(st) {
    return (st.data.participants ?? []).filter((p) => p.user_id !== this._me?.id);
  }

  /** @param {ConversationState} st */
  _unread(st) {
    return Math.max(0, st.lastSeq - st.readSeq);
  }

  /** @param {ConversationState} st @returns {ConversationView} */
  _view(st) {
    const c = st.data;
    const others = this._others(st);
    const mine = (c.participants ?? []).find((p) => p.user_id === this._me?.id);
    const name =
      c.type === 'group'
        ? c.title || others.map((p) => p.display_name).join(', ') || 'Group'
        : (others[0]?.display_name ?? c.title ?? 'Conversation');
    const thread = this._threads.get(c.id);
    /** @type {any} */
    let last = c.last_message ?? null;
    const newest = thread?.newest();
    if (newest && (!last || newest.seq >= (last.seq ?? 0))) last = newest;
    const pending = thread ? [...thread.pending.values()] : [];
    if (pending.length) last = pending[pending.length - 1];
    const times = [c.created_at, c.last_message_at, last?.created_at].filter(Boolean);
    const lastActivity = times.sort(compareTime).pop() ?? null;
    return {
      id: c.id,
      type: c.type,
      title: c.title ?? null,
      name,
      participants: c.participants ?? [],
      others,
      my_role: mine?.role ?? null,
      created_at: c.created_at,
      last_seq: st.lastSeq,
      last_message: last,
      last_activity_at: lastActivity,
      unread_count: this._unread(st),
      encrypted: !!c.encrypted,
      key_version: Number(c.key_version ?? 0),
      key_held: !!c.encrypted && !!this.e2ee && this.e2ee.heldVersion(c.id) > 0 && this.e2ee.hasKey(c.id, Number(c.key_version ?? 0) || this.e2ee.heldVersion(c.id)),
    };
  }

  /** @param {ConversationState} st */
  _viewOf(st) {
    return this._view(st);
  }

  /** @param {string} id */
  _refreshPreview(id) {
    this._markDirty({ conversations: true, messages: id });
  }

  /** @param {string} userId @param {string} status @param {string|null} lastSeen */
  _setPresence(userId, status, lastSeen) {
    if (!userId || !status) return;
    const prev = this._presence.get(userId);
    const next = { status, last_seen: lastSeen ?? prev?.last_seen ?? null };
    this._presence.set(userId, next);
    if (prev && prev.status === next.status && prev.last_seen === next.last_seen) return;
    this.emit('presence', { userId, ...next });
    this._markDirty({ conversations: true });
  }

  // ------------------------------------------------------------- reads & away

  /** AC-28: a message arriving in the open, visible conversation is marked read. @param {string} id */
  _maybeMarkRead(id) {
    if (this._document?.visibilityState === 'hidden') return;
    this.markRead(id);
  }

  _flushReads() {
    const batch = [...this._readQueue];
    this._readQueue.clear();
    for (const [conversationId, messageId] of batch) {
      const sent = this._connection?.send({ type: 'read', conversation_id: conversationId, message_id: messageId });
      if (!sent) {
        this.rest.markRead(conversationId, messageId).catch((err) => this._log.debug?.('chat sdk: mark read failed', err));
      }
    }
  }

  /** @param {boolean} visible */
  _onVisibility(visible) {
    // A hidden page may be closed without notice: what the cache has pending is written now.
    if (!visible) this._cache?.flush();
    this._sendPresence(visible);
    if (visible && this._activeId) this._maybeMarkRead(this._activeId);
  }

  /** @param {boolean} visible */
  _sendPresence(visible) {
    if (!visible) {
      if (this._connection?.send({ type: 'presence', status: 'away' })) this._awaySent = true;
    } else if (this._awaySent) {
      if (this._connection?.send({ type: 'presence', status: 'online' })) this._awaySent = false;
    }
  }

  // ---------------------------------------------------------- change batching

  /**
   * Gather change notifications and emit them once per microtask, so a sync replay of a hundred
   * messages re-renders once.
   * @param {{conversations?: boolean, unread?: boolean, messages?: string}} what
   */
  _markDirty(what) {
    if (what.conversations) this._dirty.conversations = true;
    if (what.unread) this._dirty.unread = true;
    if (what.messages) this._dirty.messages.add(what.messages);
    if (this._flushQueued) return;
    this._flushQueued = true;
    queueMicrotask(() => {
      this._flushQueued = false;
      const d = this._dirty;
      this._dirty = { conversations: false, unread: false, messages: new Set() };
      if (this._cache) {
        if (d.conversations || d.unread) this._cache.touchConversations();
        for (const id of d.messages) this._cache.touchThread(id);
      }
      if (d.conversations) this.emit('conversations');
      for (const id of d.messages) this.emit('messages', { conversationId: id });
      if (d.unread) this.emit('unread', { total: this.unreadTotal() });
    });
  }
}

/** A data: URL of a blob. @param {Blob} blob @returns {Promise<string>} */
async function blobToDataUrl(blob) {
  const FR = /** @type {any} */ (globalThis).FileReader;
  if (FR) {
    return new Promise((resolve, reject) => {
      const r = new FR();
      r.onload = () => resolve(String(r.result));
      r.onerror = () => reject(r.error);
      r.readAsDataURL(blob);
    });
  }
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:${blob.type || 'application/octet-stream'};base64,${btoa(bin)}`;
}

/** A message with files. @param {any} m */
function hasAttachments(m) {
  return Array.isArray(m?.attachments) && m.attachments.length > 0;
}

/** Only an AttachmentDto's own fields. @param {any} a @returns {import('./attachments.js').AttachmentDto} */
function plainDto(a) {
  const { id, filename, mime_type, size, width = null, height = null, thumbnail_url = null, url = null } = a;
  return { id, filename, mime_type, size, width, height, thumbnail_url, url };
}

/** The first characters of a message, as a quote shows them. @param {string|null|undefined} content */
function previewText(content) {
  return [...String(content ?? '')].slice(0, PREVIEW_CHARS).join('');
}

/** @param {string|null|undefined} a @param {string|null|undefined} b */
function compareTime(a, b) {
  return (a ? Date.parse(a) : 0) - (b ? Date.parse(b) : 0);
}

/**
 * What the cache keeps of a conversation: the server's data (without presence, which is only
 * true at the moment it was said) and the watermarks learned since.
 * @param {ConversationState} st
 * @returns {import('./cache.js').ConversationRecord}
 */
function conversationRecord(st) {
  const participants = (st.data.participants ?? []).map((p) => {
    const { status, presence, ...rest } = /** @type {any} */ (p);
    return rest;
  });
  const { e2ee, unsent, key, local, error, queued, ...last } = /** @type {any} */ (st.data.last_message ?? {});
  return {
    id: st.data.id,
    data: { ...st.data, participants, last_message: st.data.last_message ? opaque(last, e2ee) : st.data.last_message },
    lastSeq: st.lastSeq,
    readSeq: st.readSeq,
    marks: [...st.marks].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)),
    peerDelivered: st.peerDelivered,
    peerRead: st.peerRead,
    lastChange: st.lastChange,
  };
}

/** @param {HeldMessage} m @returns {Message} */
function storedMessage(m) {
  const { key, local, error, queued, e2ee, unsent, ...rest } = /** @type {any} */ (m);
  return opaque(rest, e2ee);
}

/**
 * A message as it may be written to disk: in an encrypted conversation its envelope, never its
 * decrypted text, and quotes of encrypted messages as the server gives them.
 * @param {any} m  without `e2ee` @param {any} e2ee  the message's decryption, if any
 */
function opaque(m, e2ee) {
  if (!m) return m;
  const out = { ...m };
  if (out.content_type === 'encrypted' && !out.deleted_at) out.content = e2ee ? e2ee.envelope : out.content;
  const q = out.reply_preview;
  // An encrypted original's quote, or any quote in an encrypted reply unless it says its original is text.
  if (q && !q.deleted && (q.content_type === 'encrypted' || (out.content_type === 'encrypted' && q.content_type !== 'text'))) out.reply_preview = { ...q, content: ENCRYPTED_PREVIEW };
  return out;
}

/** @param {IDBFactory|any} idb @param {string} name */
function deleteDatabase(idb, name) {
  return new Promise((resolve) => {
    try {
      const req = idb.deleteDatabase(name);
      req.onsuccess = req.onerror = req.onblocked = () => resolve(undefined);
    } catch {
      resolve(undefined);
    }
  });
}

function defaultIndexedDB() {
  try {
    return /** @type {any} */ (globalThis).indexedDB ?? null;
  } catch {
    return null; // some sandboxed frames throw on access
  }
}

function defaultStorage() {
  try {
    const s = /** @type {any} */ (globalThis).localStorage;
    if (!s) return null;
    const probe = '__chat_probe__';
    s.setItem(probe, '1');
    s.removeItem(probe);
    return s;
  } catch {
    return null;
  }
}
