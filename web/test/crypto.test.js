// End-to-end encryption: web/sdk/crypto.js and web/sdk/keystore.js under Node's WebCrypto (the
// same API as the browser's), with Node's own crypto module as the oracle for hashes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyObject, createDecipheriv, createHash, diffieHellman, hkdfSync, pbkdf2Sync } from 'node:crypto';
import {
  DecryptError,
  MIN_BACKUP_ITERATIONS,
  decryptBackup,
  decryptMessage,
  encryptBackup,
  encryptMessage,
  exportConversationKey,
  fingerprint,
  fromBase64Url,
  generateConversationKey,
  generateDeviceKeys,
  importConversationKey,
  importPublicKey,
  parseEnvelope,
  safetyNumber,
  toBase64Url,
  unwrapKey,
  wrapKey,
} from '../sdk/crypto.js';
import { keyStoreDatabaseName, openKeyStore } from '../sdk/keystore.js';
import { FakeIndexedDB } from './fake-indexeddb.js';

const subtle = globalThis.crypto.subtle;
const CONV = 'c-0001';

/** A fixed device public key (a real P-256 point) and the fingerprint it must always have. */
const FIXED_PUBLIC = 'BEEEQtkUFZ7qlpV_5Q-Hjis-MzJJfiZ_04cbjvy4Hc3lA0MiTdG2y6_nEZa7ucuGa3PiDRFI-qCmWDgAZ0X5ct8';
const FIXED_FINGERPRINT = 'c070 c21e 7037 a6a1 c2cb e139 6650 f4ed 628b 4477 ef38 dbb6 7c2f 0f16 1d23 76ba';

/** Asserts that `promise` rejects with a DecryptError of `code`. */
async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof DecryptError, `expected a DecryptError, got ${err?.name}: ${err?.message}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** The envelope with one byte of `field` (iv or ct) flipped. */
function flip(envelope, field, index) {
  const env = JSON.parse(envelope);
  const bytes = fromBase64Url(env[field]);
  bytes[index] ^= 0x01;
  env[field] = toBase64Url(bytes);
  return JSON.stringify(env);
}

const devices = Promise.all([generateDeviceKeys(), generateDeviceKeys(), generateDeviceKeys()]);

test('base64url: no padding, matches Node, strict on decoding', () => {
  for (let n = 0; n < 20; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + 251) & 0xff);
    const text = toBase64Url(bytes);
    assert.equal(text, Buffer.from(bytes).toString('base64url'));
    assert.doesNotMatch(text, /[=+/]/);
    assert.deepEqual(fromBase64Url(text), bytes);
  }
  assert.equal(toBase64Url(new Uint8Array([0xfb, 0xff])), '-_8');
  for (const bad of ['AA==', 'A', 'AB', '+/8', 'AA A', 'AA\n', 'ä', 42, null]) {
    assert.throws(() => fromBase64Url(/** @type {any} */ (bad)), TypeError, `accepted ${JSON.stringify(bad)}`);
  }
});

test('device keys: P-256 ECDH, 65-byte uncompressed public point, private key not extractable', async () => {
  const [a] = await devices;
  assert.equal(a.privateKey.type, 'private');
  assert.equal(a.privateKey.extractable, false);
  assert.deepEqual(a.privateKey.algorithm, { name: 'ECDH', namedCurve: 'P-256' });
  assert.equal(a.publicKey.type, 'public');
  const raw = fromBase64Url(a.publicRaw);
  assert.equal(raw.length, 65);
  assert.equal(raw[0], 0x04);
  assert.equal(a.publicRaw.length, 87);
  assert.deepEqual(new Uint8Array(await subtle.exportKey('raw', a.publicKey)), raw);
  for (const format of ['pkcs8', 'jwk']) await assert.rejects(subtle.exportKey(format, a.privateKey), `the private key exported as ${format}`);
});

test('importPublicKey: accepts a published key, refuses anything else with a clear error', async () => {
  const [a] = await devices;
  const key = await importPublicKey(a.publicRaw);
  assert.equal(key.type, 'public');
  assert.deepEqual(new Uint8Array(await subtle.exportKey('raw', key)), fromBase64Url(a.publicRaw));
  const raw = fromBase64Url(a.publicRaw);
  await assert.rejects(importPublicKey(toBase64Url(raw.subarray(0, 64))), /64 bytes, expected 65/);
  await assert.rejects(importPublicKey(toBase64Url(new Uint8Array([...raw, 0]))), /66 bytes, expected 65/);
  const compressedPrefix = raw.slice();
  compressedPrefix[0] = 0x02;
  await assert.rejects(importPublicKey(toBase64Url(compressedPrefix)), /0x04/);
  await assert.rejects(importPublicKey('not base64url!'), /not base64url/);
  const offCurve = new Uint8Array(65);
  offCurve[0] = 0x04;
  await assert.rejects(importPublicKey(toBase64Url(offCurve)), /not a P-256 point/);
});

test('fingerprint: SHA-256 of the raw 65 bytes, 16 groups of 4 lower-case hex digits, stable', async () => {
  const oracle = createHash('sha256').update(Buffer.from(FIXED_PUBLIC, 'base64url')).digest('hex').match(/.{4}/g).join(' ');
  const fp = await fingerprint(FIXED_PUBLIC);
  assert.equal(fp, oracle);
  assert.equal(fp, FIXED_FINGERPRINT);
  assert.match(fp, /^([0-9a-f]{4} ){15}[0-9a-f]{4}$/);
  const [a, b] = await devices;
  assert.notEqual(await fingerprint(a.publicRaw), await fingerprint(b.publicRaw));
  await assert.rejects(fingerprint(toBase64Url(new Uint8Array(33).fill(2))), /33 bytes/);
});

test('safety number: the same from both sides, 12 groups of 5 digits, from the sorted fingerprints', async () => {
  const [a, b, c] = await devices;
  const ab = await safetyNumber(a.publicRaw, b.publicRaw);
  assert.equal(await safetyNumber(b.publicRaw, a.publicRaw), ab);
  assert.match(ab, /^(\d{5} ){11}\d{5}$/);
  assert.notEqual(await safetyNumber(a.publicRaw, c.publicRaw), ab);
  assert.notEqual(await safetyNumber(c.publicRaw, b.publicRaw), ab);
  // Oracle: Node's SHA-256 over the sorted, concatenated 64-digit fingerprints, mod 10^60.
  const fps = [a, b].map((d) => createHash('sha256').update(Buffer.from(d.publicRaw, 'base64url')).digest('hex')).sort();
  const digest = createHash('sha256').update(fps.join(''), 'utf8').digest('hex');
  const digits = (BigInt('0x' + digest) % 10n ** 60n).toString().padStart(60, '0');
  assert.equal(ab, digits.match(/.{5}/g).join(' '));
});

test('conversation key: AES-256-GCM, extractable, exported and imported as 32 base64url bytes', async () => {
  const key = await generateConversationKey();
  assert.deepEqual(key.algorithm, { name: 'AES-GCM', length: 256 });
  assert.equal(key.extractable, true);
  const raw = await exportConversationKey(key);
  assert.equal(fromBase64Url(raw).length, 32);
  const again = await importConversationKey(raw);
  assert.equal(await exportConversationKey(again), raw);
  const env = await encryptMessage({ key, version: 1, plaintext: 'same key', conversationId: CONV });
  assert.equal(await decryptMessage({ key: again, envelope: env, conversationId: CONV }), 'same key');
  await assert.rejects(importConversationKey(toBase64Url(new Uint8Array(16))), /16 bytes, expected 32/);
});

test('wrap and unwrap between two devices, both ways, and for the sender itself', async () => {
  const [a, b] = await devices;
  const key = await generateConversationKey();
  const raw = await exportConversationKey(key);
  const pairs = [
    [a, b],
    [b, a],
    [a, a],
  ];
  for (const [from, to] of pairs) {
    const wrapped = await wrapKey({ conversationKey: key, conversationId: CONV, version: 3, fromPrivateKey: from.privateKey, toPublicRaw: to.publicRaw });
    const bytes = fromBase64Url(wrapped);
    assert.equal(bytes.length, 12 + 32 + 16);
    assert.ok(!Buffer.from(bytes).includes(Buffer.from(fromBase64Url(raw))), 'the raw key is not in the wrapped bytes');
    const unwrapped = await unwrapKey({ wrapped, conversationId: CONV, version: 3, toPrivateKey: to.privateKey, fromPublicRaw: from.publicRaw });
    assert.equal(unwrapped.extractable, true);
    assert.equal(await exportConversationKey(unwrapped), raw);
  }
  // A fresh IV each time: two wraps of the same key differ.
  const w1 = await wrapKey({ conversationKey: key, conversationId: CONV, version: 3, fromPrivateKey: a.privateKey, toPublicRaw: b.publicRaw });
  const w2 = await wrapKey({ conversationKey: key, conversationId: CONV, version: 3, fromPrivateKey: a.privateKey, toPublicRaw: b.publicRaw });
  assert.notEqual(w1, w2);
});

test('unwrap fails with bad_key for a third device, another sender, another version or conversation, a flipped byte', async () => {
  const [a, b, c] = await devices;
  const key = await generateConversationKey();
  const wrapped = await wrapKey({ conversationKey: key, conversationId: CONV, version: 1, fromPrivateKey: a.privateKey, toPublicRaw: b.publicRaw });
  const base = { wrapped, conversationId: CONV, version: 1, toPrivateKey: b.privateKey, fromPublicRaw: a.publicRaw };
  await unwrapKey(base); // the control: this one works
  await rejectsWith(unwrapKey({ ...base, toPrivateKey: c.privateKey }), 'bad_key');
  await rejectsWith(unwrapKey({ ...base, fromPublicRaw: c.publicRaw }), 'bad_key');
  await rejectsWith(unwrapKey({ ...base, version: 2 }), 'bad_key');
  await rejectsWith(unwrapKey({ ...base, conversationId: 'c-0002' }), 'bad_key');
  for (const i of [0, 11, 12, 43, 59]) {
    const bytes = fromBase64Url(wrapped);
    bytes[i] ^= 0x80;
    await rejectsWith(unwrapKey({ ...base, wrapped: toBase64Url(bytes) }), 'bad_key');
  }
  await rejectsWith(unwrapKey({ ...base, wrapped: toBase64Url(fromBase64Url(wrapped).subarray(0, 59)) }), 'malformed');
  await rejectsWith(unwrapKey({ ...base, wrapped: wrapped + '=' }), 'malformed');
});

test('messages: round trips of ASCII, Unicode, empty and 4000-character text', async () => {
  const key = await generateConversationKey();
  const texts = [
    'hello',
    '',
    'Grüße, 你好, مرحبا, שלום, नमस्ते 👋🏽 👨‍👩‍👧 e\u0301 \u0000 \uFEFF',
    'x'.repeat(4000),
    '€😀'.repeat(1333) + 'a',
  ];
  for (const plaintext of texts) {
    const envelope = await encryptMessage({ key, version: 7, plaintext, conversationId: CONV, messageId: 'm-1' });
    assert.ok(!envelope.includes(plaintext) || plaintext === '', 'no plaintext in the envelope');
    assert.equal(await decryptMessage({ key, envelope, conversationId: CONV }), plaintext);
  }
});

test('the envelope: compact JSON, keys v, kid, iv, ct in that order, 12-byte iv, ct = text + 16-byte tag', async () => {
  const key = await generateConversationKey();
  const plaintext = 'Grüße 👋';
  const envelope = await encryptMessage({ key, version: 42, plaintext, conversationId: CONV });
  assert.match(envelope, /^\{"v":1,"kid":42,"iv":"[A-Za-z0-9_-]{16}","ct":"[A-Za-z0-9_-]+"\}$/);
  const env = JSON.parse(envelope);
  assert.deepEqual(Object.keys(env), ['v', 'kid', 'iv', 'ct']);
  assert.equal(fromBase64Url(env.iv).length, 12);
  assert.equal(fromBase64Url(env.ct).length, Buffer.byteLength(plaintext) + 16);
  assert.deepEqual(parseEnvelope(envelope), env);
  const again = await encryptMessage({ key, version: 42, plaintext, conversationId: CONV });
  assert.notEqual(JSON.parse(again).iv, env.iv, 'a fresh IV per message');
});

test('a flipped byte of ct or iv, another conversation, another kid or key: tampered, never text', async () => {
  const key = await generateConversationKey();
  const other = await generateConversationKey();
  const envelope = await encryptMessage({ key, version: 1, plaintext: 'pay Bob 10', conversationId: CONV });
  const len = fromBase64Url(JSON.parse(envelope).ct).length;
  for (const i of [0, 5, len - 17, len - 16, len - 1]) {
    await rejectsWith(decryptMessage({ key, envelope: flip(envelope, 'ct', i), conversationId: CONV }), 'tampered');
  }
  for (const i of [0, 11]) await rejectsWith(decryptMessage({ key, envelope: flip(envelope, 'iv', i), conversationId: CONV }), 'tampered');
  await rejectsWith(decryptMessage({ key, envelope, conversationId: 'c-0002' }), 'tampered');
  await rejectsWith(decryptMessage({ key, envelope: envelope.replace('"kid":1', '"kid":2'), conversationId: CONV }), 'tampered');
  await rejectsWith(decryptMessage({ key: other, envelope, conversationId: CONV }), 'tampered');
  // The control: the untouched envelope still decrypts.
  assert.equal(await decryptMessage({ key, envelope, conversationId: CONV }), 'pay Bob 10');
});

test('malformed envelopes are refused before decrypting', async () => {
  const key = await generateConversationKey();
  const good = JSON.parse(await encryptMessage({ key, version: 1, plaintext: 'hi', conversationId: CONV }));
  const iv = (n) => toBase64Url(new Uint8Array(n));
  const cases = {
    'not JSON': 'hello',
    'truncated JSON': JSON.stringify(good).slice(0, -1),
    'an array': JSON.stringify([1, 1, good.iv, good.ct]),
    'null': 'null',
    'a string': JSON.stringify('{"v":1}'),
    'a number': '1',
    'no ct': JSON.stringify({ v: 1, kid: 1, iv: good.iv }),
    'an extra key': JSON.stringify({ ...good, sender: 'u-1' }),
    'a renamed key': JSON.stringify({ v: 1, kid: 1, nonce: good.iv, ct: good.ct }),
    'v 2': JSON.stringify({ ...good, v: 2 }),
    'v "1"': JSON.stringify({ ...good, v: '1' }),
    'kid 0': JSON.stringify({ ...good, kid: 0 }),
    'kid 1.5': JSON.stringify({ ...good, kid: 1.5 }),
    'kid "1"': JSON.stringify({ ...good, kid: '1' }),
    'kid null': JSON.stringify({ ...good, kid: null }),
    'iv padded': JSON.stringify({ ...good, iv: good.iv + '==' }),
    'iv in base64, not base64url': JSON.stringify({ ...good, iv: '++++////++++////' }),
    'iv of 11 bytes': JSON.stringify({ ...good, iv: iv(11) }),
    'iv of 16 bytes': JSON.stringify({ ...good, iv: iv(16) }),
    'iv a number': JSON.stringify({ ...good, iv: 12 }),
    'ct empty': JSON.stringify({ ...good, ct: '' }),
    'ct shorter than the tag': JSON.stringify({ ...good, ct: iv(15) }),
    'ct with a space': JSON.stringify({ ...good, ct: good.ct.slice(0, 4) + ' ' + good.ct.slice(4) }),
  };
  for (const [name, text] of Object.entries(cases)) {
    assert.throws(() => parseEnvelope(text), (err) => err instanceof DecryptError && err.code === 'malformed', `parseEnvelope accepted ${name}`);
    await rejectsWith(decryptMessage({ key, envelope: text, conversationId: CONV }), 'malformed');
  }
  for (const notText of [undefined, null, 1, good]) {
    assert.throws(() => parseEnvelope(/** @type {any} */ (notText)), (err) => err.code === 'malformed');
  }
  // Keys in another order are still an envelope (its JSON may have been re-serialised).
  const reordered = JSON.stringify({ ct: good.ct, iv: good.iv, kid: good.kid, v: 1 });
  assert.equal(await decryptMessage({ key, envelope: reordered, conversationId: CONV }), 'hi');
});

test('key backup: round trip, exact format, wrong passphrase, altered, iterations below the floor', async () => {
  assert.equal(MIN_BACKUP_ITERATIONS, 310000);
  const k1 = await generateConversationKey();
  const k2 = await generateConversationKey();
  const keys = { conversations: { [CONV]: { 1: await exportConversationKey(k1), 2: await exportConversationKey(k2) } } };
  const old = await encryptMessage({ key: k2, version: 2, plaintext: 'before the backup', conversationId: CONV });

  const backup = await encryptBackup({ passphrase: 'correct horse battery staple', keys, iterations: 310000 });
  assert.deepEqual(Object.keys(backup), ['version', 'kdf', 'iterations', 'salt', 'iv', 'ct']);
  assert.equal(backup.version, 1);
  assert.equal(backup.kdf, 'PBKDF2-SHA256');
  assert.equal(backup.iterations, 310000);
  assert.equal(fromBase64Url(backup.salt).length, 16);
  assert.equal(fromBase64Url(backup.iv).length, 12);
  assert.equal(fromBase64Url(backup.ct).length, Buffer.byteLength(JSON.stringify(keys)) + 16);
  assert.ok(!JSON.stringify(backup).includes(keys.conversations[CONV][1]), 'no key in clear in the backup');

  // Restored from its JSON (as it comes back from the server): the keys decrypt old messages.
  const restored = await decryptBackup({ passphrase: 'correct horse battery staple', backup: JSON.stringify(backup) });
  assert.deepEqual(restored, keys);
  const k2again = await importConversationKey(restored.conversations[CONV]['2']);
  assert.equal(await decryptMessage({ key: k2again, envelope: old, conversationId: CONV }), 'before the backup');

  await rejectsWith(decryptBackup({ passphrase: 'correct horse battery stapl', backup }), 'bad_passphrase');
  const ct = fromBase64Url(backup.ct);
  ct[3] ^= 1;
  await rejectsWith(decryptBackup({ passphrase: 'correct horse battery staple', backup: { ...backup, ct: toBase64Url(ct) } }), 'bad_passphrase');

  // Below the floor: refused on both sides, without running the KDF.
  await assert.rejects(encryptBackup({ passphrase: 'p', keys, iterations: 309999 }), RangeError);
  await assert.rejects(encryptBackup({ passphrase: 'p', keys, iterations: 1000 }), RangeError);
  await rejectsWith(decryptBackup({ passphrase: 'correct horse battery staple', backup: { ...backup, iterations: 1000 } }), 'malformed');
  await rejectsWith(decryptBackup({ passphrase: 'correct horse battery staple', backup: { ...backup, kdf: 'scrypt' } }), 'malformed');
  await rejectsWith(decryptBackup({ passphrase: 'correct horse battery staple', backup: '{"version":1' }), 'malformed');
  await assert.rejects(encryptBackup({ passphrase: '', keys, iterations: 310000 }), TypeError);
});

test('the wire formats as specified, checked independently with node:crypto', async () => {
  // A sender whose private key can be handed to node:crypto (real devices' keys cannot).
  const pair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
  const recipient = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
  const recipientRaw = toBase64Url(await subtle.exportKey('raw', recipient.publicKey));
  const key = await generateConversationKey();
  const raw = Buffer.from(await exportConversationKey(key), 'base64url');
  const gcmOpen = (k, bytesIv, bytesCt, aad) => {
    const d = createDecipheriv('aes-256-gcm', k, bytesIv);
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(bytesCt.subarray(bytesCt.length - 16));
    return Buffer.concat([d.update(bytesCt.subarray(0, bytesCt.length - 16)), d.final()]);
  };

  // Key wrap: ECDH -> HKDF-SHA-256(salt "<conv>:<version>", info "chat e2ee key wrap v1") -> AES-256-GCM.
  const wrapped = Buffer.from(await wrapKey({ conversationKey: key, conversationId: CONV, version: 5, fromPrivateKey: pair.privateKey, toPublicRaw: recipientRaw }), 'base64url');
  const shared = diffieHellman({ privateKey: KeyObject.from(recipient.privateKey), publicKey: KeyObject.from(pair.publicKey) });
  const kek = Buffer.from(hkdfSync('sha256', shared, Buffer.from(`${CONV}:5`), Buffer.from('chat e2ee key wrap v1'), 32));
  assert.deepEqual(gcmOpen(kek, wrapped.subarray(0, 12), wrapped.subarray(12), `${CONV}:5`), raw);

  // Message: AES-256-GCM under the conversation key, additional data "<conv>:<version>".
  const env = JSON.parse(await encryptMessage({ key, version: 5, plaintext: 'Grüße 👋', conversationId: CONV }));
  const plain = gcmOpen(raw, Buffer.from(env.iv, 'base64url'), Buffer.from(env.ct, 'base64url'), `${CONV}:5`);
  assert.equal(plain.toString('utf8'), 'Grüße 👋');

  // Backup: PBKDF2-SHA-256 -> AES-256-GCM, additional data "chat key backup v1".
  const backup = await encryptBackup({ passphrase: 'pässword', keys: { a: [1, 'b'] }, iterations: 310000 });
  const bk = pbkdf2Sync(Buffer.from('pässword'.normalize('NFC')), Buffer.from(backup.salt, 'base64url'), 310000, 32, 'sha256');
  const opened = gcmOpen(bk, Buffer.from(backup.iv, 'base64url'), Buffer.from(backup.ct, 'base64url'), 'chat key backup v1');
  assert.deepEqual(JSON.parse(opened.toString('utf8')), { a: [1, 'b'] });
});

test('key store: device and conversation keys kept as CryptoKeys, per user, until cleared', async () => {
  const idb = new FakeIndexedDB();
  const [a, b] = await devices;
  const store = await openKeyStore({ indexedDB: idb, userId: 'u-1' });
  assert.equal(await store.getDevice(), null);
  assert.equal(await store.getConversationKey(CONV, 1), null);
  await store.putDevice({ id: 'd-1', ...a });
  const k1 = await generateConversationKey();
  const k2 = await generateConversationKey();
  await store.putConversationKey(CONV, 2, k2);
  await store.putConversationKey(CONV, 1, k1);
  await store.putConversationKey('c-0000', 1, k2);
  store.close();

  // A reload: a new connection to the same database.
  const again = await openKeyStore({ indexedDB: idb, userId: 'u-1' });
  const device = await again.getDevice();
  assert.equal(device.id, 'd-1');
  assert.equal(device.publicRaw, a.publicRaw);
  assert.ok(device.privateKey instanceof CryptoKey);
  assert.equal(device.privateKey.extractable, false, 'still not extractable after the store');
  await assert.rejects(subtle.exportKey('pkcs8', device.privateKey));
  // The stored private key still works: it unwraps what was wrapped for it.
  const wrapped = await wrapKey({ conversationKey: k1, conversationId: CONV, version: 1, fromPrivateKey: b.privateKey, toPublicRaw: device.publicRaw });
  const unwrapped = await unwrapKey({ wrapped, conversationId: CONV, version: 1, toPrivateKey: device.privateKey, fromPublicRaw: b.publicRaw });
  assert.equal(await exportConversationKey(unwrapped), await exportConversationKey(k1));

  const got = await again.getConversationKey(CONV, 2);
  assert.equal(await exportConversationKey(got), await exportConversationKey(k2));
  assert.equal(await again.getConversationKey(CONV, 3), null);
  const all = await again.allConversationKeys();
  assert.deepEqual(
    all.map((r) => [r.conversationId, r.version]),
    [
      ['c-0000', 1],
      [CONV, 1],
      [CONV, 2],
    ],
  );
  assert.equal(await exportConversationKey(all[1].key), await exportConversationKey(k1));
  // Stored as CryptoKeys, not as bytes.
  const rows = idb.rows(keyStoreDatabaseName('u-1'), 'conversationKeys');
  assert.equal(rows.length, 3);
  assert.ok(rows.every((r) => r.key instanceof CryptoKey));

  // Another user on the same browser has a database of their own.
  const other = await openKeyStore({ indexedDB: idb, userId: 'u-2' });
  assert.equal(await other.getDevice(), null);
  assert.deepEqual(await other.allConversationKeys(), []);
  assert.deepEqual([...idb.dbs.keys()].sort(), ['chat.keys.u-1', 'chat.keys.u-2']);

  await again.clear();
  assert.equal(await again.getDevice(), null);
  assert.deepEqual(await again.allConversationKeys(), []);
  await assert.rejects(again.putConversationKey(CONV, 0, k1), TypeError);
});

test('key store: a failed write or open is reported, not swallowed', async () => {
  const idb = new FakeIndexedDB();
  const store = await openKeyStore({ indexedDB: idb, userId: 'u-1' });
  idb.failures.commit = 'QuotaExceededError';
  await assert.rejects(store.putConversationKey(CONV, 1, await generateConversationKey()), (err) => err.name === 'QuotaExceededError');
  idb.failures.commit = null;
  assert.equal(await store.getConversationKey(CONV, 1), null, 'nothing was written');
  idb.failures.open = 'UnknownError';
  await assert.rejects(openKeyStore({ indexedDB: idb, userId: 'u-3' }), (err) => err.name === 'UnknownError');
  await assert.rejects(openKeyStore({ indexedDB: null, userId: 'u-1' }), /IndexedDB is not available/);
});
