// The local cache: the conversation list (with its participants and watermarks) and a bounded
// window of each conversation's newest messages, kept in IndexedDB so that a reload shows them
// at once, whether or not the server answers; the ChatClient then reconciles with the server.
//
// One database per signed-in user (`chat.cache.<userId>`), deleted on sign-out and when another
// user signs in on the same browser. Changes are gathered and written together, one transaction
// per `cacheWriteMs`, however many messages arrived. The queue of unsent messages is not here:
// it stays in the outbox (localStorage), which is its only copy.
//
// The cache is an optimisation, never a requirement: any failure of IndexedDB (absent, private
// mode, quota, blocked by another tab, an open that never answers) turns it off for the rest of
// the session and the client works as it would without it.

import { Timer, systemClock } from './clock.js';

/** Version of the database's schema; `upgrade()` migrates older ones. */
export const CACHE_SCHEMA_VERSION = 1;
/** Messages kept per conversation by default. */
export const DEFAULT_CACHE_LIMIT = 200;

const PREFIX = 'chat.cache.';
/** Users with a cache database on this browser (storage key), for clearing them. */
const REGISTRY_KEY = 'chat.cache.users';
const CONVERSATIONS = 'conversations';
const THREADS = 'threads';

/**
 * A cached conversation: the server's view of it and what the client learned since.
 * @typedef {object} ConversationRecord
 * @property {string} id
 * @property {import('./rest.js').Conversation} data
 * @property {number} lastSeq
 * @property {number} readSeq
 * @property {[string, {delivered: number, read: number}][]} marks
 * @property {number} peerDelivered
 * @property {number} peerRead
 * @property {number|null} [lastChange]  the change cursor: highest change number applied (absent in records of older clients)
 *
 * The newest messages of one conversation, contiguous, oldest first.
 * @typedef {object} ThreadRecord
 * @property {string} id            the conversation
 * @property {number} cursor        every seq up to it is in `messages` or older than them
 * @property {boolean} reachedStart `messages` begin with the conversation's first message
 * @property {import('./rest.js').Message[]} messages
 *
 * Where the cache takes what it writes, read when a write happens (not when it is asked for).
 * @typedef {object} CacheSource
 * @property {() => ConversationRecord[]} conversations  every conversation to keep
 * @property {(id: string) => ThreadRecord|null|undefined} thread  null: drop the cached window; undefined: leave it
 */

/** @param {string} userId */
export function cacheDatabaseName(userId) {
  return PREFIX + userId;
}

/**
 * Create or migrate the stores. Runs inside `onupgradeneeded`.
 * @param {IDBDatabase} db
 * @param {number} oldVersion  0 for a new database
 */
function upgrade(db, oldVersion) {
  if (oldVersion < 1) {
    if (!db.objectStoreNames.contains(CONVERSATIONS)) db.createObjectStore(CONVERSATIONS, { keyPath: 'id' });
    if (!db.objectStoreNames.contains(THREADS)) db.createObjectStore(THREADS, { keyPath: 'id' });
  }
  // A later schema: `if (oldVersion < 2) { ... }` here, and CACHE_SCHEMA_VERSION = 2.
}

export class ChatCache {
  /**
   * @param {object} opts
   * @param {IDBFactory|any} opts.indexedDB
   * @param {string} opts.userId
   * @param {CacheSource} opts.source
   * @param {Storage|null} [opts.storage]   remembers which users have a cache (for clearing)
   * @param {number} [opts.limit]           messages kept per conversation
   * @param {number} [opts.writeDelayMs]    changes are gathered this long, then written at once
   * @param {number} [opts.openTimeoutMs]   no open by then: no cache
   * @param {import('./clock.js').Clock} [opts.clock]
   * @param {Pick<Console,'warn'|'debug'>} [opts.logger]
   */
  constructor({ indexedDB, userId, source, storage = null, limit = DEFAULT_CACHE_LIMIT, writeDelayMs = 250, openTimeoutMs = 3000, clock = systemClock, logger = console }) {
    this._idb = indexedDB;
    this.userId = userId;
    this.name = cacheDatabaseName(userId);
    this._source = source;
    this._storage = storage;
    this.limit = Math.max(1, Math.floor(limit));
    this._delay = writeDelayMs;
    this._openTimeout = openTimeoutMs;
    this._clock = clock;
    this._log = logger;
    /** Turned off after a failure (or closed): nothing is read or written any more. */
    this.disabled = !indexedDB;
    /** @type {Promise<IDBDatabase|null>|null} */
    this._opening = null;
    /** @type {IDBDatabase|null} */
    this._db = null;
    this._timer = new Timer(clock);
    this._dirtyConversations = false;
    /** @type {Set<string>} */
    this._dirtyThreads = new Set();
    /** @type {Set<string>} */
    this._forgotten = new Set();
    /** What the database holds, as JSON per record (`c:<id>`, `t:<id>`): unchanged records are not rewritten. */
    /** @type {Map<string, string>} */
    this._written = new Map();
    /** Writes run one after the other. @type {Promise<void>} */
    this._chain = Promise.resolve();
    /** Writes wait for the first read, so they never overwrite what was not read yet. @type {Promise<any>} */
    this._loaded = Promise.resolve();
  }

  // -------------------------------------------------------------------- reads

  /** Every cached conversation ([] when none, or without a usable cache). @returns {Promise<ConversationRecord[]>} */
  loadConversations() {
    const run = this._read(CONVERSATIONS, (store) => store.getAll()).then((rows) => {
      const list = Array.isArray(rows) ? rows.filter((r) => r && typeof r.id === 'string' && r.data && typeof r.data === 'object') : [];
      for (const r of list) this._written.set(`c:${r.id}`, JSON.stringify(r));
      return list;
    });
    this._loaded = run;
    return run;
  }

  /** One conversation's cached window, or null. @param {string} id @returns {Promise<ThreadRecord|null>} */
  async loadThread(id) {
    const row = await this._read(THREADS, (store) => store.get(id));
    if (!row || typeof row !== 'object' || !Array.isArray(row.messages)) return null;
    this._written.set(`t:${id}`, JSON.stringify(row));
    return row;
  }

  /**
   * @param {string} storeName
   * @param {(store: IDBObjectStore) => IDBRequest} op
   * @returns {Promise<any>}
   */
  async _read(storeName, op) {
    const db = await this._open();
    if (!db) return null;
    return new Promise((resolve) => {
      try {
        const tx = db.transaction(storeName, 'readonly');
        const req = op(tx.objectStore(storeName));
        req.onsuccess = () => resolve(req.result ?? null);
        req.onerror = () => {
          this._fail('a read failed', req.error);
          resolve(null);
        };
        tx.onabort = () => {
          this._fail('a read was aborted', tx.error);
          resolve(null);
        };
      } catch (err) {
        this._fail('a read failed', err);
        resolve(null);
      }
    });
  }

  // ------------------------------------------------------------------- writes

  /** The list (or anything in it) changed: written with the next batch. */
  touchConversations() {
    this._dirtyConversations = true;
    this._schedule();
  }

  /** A conversation's messages changed. @param {string} id */
  touchThread(id) {
    this._dirtyThreads.add(id);
    this._schedule();
  }

  /** A conversation is gone (left, removed): drop it and its messages. @param {string} id */
  forget(id) {
    this._forgotten.add(id);
    this._dirtyThreads.delete(id);
    this._schedule();
  }

  _schedule() {
    if (this.disabled || this._timer.pending) return;
    this._timer.start(this._delay, () => {
      this.flush();
    });
  }

  /** Write what changed now (e.g. the page is being hidden or closed). @returns {Promise<void>} */
  flush() {
    this._timer.cancel();
    const run = this._chain.then(async () => {
      await this._loaded.catch(() => {});
      if (this.disabled) return;
      const work = this._collect();
      if (work) await this._write(work);
    });
    this._chain = run.catch(() => {});
    return this._chain;
  }

  /** Take a snapshot of what changed: the records to put and the keys to delete. */
  _collect() {
    /** @type {ConversationRecord[]} */
    const conversations = [];
    /** @type {ThreadRecord[]} */
    const threads = [];
    /** @type {Set<string>} */
    const gone = new Set(this._forgotten);
    /** @type {Set<string>} */
    const threadsGone = new Set();
    /** @type {Map<string, string|null>} */
    const sigs = new Map();
    this._forgotten.clear();
    try {
      if (this._dirtyConversations) {
        this._dirtyConversations = false;
        const seen = new Set();
        for (const rec of this._source.conversations()) {
          seen.add(rec.id);
          const sig = JSON.stringify(rec);
          if (this._written.get(`c:${rec.id}`) !== sig) {
            conversations.push(rec);
            sigs.set(`c:${rec.id}`, sig);
          }
        }
        // Cached, no longer in the list: gone.
        for (const key of this._written.keys()) if (key.startsWith('c:') && !seen.has(key.slice(2))) gone.add(key.slice(2));
      }
      for (const id of this._dirtyThreads) {
        if (gone.has(id)) continue;
        const rec = this._source.thread(id);
        if (rec === undefined) continue;
        if (rec === null) {
          if (this._written.has(`t:${id}`)) {
            threadsGone.add(id);
            sigs.set(`t:${id}`, null);
          }
          continue;
        }
        const sig = JSON.stringify(rec);
        if (this._written.get(`t:${id}`) !== sig) {
          threads.push(rec);
          sigs.set(`t:${id}`, sig);
        }
      }
      this._dirtyThreads.clear();
    } catch (err) {
      this._fail('could not gather what to write', err);
      return null;
    }
    for (const id of gone) {
      sigs.set(`c:${id}`, null);
      sigs.set(`t:${id}`, null);
    }
    if (!conversations.length && !threads.length && !gone.size && !threadsGone.size) return null;
    return { conversations, threads, gone, threadsGone, sigs };
  }

  /** @param {{conversations: ConversationRecord[], threads: ThreadRecord[], gone: Set<string>, threadsGone: Set<string>, sigs: Map<string, string|null>}} work */
  async _write(work) {
    const db = await this._open();
    if (!db || this.disabled) return;
    await new Promise((resolve) => {
      try {
        const tx = db.transaction([CONVERSATIONS, THREADS], 'readwrite');
        const convs = tx.objectStore(CONVERSATIONS);
        const threads = tx.objectStore(THREADS);
        for (const rec of work.conversations) convs.put(rec);
        for (const rec of work.threads) threads.put(rec);
        for (const id of work.gone) {
          convs.delete(id);
          threads.delete(id);
        }
        for (const id of work.threadsGone) threads.delete(id);
        tx.oncomplete = () => {
          for (const [key, sig] of work.sigs) {
            if (sig === null) this._written.delete(key);
            else this._written.set(key, sig);
          }
          resolve(undefined);
        };
        tx.onabort = () => {
          this._fail('a write was aborted', tx.error);
          resolve(undefined);
        };
      } catch (err) {
        this._fail('a write failed', err);
        resolve(undefined);
      }
    });
  }

  // ------------------------------------------------------------------ opening

  /** @returns {Promise<IDBDatabase|null>} */
  _open() {
    if (this.disabled) return Promise.resolve(null);
    if (this._opening) return this._opening;
    this._opening = new Promise((resolve) => {
      let settled = false;
      const timer = new Timer(this._clock);
      /** @param {IDBDatabase|null} db @param {any} [err] */
      const settle = (db, err) => {
        if (settled) {
          // Answered after we gave up: do not keep it open.
          try {
            db?.close();
          } catch {
            /* ignore */
          }
          return;
        }
        settled = true;
        timer.cancel();
        if (!db || this.disabled) {
          if (db) db.close();
          this._fail('it cannot be opened', err);
          resolve(null);
          return;
        }
        this._db = db;
        // Another tab upgrades or deletes the database (a sign-out there): let it.
        db.onversionchange = () => {
          this._fail('it is being replaced or deleted elsewhere');
        };
        this._register();
        resolve(db);
      };
      timer.start(this._openTimeout, () => settle(null, new Error(`no answer in ${this._openTimeout} ms`)));
      try {
        const req = this._idb.open(this.name, CACHE_SCHEMA_VERSION);
        req.onupgradeneeded = (/** @type {any} */ e) => {
          try {
            upgrade(req.result, e.oldVersion ?? 0);
          } catch (err) {
            this._log.warn?.('chat sdk: local cache: the upgrade failed', err);
            try {
              req.transaction?.abort();
            } catch {
              /* ignore */
            }
          }
        };
        req.onsuccess = () => settle(req.result);
        req.onerror = () => settle(null, req.error);
        req.onblocked = () => settle(null, new Error('blocked by another tab'));
      } catch (err) {
        settle(null, err);
      }
    });
    return this._opening;
  }

  /** @param {string} why @param {any} [err] */
  _fail(why, err) {
    if (!this.disabled) this._log.warn?.(`chat sdk: local cache off (${why})`, err ?? '');
    this.disabled = true;
    this._timer.cancel();
    const db = this._db;
    this._db = null;
    try {
      db?.close();
    } catch {
      /* ignore */
    }
  }

  // ------------------------------------------------------------- lifecycle

  /** Write what is pending, then close the database (the data stays). */
  async close() {
    await this.flush();
    this.disabled = true;
    this._timer.cancel();
    const db = this._db;
    this._db = null;
    try {
      db?.close();
    } catch {
      /* ignore */
    }
  }

  /** Forget what is pending and delete this user's database. */
  async destroy() {
    // Nothing more is written; a write already under way finishes first (IndexedDB deletes a
    // database once its connections are closed), and an open still under way closes itself.
    this.disabled = true;
    this._timer.cancel();
    const db = this._db;
    this._db = null;
    try {
      db?.close();
    } catch {
      /* ignore */
    }
    await ChatCache.remove({ indexedDB: this._idb, storage: this._storage, userId: this.userId });
  }

  _register() {
    const users = readRegistry(this._storage);
    if (!users.includes(this.userId)) writeRegistry(this._storage, [...users, this.userId]);
  }

  /**
   * Delete one user's cache (never fails; resolves once deleted, or once another tab is seen
   * to block it: the deletion then happens when that tab lets go).
   * @param {{indexedDB: IDBFactory|any, storage?: Storage|null, userId: string}} opts
   */
  static async remove({ indexedDB, storage = null, userId }) {
    writeRegistry(
      storage,
      readRegistry(storage).filter((u) => u !== userId),
    );
    if (indexedDB) await deleteDatabase(indexedDB, cacheDatabaseName(userId));
  }

  /**
   * Delete every user's cache but `keep`'s (a different user signed in on this browser).
   * @param {{indexedDB: IDBFactory|any, storage?: Storage|null, keep: string|null}} opts
   */
  static async removeOthers({ indexedDB, storage = null, keep }) {
    if (!indexedDB) return;
    const users = new Set(readRegistry(storage));
    try {
      if (typeof indexedDB.databases === 'function') {
        for (const info of (await indexedDB.databases()) ?? []) if (info?.name?.startsWith(PREFIX)) users.add(info.name.slice(PREFIX.length));
      }
    } catch {
      /* not supported: the registry is all we know */
    }
    users.delete(/** @type {string} */ (keep));
    await Promise.all([...users].map((userId) => ChatCache.remove({ indexedDB, storage, userId })));
  }
}

/** @param {IDBFactory|any} idb @param {string} name @returns {Promise<void>} */
function deleteDatabase(idb, name) {
  return new Promise((resolve) => {
    try {
      const req = idb.deleteDatabase(name);
      req.onsuccess = () => resolve(undefined);
      req.onerror = () => resolve(undefined);
      req.onblocked = () => resolve(undefined);
    } catch {
      resolve(undefined);
    }
  });
}

/** @param {Storage|null} storage @returns {string[]} */
function readRegistry(storage) {
  try {
    const list = JSON.parse(storage?.getItem(REGISTRY_KEY) || '[]');
    return Array.isArray(list) ? list.filter((u) => typeof u === 'string') : [];
  } catch {
    return [];
  }
}

/** @param {Storage|null} storage @param {string[]} users */
function writeRegistry(storage, users) {
  try {
    if (users.length) storage?.setItem(REGISTRY_KEY, JSON.stringify(users));
    else storage?.removeItem(REGISTRY_KEY);
  } catch {
    /* storage full or off: databases() (where supported) still finds them */
  }
}
