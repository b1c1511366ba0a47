// A small in-memory IndexedDB for the SDK's unit tests: just the surface web/sdk/cache.js uses
// (open with versions and onupgradeneeded, deleteDatabase, databases(), object stores with a
// keyPath, readonly/readwrite transactions with get/getAll/put/delete/clear, versionchange and
// blocked), with its asynchrony (every step a macrotask, transactions commit when no request is
// left, a request on a finished transaction throws) and failures to inject:
//
//   idb.failures.throwOnOpen = new DOMException('no', 'SecurityError')  // open() throws
//   idb.failures.open = 'UnknownError'      // the open request fails
//   idb.failures.blockOpen = true           // the open request is blocked, never succeeds
//   idb.failures.hangOpen = true            // the open request never answers at all
//   idb.failures.read = 'UnknownError'      // every get/getAll fails
//   idb.failures.commit = 'QuotaExceededError'  // every readwrite transaction aborts on commit
//
// Not modelled: indexes, key ranges, cursors, durability options.

const defer = (/** @type {() => void} */ fn) => setImmediate(fn);

function domError(name, message = name) {
  return new DOMException(message, name);
}

class FakeRequest {
  constructor(source = null, transaction = null) {
    this.result = undefined;
    this.error = null;
    this.source = source;
    this.transaction = transaction;
    this.onsuccess = null;
    this.onerror = null;
    this.onblocked = null;
    this.onupgradeneeded = null;
  }
  _succeed(result) {
    this.result = result;
    this.onsuccess?.({ type: 'success', target: this });
  }
  _fail(error) {
    this.error = error;
    let prevented = false;
    this.onerror?.({ type: 'error', target: this, preventDefault: () => (prevented = true) });
    return prevented;
  }
}

class FakeObjectStore {
  constructor(tx, name) {
    this.transaction = tx;
    this.name = name;
  }
  get _schema() {
    return this.transaction._staging.get(this.name);
  }
  get keyPath() {
    return this._schema.keyPath;
  }
  put(value) {
    this.transaction._writable();
    const clone = structuredClone(value);
    const key = clone?.[this.keyPath];
    if (key === undefined) throw domError('DataError', 'no key at the keyPath');
    return this.transaction._request(this, (s) => {
      s.data.set(key, clone);
      return key;
    });
  }
  get(key) {
    return this.transaction._request(this, (s) => structuredClone(s.data.get(key)), true);
  }
  getAll() {
    return this.transaction._request(this, (s) => [...s.data.values()].map((v) => structuredClone(v)), true);
  }
  delete(key) {
    this.transaction._writable();
    return this.transaction._request(this, (s) => {
      s.data.delete(key);
      return undefined;
    });
  }
  clear() {
    this.transaction._writable();
    return this.transaction._request(this, (s) => {
      s.data.clear();
      return undefined;
    });
  }
}

class FakeTransaction {
  constructor(db, names, mode) {
    this.db = db;
    this.mode = mode;
    this.objectStoreNames = names;
    this.error = null;
    this.oncomplete = null;
    this.onerror = null;
    this.onabort = null;
    this._pending = 0;
    this._finished = false;
    this._started = false;
    /** Requests made before the transaction could start. @type {Array<() => void>} */
    this._queued = [];
    /** @type {Map<string, {keyPath: string, data: Map<any, any>}>} the stores in scope: applied on commit, dropped on abort */
    this._staging = new Map(names.map((n) => [n, { keyPath: db._rec.stores.get(n).keyPath, data: new Map() }]));
    db._factory.log.push({ db: db.name, mode, stores: [...names] });
    // As in IndexedDB, transactions of one database whose scopes overlap run one after the
    // other when either writes, in the order they were created (across connections).
    db._rec.transactions.push(this);
    defer(() => db._rec.schedule());
  }
  /** Waits for an earlier transaction that overlaps and writes (or one that overlaps when we write). */
  _blockedBy(other) {
    if (other === this || other._finished) return false;
    if (this.mode === 'readonly' && other.mode === 'readonly') return false;
    return other.objectStoreNames.some((n) => this.objectStoreNames.includes(n));
  }
  _start() {
    this._started = true;
    for (const [n, s] of this._staging) s.data = new Map(this.db._rec.stores.get(n).data);
    const queued = this._queued.splice(0);
    for (const fn of queued) defer(fn);
    if (!queued.length) defer(() => this._maybeCommit());
  }
  objectStore(name) {
    if (this._finished) throw domError('InvalidStateError', 'the transaction has finished');
    if (!this._staging.has(name)) throw domError('NotFoundError', `${name} is not in this transaction`);
    return new FakeObjectStore(this, name);
  }
  _writable() {
    if (this.mode === 'readonly') throw domError('ReadOnlyError');
  }
  _request(store, op, read = false) {
    if (this._finished) throw domError('TransactionInactiveError', 'the transaction has finished');
    const req = new FakeRequest(store, this);
    this._pending++;
    const run = () => {
      if (this._finished) return;
      const failure = read ? this.db._factory.failures.read : null;
      if (failure) {
        const prevented = req._fail(domError(failure));
        this._pending--;
        if (!prevented) this.abort(req.error);
        else this._settled();
        return;
      }
      let result;
      try {
        result = op(this._staging.get(store.name));
      } catch (err) {
        req._fail(err);
        this._pending--;
        this.abort(err);
        return;
      }
      req._succeed(result);
      this._pending--;
      this._settled();
    };
    if (this._started) defer(run);
    else this._queued.push(run);
    return req;
  }
  _settled() {
    if (this._pending === 0) defer(() => this._maybeCommit());
  }
  _maybeCommit() {
    if (this._finished || !this._started || this._pending > 0) return;
    const failure = this.mode === 'readwrite' ? this.db._factory.failures.commit : null;
    if (failure) {
      this.abort(domError(failure));
      return;
    }
    this._finished = true;
    if (this.mode !== 'readonly') for (const [n, s] of this._staging) this.db._rec.stores.get(n).data = s.data;
    this.db._factory.committed.push({ db: this.db.name, mode: this.mode, stores: [...this.objectStoreNames] });
    this.oncomplete?.({ type: 'complete', target: this });
    this.db._txDone(this);
  }
  abort(error = null) {
    if (this._finished) return;
    this._finished = true;
    this.error = error ?? domError('AbortError');
    this.onerror?.({ type: 'error', target: this });
    this.onabort?.({ type: 'abort', target: this });
    this.db._txDone(this);
  }
}

class FakeDatabase {
  constructor(factory, name, rec) {
    this._factory = factory;
    this._rec = rec;
    this.name = name;
    this.closed = false;
    this.onversionchange = null;
    this.onclose = null;
    this._upgrading = false;
    this._open = new Set();
  }
  get version() {
    return this._rec.version;
  }
  get objectStoreNames() {
    const names = [...this._rec.stores.keys()].sort();
    return Object.assign(names, { contains: (/** @type {string} */ n) => names.includes(n) });
  }
  createObjectStore(name, { keyPath } = {}) {
    if (!this._upgrading) throw domError('InvalidStateError', 'not in an upgrade');
    if (this._rec.stores.has(name)) throw domError('ConstraintError', `${name} exists`);
    this._rec.stores.set(name, { keyPath, data: new Map() });
    return { name, keyPath };
  }
  deleteObjectStore(name) {
    if (!this._upgrading) throw domError('InvalidStateError', 'not in an upgrade');
    this._rec.stores.delete(name);
  }
  transaction(names, mode = 'readonly') {
    if (this.closed) throw domError('InvalidStateError', 'the connection is closed');
    const list = Array.isArray(names) ? names : [names];
    for (const n of list) if (!this._rec.stores.has(n)) throw domError('NotFoundError', `no store ${n}`);
    const tx = new FakeTransaction(this, list, mode);
    this._open.add(tx);
    return tx;
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    this._closeIfIdle();
  }
  _txDone(tx) {
    this._open.delete(tx);
    const list = this._rec.transactions;
    list.splice(list.indexOf(tx), 1);
    defer(() => this._rec.schedule());
    this._closeIfIdle();
  }
  _closeIfIdle() {
    if (this.closed && this._open.size === 0 && this._rec.connections.delete(this)) this._factory._connectionClosed(this.name);
  }
}

function newRecord() {
  const rec = {
    version: 0,
    /** @type {Map<string, {keyPath: string, data: Map<any, any>}>} */
    stores: new Map(),
    /** @type {Set<FakeDatabase>} */
    connections: new Set(),
    /** Transactions not finished yet, in the order they were created. @type {FakeTransaction[]} */
    transactions: [],
    /** Start every transaction that no earlier one blocks. */
    schedule() {
      rec.transactions.forEach((tx, i) => {
        if (!tx._started && !rec.transactions.slice(0, i).some((o) => tx._blockedBy(o))) tx._start();
      });
    },
  };
  return rec;
}

export class FakeIndexedDB {
  constructor() {
    /** @type {Map<string, ReturnType<typeof newRecord>>} */
    this.dbs = new Map();
    /** Every transaction started: {db, mode, stores}. */
    this.log = [];
    /** Every transaction committed. */
    this.committed = [];
    this.failures = { throwOnOpen: null, open: null, blockOpen: false, hangOpen: false, read: null, commit: null };
    /** @type {Map<string, Array<() => void>>} deletions waiting for connections to close */
    this._waiting = new Map();
  }

  open(name, version) {
    if (this.failures.throwOnOpen) throw this.failures.throwOnOpen;
    if (version !== undefined && !(version >= 1)) throw new TypeError('bad version');
    const req = new FakeRequest();
    defer(() => {
      if (this.failures.hangOpen) return;
      if (this.failures.blockOpen) {
        req.onblocked?.({ type: 'blocked', target: req });
        return;
      }
      if (this.failures.open) {
        req._fail(domError(this.failures.open));
        return;
      }
      let rec = this.dbs.get(name);
      if (!rec) {
        rec = newRecord();
        this.dbs.set(name, rec);
      }
      const wanted = version ?? Math.max(1, rec.version);
      if (wanted < rec.version) {
        req._fail(domError('VersionError'));
        return;
      }
      const db = new FakeDatabase(this, name, rec);
      if (wanted > rec.version) {
        for (const other of [...rec.connections]) other.onversionchange?.({ type: 'versionchange', oldVersion: rec.version, newVersion: wanted });
        if (rec.connections.size) {
          req.onblocked?.({ type: 'blocked', target: req });
          return;
        }
        const oldVersion = rec.version;
        rec.version = wanted;
        req.result = db;
        req.transaction = { mode: 'versionchange', abort: () => (rec.version = oldVersion) };
        db._upgrading = true;
        try {
          req.onupgradeneeded?.({ type: 'upgradeneeded', target: req, oldVersion, newVersion: wanted });
        } finally {
          db._upgrading = false;
        }
        if (rec.version !== wanted) {
          req._fail(domError('AbortError'));
          return;
        }
      }
      rec.connections.add(db);
      req._succeed(db);
    });
    return req;
  }

  deleteDatabase(name) {
    const req = new FakeRequest();
    defer(() => {
      const rec = this.dbs.get(name);
      const finish = () => {
        this.dbs.delete(name);
        req._succeed(undefined);
      };
      if (!rec) return finish();
      for (const c of [...rec.connections]) c.onversionchange?.({ type: 'versionchange', oldVersion: rec.version, newVersion: null });
      if (rec.connections.size === 0) return finish();
      req.onblocked?.({ type: 'blocked', target: req });
      const list = this._waiting.get(name) ?? [];
      list.push(finish);
      this._waiting.set(name, list);
    });
    return req;
  }

  databases() {
    return Promise.resolve([...this.dbs].map(([name, rec]) => ({ name, version: rec.version })));
  }

  _connectionClosed(name) {
    const rec = this.dbs.get(name);
    if (rec && rec.connections.size) return;
    const waiting = this._waiting.get(name);
    if (!waiting) return;
    this._waiting.delete(name);
    for (const fn of waiting) defer(fn);
  }

  // --- for assertions ---

  /** The records of one store, by key (empty when the database or store does not exist). */
  rows(dbName, store) {
    const data = this.dbs.get(dbName)?.stores.get(store)?.data;
    return data ? [...data.values()] : [];
  }

  /** Readwrite transactions committed so far. */
  get writes() {
    return this.committed.filter((t) => t.mode === 'readwrite').length;
  }
}
