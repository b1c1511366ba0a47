// End-to-end encryption (issue 13): the client's cryptography, every primitive from WebCrypto
// (`globalThis.crypto.subtle`, the same API in browsers and in Node 20). Nothing here is
// hand-written cryptography; this module only chooses algorithms, parameters and formats.
//
//   device identity   ECDH P-256 key pair; the private key is non-extractable
//   fingerprint       SHA-256 of the 65-byte uncompressed public point, hex in 16 groups of 4
//   conversation key  AES-256-GCM, one per (conversation, version), made by a client
//   key wrap          ECDH -> 256 bits -> HKDF-SHA-256(salt "<conv>:<version>",
//                     info "chat e2ee key wrap v1") -> AES-256-GCM over the raw 32-byte key,
//                     additional data "<conv>:<version>"; iv || ciphertext || tag, base64url
//   message envelope  {"v":1,"kid":<version>,"iv":"<12 bytes>","ct":"<ciphertext||tag>"},
//                     AES-256-GCM, additional data "<conv>:<version>"
//   key backup        PBKDF2-SHA-256 (>= 310,000 iterations, 16-byte salt) -> AES-256-GCM,
//                     additional data "chat key backup v1"
//
// Binary values travel as base64url without padding. docs/security.md is the threat model.

/** WebCrypto's SubtleCrypto; throws outside a secure context. */
export const subtle = () => {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('WebCrypto is not available (a secure context is required)');
  return s;
};

/** Envelope format version. */
export const ENVELOPE_VERSION = 1;
/** Key backup format version. */
export const BACKUP_VERSION = 1;
/** The lowest PBKDF2 iteration count accepted, when making and when opening a backup. */
export const MIN_BACKUP_ITERATIONS = 310000;
/** The default PBKDF2 iteration count of a new backup. */
export const DEFAULT_BACKUP_ITERATIONS = 600000;
/** The highest iteration count a backup may ask for (a hostile backup must not hang the client). */
export const MAX_BACKUP_ITERATIONS = 10000000;

const WRAP_INFO = 'chat e2ee key wrap v1';
const BACKUP_AAD = 'chat key backup v1';
const BACKUP_KDF = 'PBKDF2-SHA256';
/** Bytes of an AES-GCM IV, and of an AES-256 key (here and in `attachments.js`). */
export const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;
const PUBLIC_BYTES = 65;
const SALT_BYTES = 16;
const ECDH = { name: 'ECDH', namedCurve: 'P-256' };
export const AES = { name: 'AES-GCM', length: 256 };

/**
 * A decryption that failed. `code` says why:
 * - `'malformed'`: not a well-formed envelope, wrapped key or backup (nothing was decrypted);
 * - `'tampered'`: a message failed authentication (altered, of another conversation or key
 *   version, or decrypted with the wrong key);
 * - `'bad_key'`: a wrapped conversation key failed authentication (not wrapped for this device,
 *   this sender, this conversation or this version, or altered);
 * - `'bad_passphrase'`: a key backup failed authentication (wrong passphrase, or altered).
 * The text of a message that failed is never returned.
 */
export class DecryptError extends Error {
  /**
   * @param {'malformed'|'tampered'|'bad_key'|'bad_passphrase'} code
   * @param {string} [message]
   */
  constructor(code, message = code) {
    super(message);
    this.name = 'DecryptError';
    this.code = code;
  }
}

// ------------------------------------------------------------------ encodings

const encoder = new TextEncoder();
const utf8 = (/** @type {string} */ s) => encoder.encode(s);

/**
 * base64url without padding (RFC 4648 section 5).
 * @param {ArrayBuffer|ArrayBufferView} bytes
 * @returns {string}
 */
export function toBase64Url(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  let bin = '';
  for (let i = 0; i < u8.length; i += 0x8000) bin += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * Decode base64url without padding, strictly: only the base64url alphabet, no padding, no
 * whitespace, and the canonical encoding only (unused trailing bits zero). Throws a TypeError
 * otherwise.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function fromBase64Url(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new TypeError('not base64url (unpadded)');
  }
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (toBase64Url(out) !== text) throw new TypeError('not canonical base64url');
  return out;
}

/** @param {ArrayBuffer|Uint8Array} bytes */
const hex = (bytes) => [...new Uint8Array(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');

/** @param {unknown} v */
const isVersion = (v) => Number.isSafeInteger(v) && /** @type {number} */ (v) >= 1;

/** @param {unknown} version */
function checkVersion(version) {
  if (!isVersion(version)) throw new TypeError(`key version must be an integer >= 1, not ${String(version)}`);
}

/** @param {unknown} id */
function checkConversationId(id) {
  if (typeof id !== 'string' || id === '') throw new TypeError('conversationId must be a non-empty string');
}

/** The additional data binding a wrapped key or a message to its conversation and key version. */
const boundTo = (/** @type {string} */ conversationId, /** @type {number} */ version) => utf8(`${conversationId}:${version}`);

const randomBytes = (/** @type {number} */ n) => globalThis.crypto.getRandomValues(new Uint8Array(n));

// ------------------------------------------------------------ device identity

/**
 * Make this device's identity key pair: ECDH on P-256. The private key is not extractable (it
 * can be used, stored in IndexedDB, but never read out); the public key is published as
 * `publicRaw`.
 * @returns {Promise<{privateKey: CryptoKey, publicKey: CryptoKey, publicRaw: string}>}
 *   `publicRaw`: base64url of the 65-byte uncompressed point (0x04 || X || Y)
 */
export async function generateDeviceKeys() {
  const pair = /** @type {CryptoKeyPair} */ (await subtle().generateKey(ECDH, false, ['deriveBits']));
  const raw = await subtle().exportKey('raw', pair.publicKey);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, publicRaw: toBase64Url(raw) };
}

/**
 * The 65 bytes of a published public key, checked for length and the uncompressed prefix.
 * @param {string} publicRaw
 * @returns {Uint8Array}
 */
function publicBytes(publicRaw) {
  let bytes;
  try {
    bytes = fromBase64Url(publicRaw);
  } catch {
    throw new TypeError('device public key: not base64url');
  }
  if (bytes.length !== PUBLIC_BYTES) throw new TypeError(`device public key: ${bytes.length} bytes, expected ${PUBLIC_BYTES} (an uncompressed P-256 point)`);
  if (bytes[0] !== 0x04) throw new TypeError('device public key: not an uncompressed point (first byte is not 0x04)');
  return bytes;
}

/**
 * Import another device's published public key (base64url of the 65-byte uncompressed P-256
 * point). Throws a TypeError when it is not 65 bytes, does not start with 0x04, or is not a
 * point on the curve.
 * @param {string} publicRaw
 * @returns {Promise<CryptoKey>}
 */
export async function importPublicKey(publicRaw) {
  const bytes = publicBytes(publicRaw);
  try {
    return await subtle().importKey('raw', bytes, ECDH, true, []);
  } catch (err) {
    throw new TypeError(`device public key: not a P-256 point (${/** @type {Error} */ (err).message})`);
  }
}

/**
 * The fingerprint of a device public key: SHA-256 of its 65 raw bytes, lower-case hex, as 16
 * groups of 4 digits separated by single spaces. The server computes the same.
 * @param {string} publicRaw
 * @returns {Promise<string>}
 */
export async function fingerprint(publicRaw) {
  const digest = await subtle().digest('SHA-256', publicBytes(publicRaw));
  return hex(digest).match(/.{4}/g).join(' ');
}

/**
 * A safety number for two devices, the same whichever side computes it: their fingerprints
 * (64 hex digits, without spaces) sorted, concatenated, hashed with SHA-256; the 256-bit digest
 * taken modulo 10^60 and shown as 12 groups of 5 decimal digits separated by single spaces.
 * Two people reading out the same number have each other's true keys.
 * @param {string} publicRawA
 * @param {string} publicRawB
 * @returns {Promise<string>}
 */
export async function safetyNumber(publicRawA, publicRawB) {
  const [a, b] = [await fingerprint(publicRawA), await fingerprint(publicRawB)].map((f) => f.replace(/ /g, '')).sort();
  const digest = await subtle().digest('SHA-256', utf8(a + b));
  const digits = (BigInt('0x' + hex(digest)) % 10n ** 60n).toString().padStart(60, '0');
  return digits.match(/.{5}/g).join(' ');
}

// ----------------------------------------------------------- conversation keys

/**
 * A new conversation key: AES-256-GCM, extractable (it must be wrapped for every member device
 * and may go into a key backup).
 * @returns {Promise<CryptoKey>}
 */
export async function generateConversationKey() {
  return /** @type {CryptoKey} */ (await subtle().generateKey(AES, true, ['encrypt', 'decrypt']));
}

/**
 * A conversation key's 32 raw bytes as base64url (for a key backup).
 * @param {CryptoKey} key
 * @returns {Promise<string>}
 */
export async function exportConversationKey(key) {
  return toBase64Url(await subtle().exportKey('raw', key));
}

/**
 * A conversation key from its base64url raw bytes (as `exportConversationKey` gives them).
 * Throws a TypeError unless they are 32 bytes.
 * @param {string} raw
 * @returns {Promise<CryptoKey>}
 */
export async function importConversationKey(raw) {
  const bytes = fromBase64Url(raw);
  if (bytes.length !== KEY_BYTES) throw new TypeError(`conversation key: ${bytes.length} bytes, expected ${KEY_BYTES}`);
  return subtle().importKey('raw', bytes, AES, true, ['encrypt', 'decrypt']);
}

/**
 * The AES-GCM key that wraps conversation keys between two devices for one (conversation,
 * version): ECDH shared secret -> HKDF-SHA-256. Not extractable.
 * @param {CryptoKey} privateKey
 * @param {string} publicRaw
 * @param {string} conversationId
 * @param {number} version
 * @param {'encrypt'|'decrypt'} usage
 */
async function wrappingKey(privateKey, publicRaw, conversationId, version, usage) {
  const publicKey = await importPublicKey(publicRaw);
  const shared = await subtle().deriveBits({ name: 'ECDH', public: publicKey }, privateKey, 256);
  const hkdf = await subtle().importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  return subtle().deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: boundTo(conversationId, version), info: utf8(WRAP_INFO) },
    hkdf,
    AES,
    false,
    [usage],
  );
}

/**
 * Wrap a conversation key for one member device: ECDH(fromPrivateKey, toPublic) -> 256 bits ->
 * HKDF-SHA-256 (salt UTF-8 `<conversationId>:<version>`, info `chat e2ee key wrap v1`) ->
 * AES-256-GCM, which encrypts the key's 32 raw bytes under a random 12-byte IV with additional
 * data `<conversationId>:<version>`.
 * @param {object} opts
 * @param {CryptoKey} opts.conversationKey  extractable AES-GCM key
 * @param {string} opts.conversationId
 * @param {number} opts.version             the key version (integer >= 1)
 * @param {CryptoKey} opts.fromPrivateKey   the wrapping device's private key
 * @param {string} opts.toPublicRaw         the receiving device's published public key
 * @returns {Promise<string>} base64url of iv || ciphertext || tag (60 bytes)
 */
export async function wrapKey({ conversationKey, conversationId, version, fromPrivateKey, toPublicRaw }) {
  checkConversationId(conversationId);
  checkVersion(version);
  const kek = await wrappingKey(fromPrivateKey, toPublicRaw, conversationId, version, 'encrypt');
  const raw = new Uint8Array(await subtle().exportKey('raw', conversationKey));
  if (raw.length !== KEY_BYTES) throw new TypeError('conversationKey must be an AES-256 key');
  const iv = randomBytes(IV_BYTES);
  const ct = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: boundTo(conversationId, version) }, kek, raw));
  raw.fill(0);
  const out = new Uint8Array(IV_BYTES + ct.length);
  out.set(iv);
  out.set(ct, IV_BYTES);
  return toBase64Url(out);
}

/**
 * Unwrap a conversation key wrapped for this device by `wrapKey`.
 * @param {object} opts
 * @param {string} opts.wrapped            as `wrapKey` returned it
 * @param {string} opts.conversationId
 * @param {number} opts.version
 * @param {CryptoKey} opts.toPrivateKey    this device's private key
 * @param {string} opts.fromPublicRaw      the wrapping device's published public key
 * @returns {Promise<CryptoKey>} the conversation key (AES-GCM, extractable)
 * @throws {DecryptError} `'bad_key'` when authentication fails; `'malformed'` when `wrapped` is
 *   not base64url of 60 bytes
 */
export async function unwrapKey({ wrapped, conversationId, version, toPrivateKey, fromPublicRaw }) {
  checkConversationId(conversationId);
  checkVersion(version);
  let bytes;
  try {
    bytes = fromBase64Url(wrapped);
  } catch {
    throw new DecryptError('malformed', 'wrapped key: not base64url');
  }
  if (bytes.length !== IV_BYTES + KEY_BYTES + TAG_BYTES) throw new DecryptError('malformed', `wrapped key: ${bytes.length} bytes, expected ${IV_BYTES + KEY_BYTES + TAG_BYTES}`);
  const kek = await wrappingKey(toPrivateKey, fromPublicRaw, conversationId, version, 'decrypt');
  let raw;
  try {
    raw = new Uint8Array(
      await subtle().decrypt({ name: 'AES-GCM', iv: bytes.subarray(0, IV_BYTES), additionalData: boundTo(conversationId, version) }, kek, bytes.subarray(IV_BYTES)),
    );
  } catch {
    throw new DecryptError('bad_key', 'the wrapped key failed authentication');
  }
  try {
    return await subtle().importKey('raw', raw, AES, true, ['encrypt', 'decrypt']);
  } finally {
    raw.fill(0);
  }
}

// ------------------------------------------------------------------- messages

/**
 * Check and decode an envelope, without decrypting it (to learn `kid`, the key version, before
 * looking up the key). Accepts exactly the keys `v`, `kid`, `iv`, `ct`: `v` 1, `kid` an integer
 * >= 1, `iv` base64url of 12 bytes, `ct` base64url of at least the 16-byte tag.
 * @param {string} text
 * @returns {{v: 1, kid: number, iv: string, ct: string}}
 * @throws {DecryptError} `'malformed'`
 */
export function parseEnvelope(text) {
  if (typeof text !== 'string') throw new DecryptError('malformed', 'envelope: not a string');
  let env;
  try {
    env = JSON.parse(text);
  } catch {
    throw new DecryptError('malformed', 'envelope: not JSON');
  }
  if (!env || typeof env !== 'object' || Array.isArray(env)) throw new DecryptError('malformed', 'envelope: not an object');
  const keys = Object.keys(env).sort().join(',');
  if (keys !== 'ct,iv,kid,v') throw new DecryptError('malformed', `envelope: keys ${keys}, expected v, kid, iv, ct`);
  if (env.v !== ENVELOPE_VERSION) throw new DecryptError('malformed', `envelope: version ${JSON.stringify(env.v)}, expected ${ENVELOPE_VERSION}`);
  if (!isVersion(env.kid)) throw new DecryptError('malformed', 'envelope: kid is not an integer >= 1');
  let iv, ct;
  try {
    iv = fromBase64Url(env.iv);
    ct = fromBase64Url(env.ct);
  } catch {
    throw new DecryptError('malformed', 'envelope: iv or ct is not base64url');
  }
  if (iv.length !== IV_BYTES) throw new DecryptError('malformed', `envelope: iv of ${iv.length} bytes, expected ${IV_BYTES}`);
  if (ct.length < TAG_BYTES) throw new DecryptError('malformed', 'envelope: ct shorter than the tag');
  return { v: ENVELOPE_VERSION, kid: env.kid, iv: env.iv, ct: env.ct };
}

/**
 * Encrypt a message's text into an envelope: AES-256-GCM under a random 12-byte IV, additional
 * data UTF-8 `<conversationId>:<version>` (so the ciphertext fails to decrypt in any other
 * conversation or under any other key version).
 * @param {object} opts
 * @param {CryptoKey} opts.key            the conversation key of `version`
 * @param {number} opts.version           its version: the envelope's `kid`
 * @param {string} opts.plaintext
 * @param {string} opts.conversationId
 * @param {string} [opts.messageId]       accepted, not bound: envelope v1 binds the conversation
 *   and key version only (message ids are not known to every reader when decrypting)
 * @returns {Promise<string>} `{"v":1,"kid":<version>,"iv":"<b64url>","ct":"<b64url>"}`
 */
export async function encryptMessage({ key, version, plaintext, conversationId }) {
  checkConversationId(conversationId);
  checkVersion(version);
  if (typeof plaintext !== 'string') throw new TypeError('plaintext must be a string');
  const iv = randomBytes(IV_BYTES);
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: boundTo(conversationId, version) }, key, utf8(plaintext));
  return JSON.stringify({ v: ENVELOPE_VERSION, kid: version, iv: toBase64Url(iv), ct: toBase64Url(ct) });
}

/**
 * Decrypt an envelope with the conversation key of its `kid`.
 * @param {object} opts
 * @param {CryptoKey} opts.key
 * @param {string} opts.envelope
 * @param {string} opts.conversationId
 * @returns {Promise<string>} the plaintext
 * @throws {DecryptError} `'malformed'` (not an envelope, or not UTF-8 inside), `'tampered'`
 *   (authentication failed: altered, another conversation's, or the wrong key)
 */
export async function decryptMessage({ key, envelope, conversationId }) {
  checkConversationId(conversationId);
  const env = parseEnvelope(envelope);
  let plain;
  try {
    plain = await subtle().decrypt({ name: 'AES-GCM', iv: fromBase64Url(env.iv), additionalData: boundTo(conversationId, env.kid) }, key, fromBase64Url(env.ct));
  } catch {
    throw new DecryptError('tampered', 'the message failed authentication');
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch {
    throw new DecryptError('malformed', 'the message is not UTF-8 text');
  }
}

// ------------------------------------------------------------------ key backup

/** @param {unknown} n */
function checkIterations(n) {
  return Number.isSafeInteger(n) && /** @type {number} */ (n) >= MIN_BACKUP_ITERATIONS && /** @type {number} */ (n) <= MAX_BACKUP_ITERATIONS;
}

/**
 * The AES-GCM key of a backup: PBKDF2-SHA-256 over the passphrase (Unicode NFC, UTF-8).
 * @param {string} passphrase
 * @param {Uint8Array} salt
 * @param {number} iterations
 * @param {'encrypt'|'decrypt'} usage
 */
async function backupKey(passphrase, salt, iterations, usage) {
  const base = await subtle().importKey('raw', utf8(passphrase.normalize('NFC')), 'PBKDF2', false, ['deriveKey']);
  return subtle().deriveKey({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, base, AES, false, [usage]);
}

/**
 * @typedef {object} KeyBackup
 * @property {1} version
 * @property {'PBKDF2-SHA256'} kdf
 * @property {number} iterations
 * @property {string} salt   base64url, 16 bytes
 * @property {string} iv     base64url, 12 bytes
 * @property {string} ct     base64url, ciphertext || tag
 */

/**
 * Encrypt a JSON-serialisable object (the keys to back up, e.g.
 * `{ conversations: { [id]: { [version]: rawKeyBase64url } } }`) under a passphrase:
 * PBKDF2-SHA-256 (random 16-byte salt) -> AES-256-GCM, random 12-byte IV, additional data UTF-8
 * `chat key backup v1`. Only as strong as the passphrase.
 * @param {object} opts
 * @param {string} opts.passphrase
 * @param {any} opts.keys
 * @param {number} [opts.iterations]  at least 310,000 (RangeError otherwise); 600,000 by default
 * @returns {Promise<KeyBackup>} an object whose JSON has the keys in the order
 *   version, kdf, iterations, salt, iv, ct
 */
export async function encryptBackup({ passphrase, keys, iterations = DEFAULT_BACKUP_ITERATIONS }) {
  if (typeof passphrase !== 'string' || passphrase === '') throw new TypeError('passphrase must be a non-empty string');
  if (!checkIterations(iterations)) throw new RangeError(`PBKDF2 iterations must be an integer from ${MIN_BACKUP_ITERATIONS} to ${MAX_BACKUP_ITERATIONS}, not ${String(iterations)}`);
  const json = JSON.stringify(keys);
  if (json === undefined) throw new TypeError('keys must be JSON-serialisable');
  const salt = randomBytes(SALT_BYTES);
  const iv = randomBytes(IV_BYTES);
  const key = await backupKey(passphrase, salt, iterations, 'encrypt');
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: utf8(BACKUP_AAD) }, key, utf8(json));
  return { version: BACKUP_VERSION, kdf: BACKUP_KDF, iterations, salt: toBase64Url(salt), iv: toBase64Url(iv), ct: toBase64Url(ct) };
}

/**
 * Open a key backup made by `encryptBackup`.
 * @param {object} opts
 * @param {string} opts.passphrase
 * @param {KeyBackup|string} opts.backup  the object, or its JSON
 * @returns {Promise<any>} the object that was backed up
 * @throws {DecryptError} `'bad_passphrase'` (wrong passphrase, or the backup was altered);
 *   `'malformed'` (not a backup of this format, or iterations outside 310,000..10,000,000)
 */
export async function decryptBackup({ passphrase, backup }) {
  if (typeof passphrase !== 'string') throw new TypeError('passphrase must be a string');
  let b = backup;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch {
      throw new DecryptError('malformed', 'backup: not JSON');
    }
  }
  if (!b || typeof b !== 'object' || b.version !== BACKUP_VERSION || b.kdf !== BACKUP_KDF) throw new DecryptError('malformed', 'backup: not a version 1 PBKDF2-SHA256 backup');
  if (!checkIterations(b.iterations)) throw new DecryptError('malformed', `backup: iterations ${String(b.iterations)} refused (from ${MIN_BACKUP_ITERATIONS} to ${MAX_BACKUP_ITERATIONS})`);
  let salt, iv, ct;
  try {
    [salt, iv, ct] = [fromBase64Url(b.salt), fromBase64Url(b.iv), fromBase64Url(b.ct)];
  } catch {
    throw new DecryptError('malformed', 'backup: salt, iv or ct is not base64url');
  }
  if (salt.length !== SALT_BYTES || iv.length !== IV_BYTES || ct.length < TAG_BYTES) throw new DecryptError('malformed', 'backup: salt, iv or ct of the wrong size');
  const key = await backupKey(passphrase, salt, b.iterations, 'decrypt');
  let plain;
  try {
    plain = await subtle().decrypt({ name: 'AES-GCM', iv, additionalData: utf8(BACKUP_AAD) }, key, ct);
  } catch {
    throw new DecryptError('bad_passphrase', 'the backup did not open: wrong passphrase, or altered');
  }
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plain));
  } catch {
    throw new DecryptError('malformed', 'backup: the decrypted content is not JSON');
  }
}
