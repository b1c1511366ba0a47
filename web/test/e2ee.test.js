// End-to-end encryption through the ChatClient (web/sdk/e2ee.js), against the in-memory backend
// of fakes.js extended with the key routes of the protocol crate (devices, wrapped keys, key
// requests, backups). The other members' devices are played by the test with crypto.js itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../sdk/chat-client.js';
import { DecryptError, decryptMessage, encryptMessage, generateConversationKey, generateDeviceKeys, unwrapKey, exportConversationKey } from '../sdk/crypto.js';
import { FakeBackend, FakeClock, FakeDocument, MemoryStorage, makeFakeWebSocket, settle } from './fakes.js';
import { FakeIndexedDB } from './fake-indexeddb.js';
import { e2eeServer } from './fake-e2ee.js';

const MARKER = 'zebra-quokka-7731';

/** Wait (real time) until `fn` is true: WebCrypto runs off the event loop's microtasks. */
async function until(fn, what = 'condition', ms = 8000) {
  const end = Date.now() + ms;
  for (;;) {
    await settle();
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A world: the backend with an encrypted direct conversation c1 (me and Bob), Bob's device. */
async function world({ members = ['u-me', 'u-b'], type = 'direct' } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  const conv = backend.addConversation('c1', { type, members, title: type === 'group' ? 'Team' : null });
  conv.encrypted = true;
  conv.key_version = 0;
  conv.rotation_needed = false;
  const server = e2eeServer(backend);
  const bobKeys = await generateDeviceKeys();
  const bob = { ...server.addDevice('u-b', bobKeys.publicRaw, 'Bob phone'), ...bobKeys };
  return { clock, backend, server, bob, storage: new MemoryStorage(), idb: new FakeIndexedDB(), tag: 0 };
}

function page(w, { idb = w.idb, storage = w.storage } = {}) {
  const WS = makeFakeWebSocket(w.clock);
  let n = 0;
  const tag = ++w.tag;
  const client = new ChatClient({
    baseUrl: 'http://chat.test',
    fetch: w.backend.fetch,
    WebSocket: WS,
    storage,
    indexedDB: idb,
    clock: w.clock,
    document: new FakeDocument(),
    window: new FakeDocument(),
    locks: null,
    randomUUID: () => `tmp-${tag}-${++n}`,
    deviceName: 'Test browser',
    logger: { warn() {}, debug() {}, error() {} },
  });
  return { client, WS };
}

/** Signed in, started, connected, c1 open. */
async function connect(w, opts) {
  const p = page(w, opts);
  await p.client.login({ email: 'me@example.com', password: 'pw' });
  p.client.start();
  await until(() => p.client.e2ee?.device, 'the device registered');
  const ws = p.WS.last();
  ws.autoPong = true;
  ws.hello({ conversations: [...w.backend.convs.values()].map((c) => ({ conversation_id: c.conv.id, last_seq: c.conv.last_seq, unread_count: 0, delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 })) });
  await settle();
  await p.client.openConversation('c1');
  return { ...p, ws };
}

/** My device as the server has it. */
const myDevice = (w) => [...w.server.devices.values()].find((d) => d.user_id === 'u-me');

/** Bob made version `version` of c1 and wrapped it for every live device (mine included). */
async function bobMakesKey(w, version = 1) {
  const key = await generateConversationKey();
  await w.server.storeKey('c1', version, key, w.bob, [...w.server.devices.values()].filter((d) => w.server.members('c1').includes(d.user_id)));
  // Also for devices of mine registered later (a new browser gets it by a key request instead).
  w.server.grants.push({ convId: 'c1', version, key, from: w.bob });
  return key;
}

/** A message from Bob, encrypted with `key`, stored and framed as the server would. */
async function bobSays(w, key, text, version = 1) {
  const m = w.backend.addMessage('c1', 'u-b', await encryptMessage({ key, version, plaintext: text, conversationId: 'c1' }));
  m.content_type = 'encrypted';
  return m;
}

function ackAll(ws, backend) {
  for (const f of ws.framesOfType('message').slice(ws.acked ?? 0)) {
    const m = backend.addMessage(f.conversation_id, 'u-me', f.content, f.temp_id);
    m.content_type = f.content_type;
    ws.receive({ type: 'message_sent', conversation_id: m.conversation_id, message_id: m.id, temp_id: f.temp_id, seq: m.seq, created_at: m.created_at });
  }
  ws.acked = ws.framesOfType('message').length;
}

test('the device registers once, version 1 is made for every member device when there is none', async () => {
  const w = await world();
  const p = await connect(w);
  // Not the one who created it: the client gives the creator a moment (up to 3 s) first.
  await settle();
  assert.equal(w.server.puts.length, 0);
  await w.clock.advance(3000);
  await until(() => w.server.puts.length === 1, 'version 1 stored');
  const put = w.server.puts[0];
  assert.equal(put.version, 1);
  assert.deepEqual(put.body.wrapped.map((x) => x.device_id).sort(), [w.bob.id, myDevice(w).id].sort());
  assert.equal(myDevice(w).name, 'Test browser');
  // Bob's device can unwrap it: it is a real key for this conversation.
  const mine = put.body.wrapped.find((x) => x.device_id === w.bob.id);
  await unwrapKey({ wrapped: mine.wrapped_key, conversationId: 'c1', version: 1, toPrivateKey: w.bob.privateKey, fromPublicRaw: myDevice(w).public_key });
  await until(() => p.client.conversation('c1').key_held, 'the key held');
  // A reload: the same device (no second registration), the key still held.
  p.client.stop();
  const again = await connect(w);
  assert.equal([...w.server.devices.values()].filter((d) => d.user_id === 'u-me').length, 1);
  await until(() => again.client.conversation('c1').key_held, 'the key held after a reload');
});

test('two members make version 1 at once: the one the server took first wins, ours is refused', async () => {
  const w = await world();
  let bobKey = null;
  const inner = w.backend.override;
  w.backend.override = async (method, path, body) => {
    // Bob's client gets there first, just before ours: the server refuses ours (409
    // key_version_exists) and we fetch his.
    if (method === 'PUT' && path === '/conversations/c1/keys/1' && !bobKey) {
      bobKey = await generateConversationKey();
      await w.server.storeKey('c1', 1, bobKey, w.bob, [...w.server.devices.values()]);
    }
    return inner(method, path, body);
  };
  const p = await connect(w);
  await w.clock.advance(3000);
  await until(() => w.server.puts.length === 1, 'our PUT');
  await until(() => p.client.conversation('c1').key_held, 'a key held');
  const m = await bobSays(w, bobKey, 'with the winning key');
  p.ws.receive({ type: 'message', message: w.backend.messageJson('c1', m) });
  await until(() => p.client.messages('c1')[0]?.content === 'with the winning key', "decrypted with Bob's key");
  p.client.send('c1', 'mine too');
  await until(() => p.ws.framesOfType('message').length === 1, 'sent');
  assert.equal(await decryptMessage({ key: bobKey, envelope: p.ws.framesOfType('message')[0].content, conversationId: 'c1' }), 'mine too');
});

test('encrypt on send: only an envelope leaves, and it decrypts to the text; without a key the send fails, never as text', async () => {
  const w = await world();
  const key = await bobMakesKey(w);
  const p = await connect(w);
  await until(() => p.client.conversation('c1').key_held, 'the key fetched');
  const local = p.client.send('c1', `hello ${MARKER}`);
  assert.equal(local.content, `hello ${MARKER}`, 'shown at once');
  await until(() => p.ws.framesOfType('message').length === 1, 'the frame');
  const frame = p.ws.framesOfType('message')[0];
  assert.equal(frame.content_type, 'encrypted');
  assert.ok(!JSON.stringify(p.ws.sent).includes(MARKER), 'no plaintext on the wire');
  assert.ok(!JSON.stringify([...w.storage.map.values()]).includes(MARKER), 'no plaintext in the outbox');
  assert.equal(await decryptMessage({ key, envelope: frame.content, conversationId: 'c1' }), `hello ${MARKER}`);
  ackAll(p.ws, w.backend);
  await until(() => p.client.messages('c1').some((m) => !m.local && m.content === `hello ${MARKER}`), 'acked and shown');
  // Edit: the new text is encrypted too.
  const sent = p.client.messages('c1').find((m) => !m.local);
  await p.client.edit('c1', sent.id, `edited ${MARKER}`);
  const patch = w.backend.calls.find((c) => c.method === 'PATCH');
  assert.equal(await decryptMessage({ key, envelope: patch.body.content, conversationId: 'c1' }), `edited ${MARKER}`);
  assert.equal(p.client.message('c1', sent.id).content, `edited ${MARKER}`);

  // A second encrypted conversation whose key never comes: the send fails visibly.
  const c2 = w.backend.addConversation('c2', { members: ['u-me', 'u-b'] });
  Object.assign(c2, { encrypted: true, key_version: 3, rotation_needed: false });
  await p.client.refreshConversations();
  const before = p.ws.framesOfType('message').length;
  const doomed = p.client.send('c2', 'never as text');
  await until(() => p.client.messages('c2').find((m) => m.temp_id === doomed.temp_id)?.status === 'failed', 'the send failed');
  assert.match(p.client.messages('c2')[0].error, /key/);
  assert.equal(p.ws.framesOfType('message').length, before);
  assert.ok(!JSON.stringify(p.ws.sent).includes('never as text'));
  assert.ok(w.server.requests.some((r) => r.convId === 'c2'), 'the key was asked for');
});

test('decrypt on receive: history, live frames, edits and the list preview; a tampered envelope is shown as such', async () => {
  const w = await world();
  const key = await bobMakesKey(w);
  await bobSays(w, key, 'from history');
  const p = await connect(w);
  await until(() => p.client.messages('c1')[0]?.content === 'from history', 'history decrypted');
  const live = await bobSays(w, key, 'live one');
  p.ws.receive({ type: 'message', message: w.backend.messageJson('c1', live) });
  await until(() => p.client.messages('c1')[1]?.content === 'live one', 'live decrypted');
  assert.equal(p.client.conversation('c1').last_message.content, 'live one');
  assert.equal(p.client.messages('c1')[1].e2ee.state, 'ok');
  p.ws.receive(w.backend.editMessage('c1', live.id, await encryptMessage({ key, version: 1, plaintext: 'live, edited', conversationId: 'c1' })));
  await until(() => p.client.messages('c1')[1]?.content === 'live, edited', 'edit decrypted');
  // Tampered: one character of the ciphertext changed.
  const bad = await bobSays(w, key, 'secret words');
  const env = JSON.parse(bad.content);
  env.ct = (env.ct[0] === 'A' ? 'B' : 'A') + env.ct.slice(1);
  bad.content = JSON.stringify(env);
  p.ws.receive({ type: 'message', message: w.backend.messageJson('c1', bad) });
  await until(() => p.client.messages('c1')[2]?.e2ee?.state === 'failed', 'tampered found');
  assert.equal(p.client.messages('c1')[2].content, '', 'no text from a failed decryption');
  // A deleted message stays a tombstone.
  p.ws.receive(w.backend.deleteMessage('c1', live.id, 'u-b'));
  await settle();
  assert.ok(p.client.messages('c1')[1].deleted_at);
  assert.equal(p.client.messages('c1')[1].content, '');
});

test('waiting for a key, then decrypted when key_shared names this device; key requests are rate-limited', async () => {
  const w = await world();
  await bobMakesKey(w);
  const p = await connect(w);
  await until(() => p.client.conversation('c1').key_held, 'version 1 held');
  // Bob rotated to version 2 but did not wrap it for my device.
  const key2 = await generateConversationKey();
  await w.server.storeKey('c1', 2, key2, w.bob, [w.bob]);
  const m = await bobSays(w, key2, 'after rotation', 2);
  p.ws.receive({ type: 'message', message: w.backend.messageJson('c1', m) });
  await until(() => p.client.messages('c1')[0]?.e2ee?.state === 'waiting', 'waiting');
  assert.equal(p.client.messages('c1')[0].content, '');
  assert.equal(p.client.waitingForKeys('c1'), 1);
  await until(() => w.server.requests.length === 1, 'a key request');
  // More waiting messages do not ask again within the interval.
  const m2 = await bobSays(w, key2, 'another', 2);
  p.ws.receive({ type: 'message', message: w.backend.messageJson('c1', m2) });
  await w.clock.advance(6000);
  await until(() => p.client.messages('c1')[1]?.e2ee?.state === 'waiting', 'second waits');
  await settle();
  assert.equal(w.server.requests.length, 1, 'one request per 30 s');
  // Bob's client answers: wraps version 2 for my device, the server says so.
  await w.server.storeKey('c1', 2, key2, w.bob, [myDevice(w)]);
  p.ws.receive({ type: 'key_shared', conversation_id: 'c1', key_version: 2, rotated: false, from_user_id: 'u-b', from_device_id: w.bob.id, device_ids: [myDevice(w).id] });
  await until(() => p.client.messages('c1').map((x) => x.content).join('|') === 'after rotation|another', 'decrypted when the key came');
  assert.equal(p.client.waitingForKeys('c1'), 0);
});

test('a key request from another device of a member is answered for that device only', async () => {
  const w = await world();
  const key = await bobMakesKey(w);
  const p = await connect(w);
  await until(() => p.client.conversation('c1').key_held, 'key held');
  const bobLaptopKeys = await generateDeviceKeys();
  const laptop = { ...w.server.addDevice('u-b', bobLaptopKeys.publicRaw, 'Bob laptop'), ...bobLaptopKeys };
  const frame = { type: 'key_request', conversation_id: 'c1', user_id: 'u-b', device_id: laptop.id, key_version: 1 };
  p.ws.receive(frame);
  await until(() => w.server.puts.length === 1, 'answered');
  const put = w.server.puts[0];
  assert.equal(put.version, 1);
  assert.deepEqual(put.body.wrapped.map((x) => x.device_id), [laptop.id]);
  const got = await unwrapKey({ wrapped: put.body.wrapped[0].wrapped_key, conversationId: 'c1', version: 1, toPrivateKey: laptop.privateKey, fromPublicRaw: myDevice(w).public_key });
  assert.equal(await exportConversationKey(got), await exportConversationKey(key));
  // The same request again at once is not answered twice; a version we lack is not answered.
  p.ws.receive(frame);
  p.ws.receive({ ...frame, key_version: 9 });
  await settle();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(w.server.puts.length, 1);
});

test('rotation_needed: a new version for the current members only, the removed member left out; a race stops cleanly', async () => {
  const w = await world({ type: 'group', members: ['u-me', 'u-b', 'u-c'] });
  const carolKeys = await generateDeviceKeys();
  const carol = w.server.addDevice('u-c', carolKeys.publicRaw, 'Carol');
  await bobMakesKey(w);
  const p = await connect(w);
  await until(() => p.client.conversation('c1').key_held, 'key held');
  // Carol is removed: the server flags the rotation; the first PUT loses a race (422) once.
  const conv = w.backend.convs.get('c1').conv;
  conv.participants = conv.participants.filter((x) => x.user_id !== 'u-c');
  conv.rotation_needed = true;
  w.server.failNextPut = 422;
  p.ws.receive({ type: 'conversation', event: 'member_removed', user_id: 'u-c', conversation: w.backend._conversationJson(w.backend.convs.get('c1')) });
  await until(() => w.backend.calls.some((c) => c.path.startsWith('/conversations/c1/keys?')) && w.clock.pendingTimers > 0, 'waiting its turn');
  await w.clock.advance(3000);
  await until(() => conv.key_version === 2, 'rotated to version 2');
  const ok = w.server.puts.filter((x) => x.version === 2);
  assert.ok(ok.length <= 3, `a few attempts, not a loop: ${ok.length}`);
  const last = ok[ok.length - 1];
  const ids = last.body.wrapped.map((x) => x.device_id).sort();
  assert.deepEqual(ids, [w.bob.id, myDevice(w).id].sort());
  assert.ok(!ids.includes(carol.id), 'the removed member gets no new key');
  // A message sent now uses version 2.
  p.client.send('c1', 'after carol');
  await until(() => p.ws.framesOfType('message').length === 1, 'sent');
  assert.equal(JSON.parse(p.ws.framesOfType('message')[0].content).kid, 2);
  // Refused for good (every attempt 422): a bounded number of tries, then it stops.
  conv.rotation_needed = true;
  const always = w.backend.override;
  w.backend.override = (method, path, body) => (method === 'PUT' && path.includes('/keys/') ? { status: 422, body: { error: { code: 'validation_failed', message: 'no' } } } : always(method, path, body));
  p.ws.receive({ type: 'conversation', event: 'member_removed', user_id: 'u-x', conversation: w.backend._conversationJson(w.backend.convs.get('c1')) });
  await new Promise((r) => setTimeout(r, 100));
  await w.clock.advance(3000);
  await new Promise((r) => setTimeout(r, 300));
  await settle();
  const putCalls = w.backend.calls.filter((c) => c.method === 'PUT' && c.path.includes('/keys/3')).length;
  assert.ok(putCalls <= 3, `at most 3 attempts, got ${putCalls}`);
});

test('key backup round trip: a new browser restores the keys and reads the history; a wrong passphrase is a clear error', async () => {
  const w = await world();
  const key = await bobMakesKey(w);
  await bobSays(w, key, 'old history');
  const p = await connect(w);
  await until(() => p.client.messages('c1')[0]?.content === 'old history', 'read');
  assert.equal(await p.client.hasKeyBackup(), false);
  assert.equal(await p.client.createKeyBackup('correct horse battery staple'), 1);
  assert.equal(await p.client.hasKeyBackup(), true);
  assert.ok(!JSON.stringify(w.server.backup).includes(await exportConversationKey(key)));
  p.client.stop();

  // A new browser: its own IndexedDB and storage, a new device (no key wrapped for it).
  w.server.grants = [];
  const fresh = await connect(w, { idb: new FakeIndexedDB(), storage: new MemoryStorage() });
  await until(() => fresh.client.messages('c1')[0]?.e2ee?.state === 'waiting', 'waiting on the new browser');
  await assert.rejects(fresh.client.restoreKeyBackup('wrong passphrase'), (err) => err instanceof DecryptError && err.code === 'bad_passphrase');
  const restored = await fresh.client.restoreKeyBackup('correct horse battery staple');
  assert.deepEqual(restored, { imported: 1, conversations: ['c1'] });
  await until(() => fresh.client.messages('c1')[0]?.content === 'old history', 'decrypted after the restore');
});

test('the message cache holds envelopes, never the text of an encrypted conversation; a reload decrypts them again', async () => {
  const w = await world();
  const key = await bobMakesKey(w);
  await bobSays(w, key, `cached ${MARKER}`);
  const p = await connect(w);
  await until(() => p.client.messages('c1')[0]?.content === `cached ${MARKER}`, 'read');
  const reply = p.client.reply('c1', p.client.messages('c1')[0].id, `answer ${MARKER}`);
  await until(() => p.ws.framesOfType('message').length === 1, 'sent');
  ackAll(p.ws, w.backend);
  await until(() => p.client.messages('c1').some((m) => m.temp_id === reply.temp_id && !m.local), 'acked');
  await w.clock.advance(5000); // the cache's write delay
  await until(() => w.idb.rows('chat.cache.u-me', 'messages')?.length || w.idb.rows('chat.cache.u-me', 'threads')?.length, 'the cache written');
  const dump = JSON.stringify([...w.idb.dbs.keys()].filter((n) => n.startsWith('chat.cache.')).map((n) => [...w.idb.dbs.get(n).stores.keys()].map((s) => w.idb.rows(n, s))));
  assert.ok(!dump.includes(MARKER), 'no plaintext in the cache');
  assert.ok(dump.includes('kid') && dump.includes('Encrypted message'), 'the envelopes (and the server\'s quote) are there');
  p.client.stop();
  // A reload with the server down: the cached envelopes decrypt with the stored key.
  w.backend.down = true;
  const again = page(w);
  again.client.start();
  await until(() => again.client.messages('c1').length === 0 || true, 'started');
  await again.client.openConversation('c1').catch(() => {});
  await until(() => again.client.messages('c1')[0]?.content === `cached ${MARKER}`, 'decrypted from the cache');
});

test('sign-out deletes the key store', async () => {
  const w = await world();
  const p = await connect(w);
  assert.ok(w.idb.dbs.has('chat.keys.u-me'));
  await p.client.logout();
  assert.equal(w.idb.dbs.has('chat.keys.u-me'), false);
});
