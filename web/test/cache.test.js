// The local cache (web/sdk/cache.js) through the ChatClient, on the in-memory IndexedDB of
// fake-indexeddb.js: a "reload" is a new ChatClient over the same storage and the same IndexedDB.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../sdk/chat-client.js';
import { CACHE_SCHEMA_VERSION, cacheDatabaseName } from '../sdk/cache.js';
import { FakeBackend, FakeClock, FakeDocument, MemoryStorage, makeFakeWebSocket, settle } from './fakes.js';
import { FakeIndexedDB } from './fake-indexeddb.js';

const DB = cacheDatabaseName('u-me');

/** One page of the app: a ChatClient over shared storage, IndexedDB, backend and clock. */
function page(world, { cacheLimit, indexedDB = world.idb, fetch = world.backend.fetch } = {}) {
  const WS = makeFakeWebSocket(world.clock);
  const window = new FakeDocument();
  const warnings = [];
  let n = 0;
  const client = new ChatClient({
    baseUrl: 'http://chat.test',
    fetch,
    WebSocket: WS,
    storage: world.storage,
    indexedDB,
    cacheLimit,
    clock: world.clock,
    document: new FakeDocument(),
    window,
    locks: null,
    randomUUID: () => `tmp-${world.tag}-${++n}`,
    logger: { warn: (...a) => warnings.push(a.map(String).join(' ')), debug() {}, error() {} },
  });
  world.tag++;
  return { client, WS, window, warnings };
}

function world({ convs = ['c1'] } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  for (const id of convs) backend.addConversation(id);
  return { clock, backend, storage: new MemoryStorage(), idb: new FakeIndexedDB(), tag: 1 };
}

/** Everything in flight (fetches, IndexedDB steps) done. */
async function idle() {
  for (let i = 0; i < 4; i++) await settle();
}

function snapshotOf(backend) {
  return [...backend.convs.values()].map((c) => ({ conversation_id: c.conv.id, last_seq: c.conv.last_seq, unread_count: 0, delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 }));
}

/** The socket accepted with a hello; the test then plays the server. */
async function hello(p, backend) {
  const ws = p.WS.last();
  ws.autoPong = true;
  ws.hello({ conversations: snapshotOf(backend) });
  await idle();
  return ws;
}

/** Acknowledge every `message` frame the way the server does: stored once per temp_id, then `message_sent`. */
function ackAll(ws, backend) {
  for (const f of ws.framesOfType('message').slice(ws.acked ?? 0)) {
    const c = backend.convs.get(f.conversation_id);
    const m = c.messages.find((x) => x.temp_id === f.temp_id) ?? backend.addMessage(f.conversation_id, 'u-me', f.content, f.temp_id);
    ws.receive({ type: 'message_sent', conversation_id: m.conversation_id, message_id: m.id, temp_id: f.temp_id, seq: m.seq, created_at: m.created_at });
  }
  ws.acked = ws.framesOfType('message').length;
}

/** A first page: signed in, list loaded, connected, c1 open with what the server holds; the cache written. */
async function firstVisit(w, opts = {}) {
  const p = page(w, opts);
  await p.client.login({ email: 'me@example.com', password: 'pw' });
  const started = p.client.start();
  await idle();
  await started;
  const ws = await hello(p, w.backend);
  await p.client.openConversation('c1');
  await idle();
  return { ...p, ws };
}

/** Let the cache's gathering window pass, so what changed is written. */
async function written(w) {
  await w.clock.advance(300);
  await idle();
}

const contents = (client, id = 'c1') => client.messages(id).map((m) => m.content);

test('a reload with the server down shows the cached list, participants and messages at once', async () => {
  const w = world({ convs: ['c1', 'g1'] });
  w.backend.addUser('u-bob', 'Bob Stone');
  w.backend.convs.delete('c1');
  w.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  w.backend.addConversation('g1', { type: 'group', title: 'Climbing', members: ['u-me', 'u-bob', 'u-cat'] });
  for (const text of ['hi', 'how are you?', 'see you at 8']) w.backend.addMessage('c1', 'u-bob', text);
  w.backend.addMessage('g1', 'u-cat', 'rope is packed');
  const first = await firstVisit(w);
  first.ws.receive({ type: 'message', message: w.backend.addMessage('c1', 'u-bob', 'live before the reload') });
  await written(w);
  assert.equal(w.idb.dbs.get(DB)?.version, CACHE_SCHEMA_VERSION, 'one database for the user, at the schema version');
  assert.deepEqual(w.idb.dbs.get(DB) && [...w.idb.dbs.get(DB).stores.keys()].sort(), ['conversations', 'threads']);
  first.client.stop();

  // Reload: nothing answers.
  w.backend.down = true;
  const again = page(w);
  const listEvents = [];
  again.client.on('conversations', () => listEvents.push(again.client.conversations().map((v) => v.id)));
  const started = again.client.start();
  await idle();
  await started; // resolves although the server never answered
  const views = again.client.conversations();
  assert.deepEqual(views.map((v) => v.name).sort(), ['Bob Stone', 'Climbing']);
  const g1 = again.client.conversation('g1');
  assert.deepEqual(g1.participants.map((p) => p.user_id).sort(), ['u-bob', 'u-cat', 'u-me']);
  assert.equal(again.client.conversation('c1').last_message.content, 'live before the reload');
  assert.equal(again.client.userInfo('u-bob').display_name, 'Bob Stone');
  assert.equal(listEvents.length > 0 && listEvents[0].length, 2, 'the first list shown already has both');

  await again.client.openConversation('c1'); // does not throw without a server
  assert.equal(again.client.isLoaded('c1'), true);
  assert.deepEqual(contents(again.client), ['hi', 'how are you?', 'see you at 8', 'live before the reload']);
  assert.equal(again.client.hasOlder('c1'), false, 'the whole (short) history is cached');
  assert.ok(
    w.backend.calls.some((c) => c.path.startsWith('/conversations?')),
    'the server was asked (and did not answer)',
  );
});

test('the cache keeps a bounded window of the newest messages; older ones page in from the server', async () => {
  const w = world();
  for (let i = 1; i <= 12; i++) w.backend.addMessage('c1', 'u-b', `m${i}`);
  const first = await firstVisit(w, { cacheLimit: 5 });
  assert.equal(contents(first.client).length, 12);
  await written(w);
  const row = w.idb.rows(DB, 'threads')[0];
  assert.deepEqual(row.messages.map((m) => m.seq), [8, 9, 10, 11, 12]);
  assert.equal(row.cursor, 12);
  assert.equal(row.reachedStart, false);
  assert.equal(row.messages.some((m) => 'key' in m), false, 'stored as the server sent them');
  first.client.stop();

  w.backend.down = true;
  const again = page(w, { cacheLimit: 5 });
  again.client.start();
  await idle();
  await again.client.openConversation('c1');
  assert.deepEqual(contents(again.client), ['m8', 'm9', 'm10', 'm11', 'm12']);
  assert.equal(again.client.hasOlder('c1'), true);

  w.backend.down = false;
  await again.client.loadOlder('c1');
  assert.deepEqual(contents(again.client), Array.from({ length: 12 }, (_, i) => `m${i + 1}`));
  assert.ok(w.backend.calls.some((c) => c.path.includes('before=m-c1-8')), 'paged in before the oldest cached');
  // Still five in the cache, the newest ones.
  await written(w);
  assert.deepEqual(w.idb.rows(DB, 'threads')[0].messages.map((m) => m.seq), [8, 9, 10, 11, 12]);
});

test('reconcile: the server merges into the cached list and window without duplicates or an empty list', async () => {
  const w = world({ convs: ['c1', 'c2'] });
  for (const text of ['one', 'two', 'three']) w.backend.addMessage('c1', 'u-b', text);
  const first = await firstVisit(w);
  await written(w);
  first.client.stop();

  // While the page was closed: two more messages, c2 left on another device, c3 is new, c1 renamed.
  w.backend.addMessage('c1', 'u-b', 'four');
  w.backend.addMessage('c1', 'u-b', 'five');
  w.backend.convs.delete('c2');
  w.backend.addConversation('c3');
  w.backend.convs.get('c1').conv.title = 'Renamed';
  w.backend.calls.length = 0;

  const again = page(w);
  const lists = [];
  again.client.on('conversations', () => lists.push(again.client.conversations().map((v) => v.id)));
  again.client.start();
  const opened = again.client.openConversation('c1');
  await idle();
  await opened;
  assert.deepEqual(contents(again.client), ['one', 'two', 'three', 'four', 'five']);
  assert.equal(new Set(again.client.messages('c1').map((m) => m.id)).size, 5);
  const fetches = w.backend.calls.filter((c) => c.path.startsWith('/conversations/c1/messages'));
  assert.deepEqual(
    fetches.map((c) => c.path),
    ['/conversations/c1/messages?after_seq=3&limit=100'],
    'only what is newer than the cache is fetched',
  );
  assert.deepEqual(again.client.conversations().map((v) => v.id).sort(), ['c1', 'c3']);
  assert.equal(again.client.conversation('c1').title, 'Renamed');
  for (const ids of lists) assert.equal(new Set(ids).size, ids.length, `no conversation twice: ${ids}`);
  assert.ok(lists.length > 0 && lists.every((ids) => ids.length > 0), `the list is never emptied on the way: ${JSON.stringify(lists)}`);

  // hello after that: nothing moved past what we hold, so no sync; live messages still dedupe.
  const ws = await hello(again, w.backend);
  assert.equal(ws.framesOfType('sync').length, 0);
  ws.receive({ type: 'message', message: w.backend.convs.get('c1').messages[4] });
  await idle();
  assert.deepEqual(contents(again.client), ['one', 'two', 'three', 'four', 'five']);

  // The cache follows: c2 is gone from it, c3 is in it, c1's window has all five.
  await written(w);
  assert.deepEqual(w.idb.rows(DB, 'conversations').map((r) => r.id).sort(), ['c1', 'c3']);
  assert.deepEqual(w.idb.rows(DB, 'threads').find((r) => r.id === 'c1').messages.map((m) => m.content), ['one', 'two', 'three', 'four', 'five']);
});

test('a server list slower than the cache updates the cached list in place', async () => {
  const w = world({ convs: ['c1', 'c2'] });
  const first = await firstVisit(w);
  await written(w);
  first.client.stop();
  w.backend.convs.delete('c2');
  w.backend.addConversation('c3');
  w.backend.convs.get('c1').conv.title = 'Renamed';

  // The list request waits until the test lets it through.
  let release = () => {};
  const gate = new Promise((r) => (release = r));
  const slowFetch = async (url, init) => {
    if (/\/conversations\?/.test(url)) await gate;
    return w.backend.fetch(url, init);
  };
  const again = page(w, { fetch: slowFetch });
  const lists = [];
  const removed = [];
  again.client.on('conversations', () => lists.push(again.client.conversations().map((v) => `${v.id}:${v.title ?? ''}`).sort().join(',')));
  again.client.on('removed', ({ conversationId }) => removed.push(conversationId));
  let done = false;
  again.client.start().then(() => (done = true));
  await idle();
  assert.equal(done, false, 'start() waits for the server list');
  assert.deepEqual(lists, ['c1:,c2:'], 'the cached list, shown once');
  release();
  await idle();
  assert.equal(done, true);
  assert.deepEqual(lists.at(-1), 'c1:Renamed,c3:');
  assert.deepEqual(removed, ['c2'], 'left elsewhere: removed, like any conversation the server no longer lists');
  assert.ok(lists.every((l) => l.length > 0), `never empty on the way: ${JSON.stringify(lists)}`);
});

test('hello after a cache-only start syncs from the cached cursor and loads the list', async () => {
  const w = world();
  for (const text of ['one', 'two']) w.backend.addMessage('c1', 'u-b', text);
  const first = await firstVisit(w);
  await written(w);
  first.client.stop();

  w.backend.down = true;
  const again = page(w);
  again.client.start();
  await again.client.openConversation('c1');
  await idle();
  w.backend.addMessage('c1', 'u-b', 'three');
  w.backend.down = false;
  w.backend.calls.length = 0;
  const ws = await hello(again, w.backend);
  assert.deepEqual(ws.framesOfType('sync'), [{ type: 'sync', cursors: { c1: 2 } }]);
  assert.ok(w.backend.calls.some((c) => c.path.startsWith('/conversations?')), 'the list is loaded now that the server answers');
  ws.receive({ type: 'message', message: w.backend.convs.get('c1').messages[2] });
  ws.receive({ type: 'sync_done', conversations: { c1: { last_seq: 3, has_more: false } } });
  await idle();
  assert.deepEqual(contents(again.client), ['one', 'two', 'three']);
});

test('queued messages show as pending in their conversation after a reload and go out exactly once', async () => {
  const w = world({ convs: ['c1', 'c2'] });
  w.backend.addMessage('c1', 'u-b', 'before the outage');
  const first = await firstVisit(w);
  first.ws.serverClose(1006);
  w.backend.down = true;
  for (const text of ['q1', 'q2', 'q3']) first.client.send('c1', text);
  await idle();
  assert.equal(first.ws.framesOfType('message').length, 0, 'nothing went out while offline');
  first.client.stop();

  const again = page(w);
  again.client.start();
  await idle();
  await again.client.openConversation('c1');
  assert.ok(again.client.conversation('c1'), 'its conversation is listed');
  assert.deepEqual(
    again.client.messages('c1').map((m) => [m.content, m.local === true, m.sender_id === 'u-me' ? again.client.receipt(m).status : m.sender_id]),
    [
      ['before the outage', false, 'u-b'],
      ['q1', true, 'sending'],
      ['q2', true, 'sending'],
      ['q3', true, 'sending'],
    ],
  );
  assert.equal(again.client.conversation('c1').last_message.content, 'q3', 'the list shows the newest pending one');
  assert.deepEqual(again.client.messages('c2'), []);

  // The server is back.
  w.backend.down = false;
  await w.clock.advance(1000);
  const ws = await hello(again, w.backend);
  const out = ws.framesOfType('message');
  assert.deepEqual(out.map((f) => f.content), ['q1', 'q2', 'q3']);
  assert.equal(new Set(out.map((f) => f.temp_id)).size, 3);
  ackAll(ws, w.backend);
  await idle();
  await w.clock.advance(10_000); // past every resend time
  assert.equal(ws.framesOfType('message').length, 3, 'sent once each');
  assert.deepEqual(contents(again.client), ['before the outage', 'q1', 'q2', 'q3']);
  assert.equal(again.client.messages('c1').some((m) => m.local), false);
  assert.deepEqual(w.backend.convs.get('c1').messages.map((m) => m.content), ['before the outage', 'q1', 'q2', 'q3']);
  assert.equal(w.storage.getItem('chat.outbox.v1.u-me'), null, 'the queue is empty');

  // And the acknowledged ones are cached like any other message.
  await written(w);
  assert.deepEqual(w.idb.rows(DB, 'threads').find((r) => r.id === 'c1').messages.map((m) => m.content), ['before the outage', 'q1', 'q2', 'q3']);
});

test('a queued message the server already had (its ack lost) is not shown twice after a reload', async () => {
  const w = world();
  const first = await firstVisit(w);
  w.backend.down = true;
  first.ws.serverClose(1006);
  first.client.send('c1', 'maybe sent');
  first.client.stop();
  const tempId = JSON.parse(w.storage.getItem('chat.outbox.v1.u-me'))[0].temp_id;
  // It did reach the server before the line went down.
  w.backend.down = false;
  w.backend.addMessage('c1', 'u-me', 'maybe sent', tempId);

  const again = page(w);
  again.client.start();
  await again.client.openConversation('c1');
  await idle();
  const ws = await hello(again, w.backend);
  ackAll(ws, w.backend);
  await idle();
  assert.deepEqual(contents(again.client), ['maybe sent']);
  assert.equal(w.backend.convs.get('c1').messages.length, 1, 'the server deduplicated the resend by temp_id');
});

test('a burst of messages is written in one transaction; a hidden page writes at once', async () => {
  const w = world();
  const first = await firstVisit(w);
  await written(w);
  const before = w.idb.writes;
  for (let i = 1; i <= 60; i++) {
    first.ws.receive({ type: 'message', message: w.backend.addMessage('c1', 'u-b', `burst ${i}`) });
    await settle(); // each frame its own task, as from a real socket
  }
  assert.equal(w.idb.writes, before, 'nothing written during the burst');
  await written(w);
  assert.equal(w.idb.writes, before + 1, 'one transaction for the whole burst');
  assert.equal(w.idb.rows(DB, 'threads')[0].messages.length, 60);
  await written(w);
  assert.equal(w.idb.writes, before + 1, 'nothing rewritten when nothing changed');

  first.ws.receive({ type: 'message', message: w.backend.addMessage('c1', 'u-b', 'just before closing') });
  await settle();
  first.window.dispatch('pagehide');
  await idle();
  assert.equal(w.idb.writes, before + 2, 'pagehide writes without waiting');
  assert.equal(w.idb.rows(DB, 'threads')[0].messages.at(-1).content, 'just before closing');
});

test('signing out deletes the cache; the next visit starts without it', async () => {
  const w = world();
  w.backend.addMessage('c1', 'u-b', 'private');
  const first = await firstVisit(w);
  await written(w);
  assert.ok(w.idb.dbs.has(DB));
  first.ws.receive({ type: 'message', message: w.backend.addMessage('c1', 'u-b', 'pending write') });
  await settle();
  await first.client.logout();
  await idle();
  await w.clock.advance(1000);
  await idle();
  assert.equal(w.idb.dbs.has(DB), false, 'the database is deleted, and not written again');
  assert.equal(w.storage.getItem('chat.cache.users'), null);

  // Signed in again with the server down after it: nothing is shown from before.
  const again = page(w);
  await again.client.login({ email: 'me@example.com', password: 'pw' });
  w.backend.down = true;
  again.client.start();
  await idle();
  assert.deepEqual(again.client.conversations(), []);
});

test('each user has their own cache, and another user signing in clears the previous one', async () => {
  const w = world();
  w.backend.addMessage('c1', 'u-b', 'for me only');
  const first = await firstVisit(w);
  await written(w);
  first.client.stop(); // the session ended without a sign-out (expired, or the tab closed)
  assert.ok(w.idb.dbs.has(DB));

  // Zed signs in on this browser; the server knows nothing of c1 for Zed.
  w.backend.me = { id: 'u-zed', email: 'zed@example.com', display_name: 'Zed', avatar_url: null };
  w.backend.users.set('u-zed', w.backend.me);
  w.backend.convs.clear();
  w.backend.addConversation('z1', { members: ['u-zed', 'u-y'] });
  w.backend.down = false;
  const zed = page(w);
  await zed.client.login({ email: 'zed@example.com', password: 'pw' });
  await idle();
  assert.equal(w.idb.dbs.has(DB), false, "the previous user's cache is deleted");
  // Zed's page with the server down: only Zed's own (empty) cache, never the other user's.
  w.backend.down = true;
  zed.client.start();
  await idle();
  assert.deepEqual(zed.client.conversations(), []);
  w.backend.down = false;
  await zed.client.refreshConversations();
  await written(w);
  assert.deepEqual(w.idb.rows(cacheDatabaseName('u-zed'), 'conversations').map((r) => r.id), ['z1']);
  assert.deepEqual([...w.idb.dbs.keys()].filter((n) => n.startsWith('chat.cache.')), [cacheDatabaseName('u-zed')]);
  // Keys are not a cache: the previous user's key store stays (only their own sign-out deletes it).
  assert.ok(w.idb.dbs.has('chat.keys.u-me'));
});

test('presence is not cached: a reload shows nobody online until the server says so', async () => {
  const w = world();
  const conv = w.backend.convs.get('c1').conv;
  conv.participants[1].status = 'online';
  const first = await firstVisit(w);
  assert.equal(first.client.presence('u-b').status, 'online');
  await written(w);
  first.client.stop();
  assert.equal(
    w.idb.rows(DB, 'conversations')[0].data.participants.some((p) => 'status' in p),
    false,
  );
  w.backend.down = true;
  const again = page(w);
  again.client.start();
  await idle();
  // Not connected: unknown, and nothing is known from before the reload.
  assert.deepEqual(again.client.presence('u-b'), { status: 'unknown', last_seen: null, last_known: null });
});

/** Each way IndexedDB can fail, set up on a fresh fake. */
const FAILURES = {
  'indexedDB.open throws (private mode, sandboxed frame)': (idb) => (idb.failures.throwOnOpen = new DOMException('denied', 'SecurityError')),
  'the open request fails': (idb) => (idb.failures.open = 'UnknownError'),
  'the open is blocked by another tab': (idb) => (idb.failures.blockOpen = true),
  'the open never answers': (idb) => (idb.failures.hangOpen = true),
  'reads fail': (idb) => (idb.failures.read = 'UnknownError'),
  'writes fail (quota)': (idb) => (idb.failures.commit = 'QuotaExceededError'),
  'indexedDB is not an IDBFactory': () => {},
};

for (const [name, arrange] of Object.entries(FAILURES)) {
  test(`without a usable IndexedDB the client works as without a cache: ${name}`, async () => {
    const w = world();
    w.backend.addMessage('c1', 'u-b', 'hello');
    arrange(w.idb);
    const idb = name.startsWith('indexedDB is not') ? { open: 42, deleteDatabase() { throw new Error('no'); } } : w.idb;
    const p = page(w, { indexedDB: idb });
    await p.client.login({ email: 'me@example.com', password: 'pw' });
    let startedDone = false;
    const started = p.client.start().then(() => (startedDone = true));
    await idle();
    if (name === 'the open never answers') await w.clock.advance(3000); // given up by then
    await idle();
    assert.equal(startedDone, true, 'start() resolves');
    await started;
    assert.equal(startedDone, true, 'start() resolves');
    assert.deepEqual(p.client.conversations().map((v) => v.id), ['c1']);
    const ws = await hello(p, w.backend);
    await p.client.openConversation('c1');
    p.client.send('c1', 'still works');
    ackAll(ws, w.backend);
    await idle();
    assert.deepEqual(contents(p.client), ['hello', 'still works']);
    await written(w);
    const writes = w.idb.log.filter((t) => t.mode === 'readwrite').length;
    ws.receive({ type: 'message', message: w.backend.addMessage('c1', 'u-b', 'later') });
    await written(w);
    assert.equal(w.idb.log.filter((t) => t.mode === 'readwrite').length, writes, 'after a failure the cache is left alone');
    assert.ok(p.warnings.some((x) => x.includes('local cache off')), `a warning: ${p.warnings}`);
    await p.client.logout(); // never throws either
  });
}

test('a malformed cached record is skipped, the rest is shown', async () => {
  const w = world({ convs: ['c1', 'c2'] });
  const first = await firstVisit(w);
  await written(w);
  first.client.stop();
  const store = w.idb.dbs.get(DB).stores.get('conversations').data;
  store.set('bad', { id: 'bad', data: 'not an object' });
  store.set('c2', { ...store.get('c2'), data: { ...store.get('c2').data, participants: 'nope' } });
  w.backend.down = true;
  const again = page(w);
  again.client.start();
  await idle();
  assert.deepEqual(again.client.conversations().map((v) => v.id).sort(), ['c1', 'c2']);
});

test('new ChatClient({ indexedDB: null }) has no cache', async () => {
  const w = world();
  const first = page(w, { indexedDB: null });
  await first.client.login({ email: 'me@example.com', password: 'pw' });
  first.client.start();
  await idle();
  await written(w);
  first.client.stop();
  assert.equal(w.idb.dbs.size, 0);
  assert.equal(w.idb.log.length, 0);
});
