// The end-to-end encryption key store (issue 13): this device's identity key pair and every
// conversation key it holds, in IndexedDB, one database per user (`chat.keys.<userId>`).
//
// CryptoKey objects are stored as they are: IndexedDB's structured clone keeps a CryptoKey's
// `extractable` flag, so the device's private key stays non-extractable on disk and after a
// reload (usable by this origin's code, never readable as bytes). Conversation keys are stored
// extractable, because they must be wrapped for new member devices and put into key backups.
//
// Unlike the message cache (web/sdk/cache.js) this store is not an optimisation: losing it
// loses the keys (see docs/security.md, key backup). Its failures are therefore reported to the
// caller, not swallowed.

const PREFIX = 'chat.keys.';
/** Version of the key store's schema. */
export const KEYSTORE_SCHEMA_VERSION = 1;
const DEVICE = 'device';
const CONVERSATION_KEYS = 'conversationKeys';
/** The one record of the device store. */
const SELF = 'self';

/** @param {string} userId */
export function keyStoreDatabaseName(userId) {
  return PREFIX + userId;
}

/**
 * This device's identity.
 * @typedef {object} DeviceRecord
 * @property {string} id             the device id the server gave it
 * @property {CryptoKey} privateKey  ECDH P-256, not extractable
 * @property {CryptoKey} publicKey
 * @property {string} publicRaw      base64url of the 65-byte uncompressed point
 *
 * One conversation key.
 * @typedef {object} ConversationKeyRecord
 * @property {string} conversationId
 * @property {number} version
 * @property {CryptoKey} key          AES-GCM 256
 *
 * @typedef {object} KeyStore
 * @property {() => Promise<DeviceRecord|null>} getDevice
 * @property {(device: DeviceRecord) => Promise<void>} putDevice
 * @property {(conversationId: string, version: number) => Promise<CryptoKey|null>} getConversationKey
 * @property {(conversationId: string, version: number, key: CryptoKey) => Promise<void>} putConversationKey
 * @property {() => Promise<ConversationKeyRecord[]>} allConversationKeys  ordered by conversation, then version
 * @property {() => Promise<void>} clear  removes the device and every conversation key
 * @property {() => void} close
 */

/** @param {IDBRequest|IDBOpenDBRequest} req @returns {Promise<any>} */
function settle(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {string} conversationId @param {number} version */
const ref = (conversationId, version) => `${conversationId}:${version}`;

/** @param {unknown} conversationId @param {unknown} version */
function checkRef(conversationId, version) {
  if (typeof conversationId !== 'string' || conversationId === '') throw new TypeError('conversationId must be a non-empty string');
  if (!Number.isSafeInteger(version) || /** @type {number} */ (version) < 1) throw new TypeError('key version must be an integer >= 1');
}

/**
 * Open (creating it the first time) the key store of one user on this browser.
 * @param {object} opts
 * @param {IDBFactory|any} opts.indexedDB
 * @param {string} opts.userId
 * @returns {Promise<KeyStore>}
 */
export async function openKeyStore({ indexedDB, userId }) {
  if (!indexedDB) throw new Error('IndexedDB is not available: end-to-end encryption keys cannot be kept');
  if (typeof userId !== 'string' || userId === '') throw new TypeError('userId must be a non-empty string');
  const req = indexedDB.open(keyStoreDatabaseName(userId), KEYSTORE_SCHEMA_VERSION);
  req.onupgradeneeded = (/** @type {any} */ ev) => {
    const db = req.result;
    if (ev.oldVersion < 1) {
      if (!db.objectStoreNames.contains(DEVICE)) db.createObjectStore(DEVICE, { keyPath: 'slot' });
      if (!db.objectStoreNames.contains(CONVERSATION_KEYS)) db.createObjectStore(CONVERSATION_KEYS, { keyPath: 'ref' });
    }
  };
  const opened = new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('the key store is blocked by another tab holding an older version open'));
  });
  /** @type {IDBDatabase} */
  const db = await opened;
  // Another tab upgrading or deleting the database: let it.
  db.onversionchange = () => db.close();

  /**
   * One transaction; resolves with `op`'s result once the transaction has committed.
   * @param {string[]} stores
   * @param {IDBTransactionMode} mode
   * @param {(tx: IDBTransaction) => Promise<any>|any} op
   */
  function run(stores, mode, op) {
    const tx = db.transaction(stores, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve(undefined);
      tx.onabort = () => reject(tx.error ?? new Error('the key store transaction was aborted'));
    });
    const result = Promise.resolve(op(tx));
    return Promise.all([result, done]).then(([r]) => r);
  }

  return {
    async getDevice() {
      const row = await run([DEVICE], 'readonly', (tx) => settle(tx.objectStore(DEVICE).get(SELF)));
      if (!row) return null;
      const { id, privateKey, publicKey, publicRaw } = row;
      return { id, privateKey, publicKey, publicRaw };
    },
    async putDevice({ id, privateKey, publicKey, publicRaw }) {
      if (typeof id !== 'string' || id === '') throw new TypeError('device id must be a non-empty string');
      if (!privateKey || !publicKey || typeof publicRaw !== 'string') throw new TypeError('a device needs privateKey, publicKey and publicRaw');
      await run([DEVICE], 'readwrite', (tx) => settle(tx.objectStore(DEVICE).put({ slot: SELF, id, privateKey, publicKey, publicRaw })));
    },
    async getConversationKey(conversationId, version) {
      checkRef(conversationId, version);
      const row = await run([CONVERSATION_KEYS], 'readonly', (tx) => settle(tx.objectStore(CONVERSATION_KEYS).get(ref(conversationId, version))));
      return row?.key ?? null;
    },
    async putConversationKey(conversationId, version, key) {
      checkRef(conversationId, version);
      if (!key) throw new TypeError('key is required');
      await run([CONVERSATION_KEYS], 'readwrite', (tx) =>
        settle(tx.objectStore(CONVERSATION_KEYS).put({ ref: ref(conversationId, version), conversationId, version, key })),
      );
    },
    async allConversationKeys() {
      const rows = await run([CONVERSATION_KEYS], 'readonly', (tx) => settle(tx.objectStore(CONVERSATION_KEYS).getAll()));
      return (rows ?? [])
        .map((/** @type {any} */ r) => ({ conversationId: r.conversationId, version: r.version, key: r.key }))
        .sort((/** @type {ConversationKeyRecord} */ a, /** @type {ConversationKeyRecord} */ b) =>
          a.conversationId < b.conversationId ? -1 : a.conversationId > b.conversationId ? 1 : a.version - b.version,
        );
    },
    async clear() {
      await run([DEVICE, CONVERSATION_KEYS], 'readwrite', (tx) =>
        Promise.all([settle(tx.objectStore(DEVICE).clear()), settle(tx.objectStore(CONVERSATION_KEYS).clear())]),
      );
    },
    close() {
      db.close();
    },
  };
}
