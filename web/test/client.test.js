// The ChatClient end to end against fakes: an in-memory REST backend, WebSockets driven from the
// test, a fake clock. Every timing rule of seed 001 and seed 004 as the app sees it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../sdk/chat-client.js';
import { FakeBackend, FakeClock, FakeDocument, MemoryStorage, makeFakeWebSocket, settle } from './fakes.js';

async function setup({ storage = new MemoryStorage(), convs = ['c1'], login = true, timings = {}, backend, clock } = {}) {
  clock = clock ?? new FakeClock();
  backend = backend ?? new FakeBackend(clock);
  if (!backend.convs.size) for (const id of convs) backend.addConversation(id);
  const WS = makeFakeWebSocket(clock);
  const document = new FakeDocument();
  let n = 0;
  const client = new ChatClient({
    baseUrl: 'http://chat.test',
    fetch: backend.fetch,
    WebSocket: WS,
    storage,
    clock,
    document,
    window: new FakeDocument(),
    locks: null,
    randomUUID: () => `tmp-${++n}`,
    timings,
    logger: { warn() {}, debug() {}, error() {} },
  });
  const events = [];
  for (const e of ['state', 'message', 'typing', 'removed', 'session_expired']) client.on(e, (p) => events.push({ e, p }));
  if (login) await client.login({ email: 'me@example.com', password: 'pw' });
  return { clock, backend, WS, document, client, storage, events };
}

/** Start and connect: list loaded, socket accepted, hello with the given snapshot. */
async function connect(ctx, snapshot) {
  ctx.client.start();
  await settle();
  const ws = ctx.WS.last();
  ws.autoPong = true;
  ws.hello({ conversations: snapshot ?? [...ctx.backend.convs.values()].map((c) => ({ conversation_id: c.conv.id, last_seq: c.conv.last_seq, unread_count: 0, delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 })) });
  await settle();
  return ws;
}

const live = (backend, convId, sender, content) => ({ type: 'message', message: backend.addMessage(convId, sender, content) });

test('start loads the list, connects with the access token, and needs no sync when nothing moved', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  assert.equal(ctx.client.state, 'connected');
  assert.equal(ws.url, 'ws://chat.test/ws?token=at-1');
  assert.equal(ctx.client.conversations().length, 1);
  assert.equal(ws.framesOfType('sync').length, 0);
});

test('hello drives sync: conversations whose last_seq moved past what we hold are synced from our cursor', async () => {
  const ctx = await setup({ convs: ['c1', 'c2'] });
  ctx.backend.addMessage('c1', 'u-b', 'one');
  ctx.client.start();
  await settle();
  // While we were loading, two more messages landed in c1; c2 did not move.
  ctx.backend.addMessage('c1', 'u-b', 'two');
  ctx.backend.addMessage('c1', 'u-b', 'three');
  const ws = ctx.WS.last();
  ws.hello({ conversations: [
    { conversation_id: 'c1', last_seq: 3, unread_count: 3, delivered_seq: 3, read_seq: 0, peer_delivered_seq: 0, peer_read_seq: 0 },
    { conversation_id: 'c2', last_seq: 0, unread_count: 0, delivered_seq: 0, read_seq: 0, peer_delivered_seq: 0, peer_read_seq: 0 },
  ] });
  await settle();
  assert.deepEqual(ws.framesOfType('sync'), [{ type: 'sync', cursors: { c1: 1 } }]);
  // the server replays, then says there is more: the client follows has_more from its new cursor
  ws.receive({ type: 'message', message: ctx.backend.convs.get('c1').messages[1] });
  ws.receive({ type: 'sync_done', conversations: { c1: { last_seq: 2, has_more: true, delivered_seq: 2, read_seq: 0, peer_delivered_seq: 0, peer_read_seq: 0 } } });
  await settle();
  assert.deepEqual(ws.framesOfType('sync').at(-1), { type: 'sync', cursors: { c1: 2 } });
  ws.receive({ type: 'message', message: ctx.backend.convs.get('c1').messages[2] });
  ws.receive({ type: 'sync_done', conversations: { c1: { last_seq: 3, has_more: false } } });
  await settle();
  assert.equal(ws.framesOfType('sync').length, 2);
  assert.equal(ctx.client.conversation('c1').last_message.content, 'three');
  assert.equal(ctx.client.conversation('c1').unread_count, 3);
});

test('after a reconnect, sync starts from the next expected seq of each conversation', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.receive(live(ctx.backend, 'c1', 'u-b', 'a'));
  ws.receive(live(ctx.backend, 'c1', 'u-b', 'b'));
  ws.serverClose(1006);
  ctx.backend.addMessage('c1', 'u-b', 'missed');
  await ctx.clock.advance(1000);
  const ws2 = ctx.WS.last();
  ws2.hello({ conversations: [{ conversation_id: 'c1', last_seq: 3, unread_count: 3, delivered_seq: 3, read_seq: 0, peer_delivered_seq: 0, peer_read_seq: 0 }] });
  await settle();
  assert.deepEqual(ws2.framesOfType('sync'), [{ type: 'sync', cursors: { c1: 2 } }]);
});

test('a message received twice (live and replayed) is shown once', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  const frame = live(ctx.backend, 'c1', 'u-b', 'Hello!');
  ws.receive(frame);
  ws.receive(frame);
  ws.receive({ type: 'message', message: { ...frame.message } });
  await settle();
  assert.deepEqual(ctx.client.messages('c1').map((m) => m.content), ['Hello!']);
  assert.equal(ctx.events.filter((x) => x.e === 'message').length, 1);
});

test('a jump in seq is a gap: the missing messages are fetched over REST (after_seq)', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.receive(live(ctx.backend, 'c1', 'u-b', '1'));
  ctx.backend.addMessage('c1', 'u-b', '2 (lost)');
  ctx.backend.addMessage('c1', 'u-b', '3 (lost)');
  ws.receive(live(ctx.backend, 'c1', 'u-b', '4'));
  await settle();
  const fetches = ctx.backend.callsTo('GET', '/conversations/c1/messages?after_seq=');
  assert.equal(fetches.length, 1);
  assert.match(fetches[0].path, /after_seq=1&/);
  assert.deepEqual(ctx.client.messages('c1').map((m) => m.seq), [1, 2, 3, 4]);
});

test('sending: shown at once as sending, then sent on message_sent; the echo does not duplicate it', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  const local = ctx.client.send('c1', 'Hello!');
  assert.equal(local.temp_id, 'tmp-1');
  assert.equal(ctx.client.receipt(local).status, 'sending');
  const frame = ws.framesOfType('message')[0];
  assert.deepEqual(frame, { type: 'message', conversation_id: 'c1', content: 'Hello!', content_type: 'text', temp_id: 'tmp-1' });
  const stored = ctx.backend.addMessage('c1', 'u-me', 'Hello!', 'tmp-1');
  ws.receive({ type: 'message_sent', conversation_id: 'c1', message_id: stored.id, temp_id: 'tmp-1', seq: stored.seq, created_at: stored.created_at });
  await settle();
  let msgs = ctx.client.messages('c1');
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0].key, 't:tmp-1', 'same key: the bubble is updated in place');
  assert.equal(ctx.client.receipt(msgs[0]).status, 'sent');
  ws.receive({ type: 'message', message: stored }); // e.g. a second tab of ours
  await settle();
  msgs = ctx.client.messages('c1');
  assert.equal(msgs.length, 1);
  await ctx.clock.advance(30_000);
  assert.equal(ws.framesOfType('message').length, 1, 'no retry after the ack');
});

test('ticks: delivered then read as the other member\'s watermarks move', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.client.send('c1', 'Hello!');
  const stored = ctx.backend.addMessage('c1', 'u-me', 'Hello!', 'tmp-1');
  ws.receive({ type: 'message_sent', conversation_id: 'c1', message_id: stored.id, temp_id: 'tmp-1', seq: 1, created_at: stored.created_at });
  await settle();
  const m = () => ctx.client.messages('c1')[0];
  assert.equal(ctx.client.receipt(m()).status, 'sent');
  ws.receive({ type: 'delivered', conversation_id: 'c1', message_id: stored.id, seq: 1, user_id: 'u-b' });
  assert.equal(ctx.client.receipt(m()).status, 'delivered');
  ws.receive({ type: 'read_receipt', conversation_id: 'c1', message_id: stored.id, seq: 1, read_by: 'u-b', read_at: 'x' });
  assert.equal(ctx.client.receipt(m()).status, 'read');
});

test('groups: "read by k of n" counts the members whose read watermark passed the message', async () => {
  const ctx = await setup({ convs: [] });
  ctx.backend.addConversation('g1', { type: 'group', title: 'Team', members: ['u-me', 'u-b', 'u-c', 'u-d'] });
  const ws = await connect(ctx);
  ctx.client.send('g1', 'standup?');
  const stored = ctx.backend.addMessage('g1', 'u-me', 'standup?', 'tmp-1');
  ws.receive({ type: 'message_sent', conversation_id: 'g1', message_id: stored.id, temp_id: 'tmp-1', seq: 1, created_at: stored.created_at });
  ws.receive({ type: 'read_receipt', conversation_id: 'g1', message_id: stored.id, seq: 1, read_by: 'u-b', read_at: 'x' });
  ws.receive({ type: 'read_receipt', conversation_id: 'g1', message_id: stored.id, seq: 1, read_by: 'u-c', read_at: 'x' });
  await settle();
  const r = ctx.client.receipt(ctx.client.messages('g1')[0]);
  assert.deepEqual({ status: r.status, readBy: r.readBy, of: r.of }, { status: 'sent', readBy: 2, of: 3 });
  ws.receive({ type: 'read_receipt', conversation_id: 'g1', message_id: stored.id, seq: 1, read_by: 'u-d', read_at: 'x' });
  assert.equal(ctx.client.receipt(ctx.client.messages('g1')[0]).status, 'read');
});

test('no ack: resent after 1, 2, 4 s with the same temp_id, then failed; tap to retry sends it again', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  const t0 = ctx.clock.now();
  const sends = [];
  const orig = ws.send.bind(ws);
  ws.send = (d) => {
    const f = JSON.parse(d);
    if (f.type === 'message') sends.push(ctx.clock.now() - t0);
    orig(d);
  };
  const local = ctx.client.send('c1', 'x');
  await ctx.clock.advance(12_000);
  assert.deepEqual(sends, [0, 1000, 3000, 7000]);
  assert.equal(ctx.client.receipt(ctx.client.messages('c1')[0]).status, 'failed');
  ctx.client.retry(local.temp_id);
  assert.equal(sends.length, 5);
  assert.equal(ws.framesOfType('message').at(-1).temp_id, 'tmp-1');
  assert.equal(ctx.client.receipt(ctx.client.messages('c1')[0]).status, 'sending');
});

test('offline queue: written while disconnected, it survives a reload and is flushed once on reconnect', async () => {
  const storage = new MemoryStorage();
  const ctx = await setup({ storage });
  const ws = await connect(ctx);
  ws.serverClose(1006);
  ctx.client.send('c1', 'first');
  ctx.client.send('c1', 'second');
  assert.equal(ws.framesOfType('message').length, 0);
  ctx.client.stop(); // the page is closed

  // reload: a new client on the same storage, same backend
  const again = await setup({ storage, backend: ctx.backend, clock: ctx.clock, login: false });
  assert.equal(again.client.isAuthenticated, true, 'session restored');
  again.client.start();
  await settle();
  assert.deepEqual(again.client.messages('c1').map((m) => [m.content, m.status]), [['first', 'sending'], ['second', 'sending']]);
  const ws2 = again.WS.last();
  ws2.hello({ conversations: [{ conversation_id: 'c1', last_seq: 0, unread_count: 0, delivered_seq: 0, read_seq: 0, peer_delivered_seq: 0, peer_read_seq: 0 }] });
  await settle();
  assert.deepEqual(ws2.framesOfType('message').map((f) => [f.temp_id, f.content]), [['tmp-1', 'first'], ['tmp-2', 'second']]);
  // acks arrive; later reconnects must not send them again
  ws2.receive({ type: 'message_sent', conversation_id: 'c1', message_id: 'm1', temp_id: 'tmp-1', seq: 1, created_at: 'x' });
  ws2.receive({ type: 'message_sent', conversation_id: 'c1', message_id: 'm2', temp_id: 'tmp-2', seq: 2, created_at: 'x' });
  ws2.serverClose(1006);
  await again.clock.advance(1000);
  const ws3 = again.WS.last();
  ws3.hello({ conversations: [{ conversation_id: 'c1', last_seq: 2, unread_count: 0, delivered_seq: 2, read_seq: 2, peer_delivered_seq: 0, peer_read_seq: 0 }] });
  await settle();
  assert.equal(ws3.framesOfType('message').length, 0);
  assert.equal(storage.getItem('chat.outbox.v1.u-me'), null, 'the stored queue is empty');
  assert.deepEqual(again.client.messages('c1').map((m) => m.content), ['first', 'second']);
});

test('a flush after reconnect sends messages whose ack was lost once more with the same temp_id', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.client.send('c1', 'x');
  ws.serverClose(1006); // before any ack
  await ctx.clock.advance(1000);
  const ws2 = ctx.WS.last();
  ws2.hello({ conversations: [] });
  await settle();
  assert.deepEqual(ws2.framesOfType('message').map((f) => f.temp_id), ['tmp-1']);
});

test('giving up on the WebSocket: "failed", then HTTP polling at 5/15/30 s, and sends go over REST', async () => {
  const ctx = await setup({ timings: { failedProbeMs: 0 } });
  const ws = await connect(ctx);
  await ctx.client.openConversation('c1');
  ws.serverClose(1006);
  for (let i = 0; i < 5; i++) {
    const n = ctx.WS.instances.length;
    while (ctx.WS.instances.length === n) await ctx.clock.advance(250);
    if (i === 4) ctx.backend.calls.length = 0;
    ctx.WS.last().fail();
  }
  assert.equal(ctx.client.state, 'failed');
  await ctx.clock.advance(30_000);
  const msgPolls = ctx.backend.callsTo('GET', '/conversations/c1/messages?after_seq=');
  assert.equal(msgPolls.length, 7, 'messages at 0, 5, 10, 15, 20, 25, 30 s');
  assert.equal(ctx.backend.callsTo('GET', '/conversations?page=1').length, 3, 'list at 0, 15, 30 s');
  assert.equal(ctx.backend.callsTo('GET', '/unread').length, 2, 'unread at 0, 30 s');
  // a message from the other side arrives through polling
  ctx.backend.addMessage('c1', 'u-b', 'polled');
  await ctx.clock.advance(5000);
  assert.deepEqual(ctx.client.messages('c1').map((m) => m.content), ['polled']);
  // and sending uses REST with the temp_id
  ctx.client.send('c1', 'over rest');
  await settle();
  const posts = ctx.backend.callsTo('POST', '/conversations/c1/messages');
  assert.deepEqual(posts.map((p) => p.body), [{ content: 'over rest', content_type: 'text', temp_id: 'tmp-1' }]);
  assert.equal(ctx.client.receipt(ctx.client.messages('c1').at(-1)).status, 'sent');
});

test('while connected, polling is only the light 60 s refresh of the list and unread (AC-13, AC-26, AC-27)', async () => {
  const ctx = await setup();
  await connect(ctx);
  await ctx.client.openConversation('c1');
  ctx.backend.calls.length = 0;
  await ctx.clock.advance(59_000);
  assert.equal(ctx.backend.calls.length, 0);
  await ctx.clock.advance(1_000);
  assert.deepEqual(ctx.backend.calls.map((c) => c.path).sort(), ['/conversations?page=1', '/unread']);
  assert.equal(ctx.backend.callsTo('GET', '/conversations/c1/messages').length, 0);
});

test('AC-28: a message arriving in the open, visible conversation is marked read; not when the tab is hidden', async () => {
  const ctx = await setup({ convs: ['c1', 'c2'] });
  const ws = await connect(ctx);
  await ctx.client.openConversation('c1');
  ws.receive(live(ctx.backend, 'c1', 'u-b', 'seen'));
  await ctx.clock.advance(200);
  assert.deepEqual(ws.framesOfType('read'), [{ type: 'read', conversation_id: 'c1', message_id: 'm-c1-1' }]);
  assert.equal(ctx.client.conversation('c1').unread_count, 0);

  ws.receive(live(ctx.backend, 'c2', 'u-b', 'elsewhere'));
  await ctx.clock.advance(200);
  assert.equal(ws.framesOfType('read').length, 1, 'another conversation stays unread');
  assert.equal(ctx.client.conversation('c2').unread_count, 1);

  ctx.document.setVisible(false);
  ws.receive(live(ctx.backend, 'c1', 'u-b', 'while away'));
  await ctx.clock.advance(200);
  assert.equal(ws.framesOfType('read').length, 1);
  assert.equal(ctx.client.conversation('c1').unread_count, 1);
  ctx.document.setVisible(true);
  await ctx.clock.advance(200);
  assert.equal(ws.framesOfType('read').length, 2, 'read once the tab is visible again');
});

test('going to the background tells the server "away", coming back "online"', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.document.setVisible(false);
  ctx.document.setVisible(true);
  assert.deepEqual(ws.framesOfType('presence'), [{ type: 'presence', status: 'away' }, { type: 'presence', status: 'online' }]);
});

test('typing frames show who is typing, hidden after 4 s of silence or when their message arrives', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.receive({ type: 'typing', conversation_id: 'c1', user_id: 'u-b', is_typing: true });
  assert.deepEqual(ctx.client.typingUsers('c1'), ['u-b']);
  await ctx.clock.advance(4000);
  assert.deepEqual(ctx.client.typingUsers('c1'), []);
  ws.receive({ type: 'typing', conversation_id: 'c1', user_id: 'u-b', is_typing: true });
  ws.receive(live(ctx.backend, 'c1', 'u-b', 'done typing'));
  assert.deepEqual(ctx.client.typingUsers('c1'), []);
});

test('our typing: debounced frames, and false at once on send', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.client.typing('c1');
  await ctx.clock.advance(1000);
  ctx.client.typing('c1');
  ctx.client.send('c1', 'hi');
  const typing = ws.framesOfType('typing').map((f) => f.is_typing);
  assert.deepEqual(typing, [true, false]);
  const order = ws.sent.filter((f) => f.type === 'typing' || f.type === 'message').map((f) => f.type);
  assert.deepEqual(order, ['typing', 'typing', 'message'], 'the stop goes out before the message');
});

test('an expired access token is refreshed before connecting', async () => {
  const ctx = await setup();
  ctx.backend.expiresIn = 5; // seconds: less than the minimum validity
  await ctx.client.login({ email: 'me@example.com', password: 'pw' });
  ctx.client.start();
  await settle();
  assert.equal(ctx.backend.callsTo('POST', '/auth/refresh').length, 1);
  assert.match(ctx.WS.last().url, /token=at-3$/);
});

test('close 4001: refresh token, reconnect, sync', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.serverClose(4001);
  await settle();
  assert.equal(ctx.backend.callsTo('POST', '/auth/refresh').length, 1);
  assert.match(ctx.WS.last().url, /token=at-2$/);
  assert.equal(ctx.client.state, 'connecting');
});

test('a refused refresh ends the session: session_expired, nothing keeps running', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.backend.refreshFails = true;
  ws.serverClose(4001);
  await settle();
  assert.equal(ctx.events.filter((x) => x.e === 'session_expired').length, 1);
  assert.equal(ctx.client.isAuthenticated, false);
  await ctx.clock.advance(120_000);
  assert.equal(ctx.WS.instances.length, 1);
  assert.equal(ctx.clock.pendingTimers, 0);
});

test('in-band auth renewal keeps the same socket', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  await ctx.clock.advance(840_000);
  assert.equal(ws.framesOfType('auth').length, 1);
  assert.equal(ws.framesOfType('auth')[0].token, 'at-2');
  assert.equal(ctx.WS.instances.length, 1);
});

test('opening a conversation loads its newest page; scrolling up pages older history with before=', async () => {
  const ctx = await setup();
  for (let i = 1; i <= 120; i++) ctx.backend.addMessage('c1', i % 2 ? 'u-b' : 'u-me', `m${i}`);
  await connect(ctx);
  await ctx.client.openConversation('c1');
  let msgs = ctx.client.messages('c1');
  assert.equal(msgs.length, 50);
  assert.equal(msgs[0].seq, 71);
  assert.equal(ctx.client.hasOlder('c1'), true);
  await ctx.client.loadOlder('c1');
  assert.match(ctx.backend.callsTo('GET', '/conversations/c1/messages?limit=50&before=').at(-1).path, /before=m-c1-71/);
  await ctx.client.loadOlder('c1');
  msgs = ctx.client.messages('c1');
  assert.equal(msgs.length, 120);
  assert.equal(ctx.client.hasOlder('c1'), false);
  assert.deepEqual(msgs.map((m) => m.seq), Array.from({ length: 120 }, (_, i) => i + 1));
});

test('the conversation list is newest activity first and updates live (preview, unread)', async () => {
  const ctx = await setup({ convs: ['c1', 'c2'] });
  const ws = await connect(ctx);
  ws.receive(live(ctx.backend, 'c2', 'u-b', 'newer'));
  await ctx.clock.advance(1000);
  ws.receive(live(ctx.backend, 'c1', 'u-b', 'newest'));
  await settle();
  const list = ctx.client.conversations();
  assert.deepEqual(list.map((c) => c.id), ['c1', 'c2']);
  assert.equal(list[0].last_message.content, 'newest');
  assert.equal(list[0].unread_count, 1);
  assert.equal(ctx.client.unreadTotal(), 2);
});

test('removed from a group: the conversation disappears and "removed" is emitted', async () => {
  const ctx = await setup({ convs: [] });
  ctx.backend.addConversation('g1', { type: 'group', title: 'Team', members: ['u-b', 'u-me'] });
  const ws = await connect(ctx);
  ws.receive({ type: 'conversation', event: 'member_removed', user_id: 'u-me', conversation: { id: 'g1', type: 'group', title: 'Team', participants: [] } });
  await settle();
  assert.equal(ctx.client.conversations().length, 0);
  assert.ok(ctx.events.some((x) => x.e === 'removed' && x.p.conversationId === 'g1'));
});

test('a message in a conversation we did not know fetches that conversation, not its whole history', async () => {
  const ctx = await setup({ convs: [] });
  const ws = await connect(ctx);
  ctx.backend.addConversation('c9');
  for (let i = 0; i < 30; i++) ctx.backend.addMessage('c9', 'u-b', `old ${i}`);
  ws.receive(live(ctx.backend, 'c9', 'u-b', 'hi, new here'));
  await settle();
  assert.equal(ctx.client.conversations().length, 1);
  assert.equal(ctx.backend.callsTo('GET', '/conversations/c9/messages').length, 0);
  assert.equal(ctx.client.conversation('c9').last_message.content, 'hi, new here');
});

test('presence frames update what the app shows', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.receive({ type: 'presence', user_id: 'u-b', status: 'offline', last_seen: '2026-01-01T11:59:00Z' });
  assert.deepEqual(ctx.client.presence('u-b'), { status: 'offline', last_seen: '2026-01-01T11:59:00Z' });
});

test('our own presence is what this client says: online, away while hidden, offline when not connected', async () => {
  const ctx = await setup();
  assert.equal(ctx.client.presence('u-me').status, 'offline', 'not connected yet');
  const ws = await connect(ctx);
  assert.deepEqual(ctx.client.presence('u-me'), { status: 'online', last_seen: null });
  ctx.document.setVisible(false);
  assert.equal(ctx.client.presence('u-me').status, 'away');
  ctx.document.setVisible(true);
  assert.equal(ctx.client.presence('u-me').status, 'online');
  ws.receive({ type: 'presence', user_id: 'u-b', status: 'online', last_seen: null });
  assert.equal(ctx.client.presence('u-b').status, 'online', 'others still come from presence frames');
});

test('a tab shown again while disconnected is online on the next connection, not away', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.document.setVisible(false);
  assert.equal(ctx.client.presence('u-me').status, 'away');
  ws.serverClose(1006);
  ctx.document.setVisible(true); // nobody to tell: the socket is gone
  await ctx.clock.advance(1000);
  const ws2 = ctx.WS.last();
  ws2.autoPong = true;
  ws2.hello({ conversations: [] });
  await settle();
  assert.equal(ctx.client.presence('u-me').status, 'online', 'a new session starts online on the server');
  assert.deepEqual(ws2.framesOfType('presence'), [], 'nothing to correct');
  ctx.document.setVisible(false);
  ctx.document.setVisible(true);
  assert.deepEqual(ws2.framesOfType('presence'), [{ type: 'presence', status: 'away' }, { type: 'presence', status: 'online' }]);
});

test('stop() leaves no timer, socket or listener behind', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ctx.client.send('c1', 'x');
  ctx.client.typing('c1');
  ws.receive({ type: 'typing', conversation_id: 'c1', user_id: 'u-b', is_typing: true });
  ctx.client.stop();
  assert.equal(ws.closedWith.code, 1000);
  assert.equal(ctx.document.listenerCount('visibilitychange'), 0);
  assert.equal(ctx.clock.pendingTimers, 0);
});

test('logout revokes the session, forgets the queue and the model', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.serverClose(1006);
  ctx.client.send('c1', 'unsent');
  await ctx.client.logout();
  assert.equal(ctx.backend.callsTo('POST', '/auth/logout').length, 1);
  assert.equal(ctx.client.isAuthenticated, false);
  assert.equal(ctx.client.conversations().length, 0);
  assert.equal(ctx.storage.getItem('chat.outbox.v1.u-me'), null);
  assert.equal(ctx.storage.getItem('chat.session.v1'), null);
});

test('a link gone silent: the late ack probes it, the socket is dropped and the message waits pending, never failed', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.autoPong = false; // the network is cut: the socket stays open but nothing comes back
  const offline = [];
  ctx.client.on('offline', (v) => offline.push(v));
  const local = ctx.client.send('c1', 'into the void');
  await ctx.clock.advance(1_000);
  assert.equal(ws.framesOfType('ping').length, 1, 'the resend after 1 s pinged the link');
  await ctx.clock.advance(5_000);
  assert.ok(ws.closedWith, 'no pong: the silent socket was given up');
  assert.equal(ctx.client.offline, true);
  assert.deepEqual(offline, [true]);
  await ctx.clock.advance(60_000);
  assert.equal(ctx.client.receipt(ctx.client.messages('c1')[0]).status, 'sending', 'still pending a minute later');
  // The network is back: it reconnects at once and the message goes out once, same temp_id.
  /** @type {any} */ (ctx.client)._window.dispatch('online');
  await settle();
  const next = ctx.WS.last();
  assert.notEqual(next, ws);
  next.autoPong = true;
  next.hello({ conversations: [{ conversation_id: 'c1', last_seq: 0, unread_count: 0, delivered_seq: 0, read_seq: 0, peer_delivered_seq: 0, peer_read_seq: 0 }] });
  await settle();
  assert.equal(ctx.client.offline, false);
  assert.deepEqual(next.framesOfType('message').map((f) => f.temp_id), [local.temp_id]);
});

test('the browser offline: sends wait pending, even in polling mode, and go out when it is back', async () => {
  const ctx = await setup({ timings: { backoffMs: [10] } });
  const win = /** @type {any} */ (ctx.client)._window;
  ctx.client.start();
  await settle();
  ctx.WS.last().serverClose(1006);
  await ctx.clock.advance(10);
  ctx.WS.last().serverClose(1006);
  await settle();
  assert.equal(ctx.client.state, 'failed', 'the WebSocket gave up: polling over REST');
  win.dispatch('offline');
  ctx.backend.down = true;
  ctx.client.send('c1', 'while offline');
  await ctx.clock.advance(60_000);
  await settle();
  assert.equal(ctx.client.receipt(ctx.client.messages('c1')[0]).status, 'sending', 'pending, not failed');
  ctx.backend.down = false;
  win.dispatch('online');
  await settle();
  ctx.WS.last().hello({ conversations: [{ conversation_id: 'c1', last_seq: 1, unread_count: 0, delivered_seq: 1, read_seq: 1, peer_delivered_seq: 0, peer_read_seq: 0 }] });
  await settle();
  const stored = ctx.backend.convs.get('c1').messages.filter((m) => m.content === 'while offline');
  assert.equal(stored.length, 1, 'sent once when back');
  assert.equal(ctx.WS.last().framesOfType('message').length, 0, 'not a second time over the socket');
  assert.equal(ctx.client.receipt(ctx.client.messages('c1')[0]).status, 'sent');
});

test('others\' presence is unknown while disconnected, with what was last known', async () => {
  const ctx = await setup();
  const ws = await connect(ctx);
  ws.receive({ type: 'presence', user_id: 'u-b', status: 'online', last_seen: null });
  assert.equal(ctx.client.presence('u-b').status, 'online');
  ws.serverClose(1006);
  await settle();
  assert.deepEqual(ctx.client.presence('u-b'), { status: 'unknown', last_seen: null, last_known: 'online' });
  assert.deepEqual(ctx.client.presence('u-x'), { status: 'unknown', last_seen: null, last_known: null });
});
