// The message lifecycle through the ChatClient: edits, deletions, reactions and replies (REST
// calls, optimistic and rolled back when refused), change events applied by change_seq, `me`
// kept across live frames, and the change cursor persisted and sent in `sync`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../sdk/chat-client.js';
import { FakeBackend, FakeClock, FakeDocument, MemoryStorage, makeFakeWebSocket, settle } from './fakes.js';
import { FakeIndexedDB } from './fake-indexeddb.js';

function makeClient(w) {
  const WS = makeFakeWebSocket(w.clock);
  let n = 0;
  const client = new ChatClient({
    baseUrl: 'http://chat.test',
    fetch: w.backend.fetch,
    WebSocket: WS,
    storage: w.storage,
    indexedDB: w.idb ?? null,
    clock: w.clock,
    document: new FakeDocument(),
    window: new FakeDocument(),
    locks: null,
    randomUUID: () => `tmp-${w.tag++}-${++n}`,
    logger: { warn() {}, debug() {}, error() {} },
  });
  return { client, WS };
}

async function idle() {
  for (let i = 0; i < 4; i++) await settle();
}

function snapshot(backend) {
  return [...backend.convs.values()].map((c) => ({ conversation_id: c.conv.id, last_seq: c.conv.last_seq, last_change: c.changeSeq, unread_count: 0, delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 }));
}

/** A signed-in client, connected, with c1 (me and B, three messages) open. */
async function setup({ idb = null, type = 'direct', role } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  const w = { clock, backend, storage: new MemoryStorage(), idb, tag: 1 };
  backend.addConversation('c1', { type, members: ['u-me', 'u-b', 'u-c'].slice(0, type === 'group' ? 3 : 2) });
  if (role) backend.convs.get('c1').conv.participants[0].role = role;
  backend.addMessage('c1', 'u-b', 'hello');
  backend.addMessage('c1', 'u-me', 'hi there');
  backend.addMessage('c1', 'u-b', 'how are you?');
  const p = makeClient(w);
  await p.client.login({ email: 'me@example.com', password: 'pw' });
  const ws = await start(p, backend);
  await p.client.openConversation('c1');
  await idle();
  const events = [];
  p.client.on('message_changed', (e) => events.push(e));
  p.client.on('change_failed', (e) => events.push({ failed: true, ...e }));
  return { ...w, ...p, ws, events };
}

async function start(p, backend) {
  p.client.start();
  await idle();
  const ws = p.WS.last();
  ws.autoPong = true;
  ws.hello({ conversations: snapshot(backend) });
  await idle();
  return ws;
}

const held = (client, id) => client.message('c1', id);

test('edit: shown at once, PATCHed, the server copy (change_seq) kept', async () => {
  const ctx = await setup();
  const p = ctx.client.edit('c1', 'm-c1-2', 'hi, edited');
  assert.equal(held(ctx.client, 'm-c1-2').content, 'hi, edited', 'optimistic');
  assert.ok(held(ctx.client, 'm-c1-2').edited_at);
  const m = await p;
  assert.equal(m.change_seq, 1);
  const call = ctx.backend.callsTo('PATCH', '/conversations/c1/messages/m-c1-2')[0];
  assert.deepEqual(call.body, { content: 'hi, edited' });
  assert.ok(ctx.events.some((e) => e.kind === 'edit' && e.local === true));
  assert.ok(ctx.events.some((e) => e.kind === 'edit' && e.local === false));
  // The same text again: nothing to send.
  await ctx.client.edit('c1', 'm-c1-2', 'hi, edited');
  assert.equal(ctx.backend.callsTo('PATCH', '/conversations/c1/messages/m-c1-2').length, 1);
});

test('a refused edit is rolled back, with change_failed and the error', async () => {
  const ctx = await setup();
  ctx.backend.editWindowMs = 0;
  ctx.clock._now += 1000;
  const p = ctx.client.edit('c1', 'm-c1-2', 'too late');
  assert.equal(held(ctx.client, 'm-c1-2').content, 'too late');
  await assert.rejects(p, (err) => err.status === 409 && err.code === 'edit_window_closed');
  assert.equal(held(ctx.client, 'm-c1-2').content, 'hi there');
  assert.equal(held(ctx.client, 'm-c1-2').edited_at, null);
  const failed = ctx.events.find((e) => e.failed);
  assert.equal(failed.kind, 'edit');
  assert.equal(failed.error.code, 'edit_window_closed');
  // Blank content never leaves the client.
  await assert.rejects(ctx.client.edit('c1', 'm-c1-2', '   '), RangeError);
});

test('canEdit and canDelete: own within the window; delete by a group admin', async () => {
  const ctx = await setup();
  const c = ctx.client;
  assert.equal(c.canEdit(held(c, 'm-c1-2')), true);
  assert.equal(c.canEdit(held(c, 'm-c1-1')), false, 'not mine');
  assert.equal(c.canDelete(held(c, 'm-c1-1')), false, 'not mine, direct');
  ctx.clock._now += 48 * 3600_000 + 1;
  assert.equal(c.canEdit(held(c, 'm-c1-2')), false, 'past the edit window');
  const g = await setup({ type: 'group', role: 'admin' });
  assert.equal(g.client.canDelete(held(g.client, 'm-c1-1')), true, 'admin deletes anyone in a group');
  const g2 = await setup({ type: 'group', role: 'member' });
  assert.equal(g2.client.canDelete(held(g2.client, 'm-c1-1')), false);
});

test('delete: a tombstone at once, the quotes of its replies follow; refused: rolled back', async () => {
  const ctx = await setup();
  const c = ctx.client;
  const reply = c.reply('c1', 'm-c1-2', 'replying to myself');
  assert.equal(reply.reply_to, 'm-c1-2');
  assert.deepEqual(reply.reply_preview, { id: 'm-c1-2', sender_id: 'u-me', content: 'hi there', deleted: false });
  const frame = ctx.ws.framesOfType('message').at(-1);
  assert.equal(frame.reply_to, 'm-c1-2', 'sent with reply_to');
  const stored = ctx.backend.addMessage('c1', 'u-me', frame.content, frame.temp_id, frame.reply_to);
  ctx.ws.receive({ type: 'message_sent', conversation_id: 'c1', message_id: stored.id, temp_id: frame.temp_id, seq: stored.seq, created_at: stored.created_at });
  await idle();
  const acked = held(c, stored.id);
  assert.equal(acked.reply_to, 'm-c1-2');
  assert.equal(acked.reply_preview.content, 'hi there');

  const p = c.delete('c1', 'm-c1-2');
  assert.ok(held(c, 'm-c1-2').deleted_at);
  assert.equal(held(c, 'm-c1-2').content, '');
  assert.equal(acked.reply_preview.deleted, true);
  const tomb = await p;
  assert.equal(tomb.deleted_by, 'u-me');
  assert.equal(ctx.backend.callsTo('DELETE', '/conversations/c1/messages/m-c1-2').length, 1);

  // Someone else's message in a 1:1: refused (403), put back as it was.
  const q = c.delete('c1', 'm-c1-1');
  assert.ok(held(c, 'm-c1-1').deleted_at);
  await assert.rejects(q, (err) => err.status === 403);
  assert.equal(held(c, 'm-c1-1').deleted_at, null);
  assert.equal(held(c, 'm-c1-1').content, 'hello');
});

test('react: toggles optimistically, PUT then DELETE with the emoji encoded; a refusal rolls back', async () => {
  const ctx = await setup();
  const c = ctx.client;
  const p = c.react('c1', 'm-c1-1', '👍');
  assert.deepEqual(held(c, 'm-c1-1').reactions, [{ emoji: '👍', count: 1, user_ids: ['u-me'], me: true }]);
  await p;
  assert.equal(ctx.backend.callsTo('PUT', `/conversations/c1/messages/m-c1-1/reactions/${encodeURIComponent('👍')}`).length, 1);
  assert.equal(held(c, 'm-c1-1').change_seq, 1);
  await c.react('c1', 'm-c1-1', '👍');
  assert.equal(ctx.backend.callsTo('DELETE', `/conversations/c1/messages/m-c1-1/reactions/${encodeURIComponent('👍')}`).length, 1);
  assert.deepEqual(held(c, 'm-c1-1').reactions, []);

  ctx.backend.down = true;
  const q = c.react('c1', 'm-c1-1', '❤️');
  assert.equal(held(c, 'm-c1-1').reactions[0].me, true);
  await assert.rejects(q, (err) => err.status === 0);
  assert.deepEqual(held(c, 'm-c1-1').reactions, []);
  assert.equal(ctx.events.filter((e) => e.failed && e.kind === 'reaction').length, 1);
});

test('change events are applied once, by change_seq: older or repeated ones are ignored', async () => {
  const ctx = await setup();
  const c = ctx.client;
  const edit1 = ctx.backend.editMessage('c1', 'm-c1-1', 'hello (1)');
  const edit2 = ctx.backend.editMessage('c1', 'm-c1-1', 'hello (2)');
  ctx.ws.receive(edit2);
  ctx.ws.receive(edit1); // late and older: ignored
  ctx.ws.receive(edit2); // again: nothing changes
  await idle();
  assert.equal(held(c, 'm-c1-1').content, 'hello (2)');
  assert.equal(held(c, 'm-c1-1').change_seq, 2);
  assert.equal(ctx.events.filter((e) => e.kind === 'edit').length, 1);
  // An older REST copy does not win either.
  const stale = { ...ctx.backend.messageJson('c1', ctx.backend.convs.get('c1').messages[0]), content: 'stale', change_seq: 1 };
  c._ingest(stale, false);
  assert.equal(held(c, 'm-c1-1').content, 'hello (2)');

  const del = ctx.backend.deleteMessage('c1', 'm-c1-3', 'u-b');
  ctx.ws.receive(del);
  ctx.ws.receive({ ...edit2, change_seq: 2, message: { ...edit2.message, message_id: 'm-c1-3' } });
  await idle();
  assert.ok(held(c, 'm-c1-3').deleted_at);
  assert.equal(held(c, 'm-c1-3').deleted_by, 'u-b');
  // Unread counts do not move on changes.
  assert.equal(c.conversation('c1').unread_count, 0);
  // A change to a message we do not hold adds nothing.
  const before = c.messages('c1').length;
  ctx.ws.receive({ type: 'message_updated', conversation_id: 'c1', message: { ...edit2.message, id: 'm-elsewhere', seq: 99 }, change_seq: 9 });
  await idle();
  assert.equal(c.messages('c1').length, before);
  assert.equal(ctx.client._convs.get('c1').lastChange, 9);
});

test('reactions: `me` is kept across live frames (which carry none) and set by our own frames', async () => {
  const ctx = await setup();
  const c = ctx.client;
  await c.react('c1', 'm-c1-1', '😂');
  assert.equal(held(c, 'm-c1-1').reactions[0].me, true);
  // Another member adds the same emoji: the frame has no `me`; ours stays.
  const f1 = ctx.backend.react('c1', 'm-c1-1', 'u-b', '😂', true);
  assert.equal(f1.reactions[0].me, undefined);
  ctx.ws.receive(f1);
  await idle();
  assert.deepEqual(held(c, 'm-c1-1').reactions, [{ emoji: '😂', count: 2, user_ids: ['u-me', 'u-b'], me: true }]);
  // Our own frame (another device) removing it.
  const f2 = ctx.backend.react('c1', 'm-c1-1', 'u-me', '😂', false);
  ctx.ws.receive(f2);
  await idle();
  assert.deepEqual(held(c, 'm-c1-1').reactions, [{ emoji: '😂', count: 1, user_ids: ['u-b'], me: false }]);
  // Over ten reactors, the ids are cut: `me` comes from what we knew.
  const m = ctx.backend.convs.get('c1').messages[0];
  await c.react('c1', 'm-c1-1', '🙏');
  for (let i = 0; i < 11; i++) m.reactors.get('🙏') ?? m.reactors.set('🙏', []);
  m.reactors.set('🙏', ['u-me', ...Array.from({ length: 11 }, (_, i) => `u-x${i}`)].slice(0, 12));
  const f3 = ctx.backend.react('c1', 'm-c1-1', 'u-b', '🙏', true);
  assert.equal(f3.reactions.find((r) => r.emoji === '🙏').user_ids.length, 10);
  ctx.ws.receive(f3);
  await idle();
  const pray = held(c, 'm-c1-1').reactions.find((r) => r.emoji === '🙏');
  assert.equal(pray.count, 13);
  assert.equal(pray.me, true);
});

test('a live message_deleted marks the quotes of replies as deleted', async () => {
  const ctx = await setup();
  const r = ctx.backend.addMessage('c1', 'u-b', 'answering', null, 'm-c1-2');
  ctx.ws.receive({ type: 'message', message: ctx.backend.messageJson('c1', r) });
  await idle();
  assert.deepEqual(held(ctx.client, r.id).reply_preview, { id: 'm-c1-2', sender_id: 'u-me', content: 'hi there', deleted: false });
  ctx.ws.receive(ctx.backend.editMessage('c1', 'm-c1-2', 'hi there, edited'));
  await idle();
  assert.equal(held(ctx.client, r.id).reply_preview.content, 'hi there, edited');
  ctx.ws.receive(ctx.backend.deleteMessage('c1', 'm-c1-2', 'u-me'));
  await idle();
  assert.deepEqual(held(ctx.client, r.id).reply_preview, { id: 'm-c1-2', sender_id: 'u-me', content: '', deleted: true });
});

test('lastChange: hello sets it on first load, a reconnect syncs with `changes`, has_more continues, replay applied', async () => {
  const ctx = await setup();
  const c = ctx.client;
  assert.equal(c._convs.get('c1').lastChange, 0);
  ctx.ws.receive(ctx.backend.editMessage('c1', 'm-c1-1', 'live edit'));
  await idle();
  assert.equal(c._convs.get('c1').lastChange, 1);
  // Away: two changes and a reaction happen.
  ctx.ws.serverClose(1006);
  ctx.backend.editMessage('c1', 'm-c1-2', 'edited while away');
  ctx.backend.deleteMessage('c1', 'm-c1-3', 'u-b');
  ctx.backend.react('c1', 'm-c1-1', 'u-b', '👍', true);
  await ctx.clock.advance(1000);
  const ws2 = ctx.WS.last();
  ws2.autoPong = true;
  ws2.hello({ conversations: snapshot(ctx.backend) });
  await idle();
  assert.deepEqual(ws2.framesOfType('sync'), [{ type: 'sync', cursors: { c1: 3 }, changes: { c1: 1 } }]);
  // The server replays in change order, in two pages.
  const replay = ctx.backend.changesAfter('c1', 1);
  assert.deepEqual(replay.map((f) => f.type), ['message_updated', 'message_deleted', 'message_updated']);
  ws2.receive(replay[0]);
  ws2.receive({ type: 'sync_done', conversations: { c1: { last_seq: 3, has_more: true, last_change: 2, delivered_seq: 3, read_seq: 3, peer_delivered_seq: 0, peer_read_seq: 0 } } });
  await idle();
  assert.deepEqual(ws2.framesOfType('sync').at(-1), { type: 'sync', cursors: { c1: 3 }, changes: { c1: 2 } });
  ws2.receive(replay[1]);
  ws2.receive(replay[2]);
  ws2.receive({ type: 'sync_done', conversations: { c1: { last_seq: 3, has_more: false, last_change: 4, delivered_seq: 3, read_seq: 3, peer_delivered_seq: 0, peer_read_seq: 0 } } });
  await idle();
  assert.equal(ws2.framesOfType('sync').length, 2);
  assert.equal(held(c, 'm-c1-2').content, 'edited while away');
  assert.ok(held(c, 'm-c1-3').deleted_at);
  assert.deepEqual(held(c, 'm-c1-1').reactions, [{ emoji: '👍', count: 1, user_ids: ['u-b'], me: false }]);
  assert.equal(c._convs.get('c1').lastChange, 4);
  assert.equal(c.conversation('c1').unread_count, 0);
});

test('lastChange is persisted in the cache: after a reload the sync starts from it, and cached messages get the changes', async () => {
  const idb = new FakeIndexedDB();
  const ctx = await setup({ idb });
  ctx.ws.receive(ctx.backend.editMessage('c1', 'm-c1-1', 'edit one'));
  await ctx.clock.advance(1000);
  await idle();
  ctx.client.stop();
  // Changes while the page was closed.
  ctx.backend.editMessage('c1', 'm-c1-2', 'edit two');
  const p = makeClient(ctx);
  const ws = await start(p, ctx.backend);
  assert.deepEqual(ws.framesOfType('sync'), [{ type: 'sync', cursors: { c1: 3 }, changes: { c1: 1 } }]);
  // The replay reaches the cached copy even before the conversation is opened.
  for (const f of ctx.backend.changesAfter('c1', 1)) ws.receive(f);
  ws.receive({ type: 'sync_done', conversations: { c1: { last_seq: 3, has_more: false, last_change: 2, delivered_seq: 3, read_seq: 3, peer_delivered_seq: 0, peer_read_seq: 0 } } });
  await idle();
  assert.equal(p.client.message('c1', 'm-c1-2').content, 'edit two');
  assert.equal(p.client.message('c1', 'm-c1-1').content, 'edit one', 'the cached copy had the first edit');
  await p.client.openConversation('c1');
  await idle();
  assert.equal(p.client.messages('c1').find((m) => m.id === 'm-c1-2').content, 'edit two');
});

test('loadAround: the original of a reply far up is loaded with everything between', async () => {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  backend.addConversation('c1');
  for (let i = 1; i <= 300; i++) backend.addMessage('c1', i % 2 ? 'u-b' : 'u-me', `message ${i}`);
  const w = { clock, backend, storage: new MemoryStorage(), idb: null, tag: 1 };
  const p = makeClient(w);
  await p.client.login({ email: 'me@example.com', password: 'pw' });
  await start(p, backend);
  await p.client.openConversation('c1');
  await idle();
  assert.equal(p.client.messages('c1').length, 50);
  const target = await p.client.loadAround('c1', 'm-c1-20');
  assert.equal(target.content, 'message 20');
  assert.equal(backend.callsTo('GET', '/conversations/c1/messages?around=m-c1-20').length, 1);
  const seqs = p.client.messages('c1').map((m) => m.seq);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0] + i), 'contiguous');
  assert.ok(seqs[0] <= 20);
  // Already held: no request.
  await p.client.loadAround('c1', 'm-c1-100');
  assert.equal(backend.callsTo('GET', '/conversations/c1/messages?around').length, 1);
  assert.equal(await p.client.loadAround('c1', 'm-nope'), null);
});

test('polling (no WebSocket): the newest page is merged on each poll, so edits, deletions and reactions show', async () => {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  backend.addConversation('c1');
  backend.addMessage('c1', 'u-b', 'hello');
  backend.addMessage('c1', 'u-b', 'soon gone');
  const client = new ChatClient({
    baseUrl: 'http://chat.test',
    fetch: backend.fetch,
    WebSocket: null,
    storage: new MemoryStorage(),
    indexedDB: null,
    clock,
    document: new FakeDocument(),
    window: new FakeDocument(),
    locks: null,
    randomUUID: () => 'tmp-1',
    logger: { warn() {}, debug() {}, error() {} },
  });
  await client.login({ email: 'me@example.com', password: 'pw' });
  client.start();
  await idle();
  await client.openConversation('c1');
  await clock.advance(6000);
  assert.equal(client.state, 'failed');
  backend.editMessage('c1', 'm-c1-1', 'hello, edited');
  backend.deleteMessage('c1', 'm-c1-2', 'u-b');
  backend.react('c1', 'm-c1-1', 'u-b', '👍', true);
  await clock.advance(6000);
  assert.equal(client.message('c1', 'm-c1-1').content, 'hello, edited');
  assert.deepEqual(client.message('c1', 'm-c1-1').reactions, [{ emoji: '👍', count: 1, user_ids: ['u-b'], me: false }]);
  assert.ok(client.message('c1', 'm-c1-2').deleted_at);
  client.stop();
});

test('a live reaction brings the whole message: an edit this copy missed comes with it', async () => {
  const ctx = await setup();
  const c = ctx.client;
  // An edit made while we did not hear it (its number absorbed), then a reaction we do hear.
  const edit = ctx.backend.editMessage('c1', 'm-c1-1', 'hello, edited meanwhile');
  const reaction = ctx.backend.react('c1', 'm-c1-1', 'u-b', '🎉', true);
  assert.ok(edit.change_seq < reaction.change_seq);
  ctx.ws.receive({ ...reaction, message: { ...edit.message, reactions: reaction.reactions, change_seq: reaction.change_seq } });
  await idle();
  const m = held(c, 'm-c1-1');
  assert.equal(m.content, 'hello, edited meanwhile');
  assert.ok(m.edited_at);
  assert.equal(m.change_seq, reaction.change_seq);
  assert.deepEqual(m.reactions.map((r) => [r.emoji, r.count, r.me]), [['🎉', 1, false]]);
  // The older edit arriving late changes nothing.
  ctx.ws.receive(edit);
  await idle();
  assert.equal(held(c, 'm-c1-1').change_seq, reaction.change_seq);
});
