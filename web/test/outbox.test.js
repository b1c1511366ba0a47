import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox } from '../sdk/outbox.js';
import { FakeClock, MemoryStorage, settle } from './fakes.js';

function setup({ mode = 'ws', storage = new MemoryStorage(), post } = {}) {
  const clock = new FakeClock();
  const frames = [];
  const posts = [];
  const changes = [];
  const transport = {
    mode: () => transport.current,
    current: mode,
    sendFrame: (f) => {
      if (transport.current !== 'ws') return false;
      frames.push({ at: clock.now() - t0, ...f });
      return true;
    },
    post: async (conversationId, body) => {
      posts.push({ at: clock.now() - t0, conversationId, ...body });
      if (post) return post(conversationId, body);
      return { id: `srv-${body.temp_id}`, conversation_id: conversationId, seq: posts.length, sender_id: 'me', content: body.content, content_type: 'text', temp_id: body.temp_id, created_at: 'x' };
    },
  };
  let n = 0;
  const outbox = new Outbox({ transport, storage, clock, randomUUID: () => `uuid-${++n}`, onChange: (e, c) => changes.push(`${e.temp_id}:${c}:${e.status}`) });
  const t0 = clock.now();
  return { clock, frames, posts, changes, transport, outbox, storage };
}

test('a message is sent at once over the WebSocket with a UUID temp_id', () => {
  const { outbox, frames } = setup();
  const e = outbox.send('c1', 'Hello!');
  assert.equal(e.temp_id, 'uuid-1');
  assert.equal(e.status, 'sending');
  assert.deepEqual(frames, [{ at: 0, type: 'message', conversation_id: 'c1', content: 'Hello!', content_type: 'text', temp_id: 'uuid-1' }]);
});

test('without an ack it is resent after 1, 2 and 4 s with the same temp_id, then marked failed', async () => {
  const { outbox, frames, clock } = setup();
  const e = outbox.send('c1', 'Hello!');
  await clock.advance(20_000);
  assert.deepEqual(frames.map((f) => f.at), [0, 1000, 3000, 7000]);
  assert.ok(frames.every((f) => f.temp_id === 'uuid-1'));
  assert.equal(e.status, 'failed');
});

test('failed comes sendFinalAckMs (5 s) after the last resend, not before', async () => {
  const { outbox, clock } = setup();
  const e = outbox.send('c1', 'x');
  await clock.advance(7000 + 4999);
  assert.equal(e.status, 'sending');
  await clock.advance(1);
  assert.equal(e.status, 'failed');
});

test('an ack stops the retries and removes the message from storage', async () => {
  const { outbox, frames, clock, storage } = setup();
  outbox.send('c1', 'Hello!');
  assert.equal(JSON.parse(storage.getItem('chat.outbox.v1')).length, 1);
  await clock.advance(1500);
  outbox.ack('uuid-1', { id: 'm1' });
  await clock.advance(20_000);
  assert.equal(frames.length, 2);
  assert.equal(outbox.entries.size, 0);
  assert.equal(storage.getItem('chat.outbox.v1'), null);
});

test('offline: the message is queued, nothing is sent, no timer runs', async () => {
  const { outbox, frames, clock } = setup({ mode: 'offline' });
  const e = outbox.send('c1', 'later');
  assert.equal(e.status, 'queued');
  await clock.advance(60_000);
  assert.equal(frames.length, 0);
  assert.equal(e.status, 'queued', 'never failed while waiting for the connection');
});

test('flush after reconnecting sends each queued message exactly once, in order', async () => {
  const { outbox, frames, transport, clock } = setup({ mode: 'offline' });
  outbox.send('c1', 'one');
  outbox.send('c1', 'two');
  transport.current = 'ws';
  outbox.flush();
  outbox.flush(); // a second trigger must not resend what is already out
  assert.deepEqual(frames.map((f) => f.content), ['one', 'two']);
  outbox.ack('uuid-1');
  outbox.ack('uuid-2');
  await clock.advance(20_000);
  assert.equal(frames.length, 2);
});

test('the queue survives a reload: a new outbox on the same storage flushes each message once with its temp_id', async () => {
  const storage = new MemoryStorage();
  const first = setup({ mode: 'offline', storage });
  first.outbox.send('c1', 'one');
  first.outbox.send('c2', 'two');
  // reload
  const second = setup({ mode: 'offline', storage });
  const restored = second.outbox.load();
  assert.deepEqual(restored.map((e) => [e.temp_id, e.status]), [['uuid-1', 'queued'], ['uuid-2', 'queued']]);
  second.transport.current = 'ws';
  second.outbox.flush();
  assert.deepEqual(second.frames.map((f) => [f.temp_id, f.conversation_id, f.content]), [['uuid-1', 'c1', 'one'], ['uuid-2', 'c2', 'two']]);
});

test('a failed message stays failed across a reload, and retry() sends it again with the same temp_id', async () => {
  const storage = new MemoryStorage();
  const first = setup({ storage });
  first.outbox.send('c1', 'x');
  await first.clock.advance(20_000);
  const second = setup({ storage });
  const [e] = second.outbox.load();
  assert.equal(e.status, 'failed');
  second.outbox.flush();
  assert.equal(second.frames.length, 0, 'a flush does not resend failed messages');
  assert.equal(second.outbox.retry('uuid-1'), true);
  assert.deepEqual(second.frames.map((f) => f.temp_id), ['uuid-1']);
  assert.equal(e.status, 'sending');
});

test('the connection dropping puts messages waiting for an ack back in the queue', async () => {
  const { outbox, frames, transport, clock } = setup();
  const e = outbox.send('c1', 'x');
  transport.current = 'offline';
  outbox.onDisconnected();
  assert.equal(e.status, 'queued');
  await clock.advance(30_000);
  assert.equal(frames.length, 1);
  transport.current = 'ws';
  outbox.flush();
  assert.equal(frames.length, 2);
  assert.equal(frames[1].temp_id, frames[0].temp_id);
});

test('a permanent error frame fails the message at once; a transient one keeps the schedule', async () => {
  const { outbox, clock, frames } = setup();
  const a = outbox.send('c1', 'a');
  const b = outbox.send('c1', 'b');
  outbox.rejected(a.temp_id, 'validation_failed', 'content: too long');
  outbox.rejected(b.temp_id, 'unavailable', 'storage down');
  assert.equal(a.status, 'failed');
  assert.equal(a.error, 'content: too long');
  assert.equal(b.status, 'sending');
  await clock.advance(1000);
  assert.equal(frames.filter((f) => f.temp_id === b.temp_id).length, 2, 'retried');
  assert.equal(frames.filter((f) => f.temp_id === a.temp_id).length, 1, 'not retried');
});

test('REST mode (WebSocket failed): the message is POSTed with its temp_id and acked by the answer', async () => {
  const { outbox, posts, changes } = setup({ mode: 'rest' });
  outbox.send('c1', 'via rest');
  await settle();
  assert.equal(posts.length, 1);
  assert.equal(posts[0].temp_id, 'uuid-1');
  assert.equal(outbox.entries.size, 0);
  assert.ok(changes.includes('uuid-1:acked:sending'));
});

test('REST mode: network errors are retried after 1, 2, 4 s, then failed; a 4xx fails at once', async () => {
  const err = Object.assign(new Error('Cannot reach the server.'), { transient: true });
  const { outbox, posts, clock } = setup({
    mode: 'rest',
    post: async () => {
      throw err;
    },
  });
  const e = outbox.send('c1', 'x');
  await clock.advance(20_000);
  assert.deepEqual(posts.map((p) => p.at), [0, 1000, 3000, 7000]);
  assert.equal(e.status, 'failed');

  const refused = setup({
    mode: 'rest',
    post: async () => {
      throw Object.assign(new Error('content: blank'), { transient: false, status: 422 });
    },
  });
  const f = refused.outbox.send('c1', 'x');
  await refused.clock.advance(20_000);
  assert.equal(refused.posts.length, 1);
  assert.equal(f.status, 'failed');
});
