import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageThread } from '../sdk/thread.js';

const msg = (seq, extra = {}) => ({ id: `m${seq}`, conversation_id: 'c1', seq, sender_id: 'u-b', content: `#${seq}`, content_type: 'text', created_at: new Date(seq * 1000).toISOString(), ...extra });

test('messages are kept in seq order whatever order they arrive in', () => {
  const t = new MessageThread('c1', 'u-me');
  for (const s of [3, 1, 2]) t.ingest(msg(s));
  assert.deepEqual(t.list().map((m) => m.seq), [1, 2, 3]);
});

test('the same message twice (by id) is held once', () => {
  const t = new MessageThread('c1', 'u-me');
  assert.equal(t.ingest(msg(1)).added, true);
  assert.equal(t.ingest(msg(1)).added, false);
  assert.equal(t.list().length, 1);
});

test('a second message with a seq already held is dropped (dedup by conversation and seq)', () => {
  const t = new MessageThread('c1', 'u-me');
  t.ingest(msg(1));
  const r = t.ingest(msg(1, { id: 'other' }));
  assert.equal(r.added, false);
  assert.deepEqual(t.list().map((m) => m.id), ['m1']);
});

test('a duplicate brings newer server facts (an edit) into the held copy', () => {
  const t = new MessageThread('c1', 'u-me');
  t.ingest(msg(1));
  t.ingest(msg(1, { content: 'edited', edited_at: '2026-01-01T00:00:00Z' }));
  assert.equal(t.list()[0].content, 'edited');
});

test('the cursor tracks the next expected seq and a jump is reported as a gap', () => {
  const t = new MessageThread('c1', 'u-me');
  t.ingest(msg(1));
  t.ingest(msg(2));
  assert.equal(t.cursor, 2);
  const r = t.ingest(msg(5));
  assert.equal(r.gap, true);
  assert.equal(t.cursor, 2, 'the cursor stays before the hole');
  assert.deepEqual(t.gap(), { afterSeq: 2, upTo: 5 });
  t.ingest(msg(3));
  t.ingest(msg(4));
  assert.equal(t.cursor, 5, 'filling the hole moves the cursor past everything held');
  assert.equal(t.gap(), null);
});

test('with nothing held, a newer last_seq just moves the cursor (history pages in later)', () => {
  const t = new MessageThread('c1', 'u-me');
  assert.equal(t.noteLastSeq(40), false);
  assert.equal(t.cursor, 40);
  t.ingest(msg(41));
  assert.equal(t.cursor, 41);
  assert.equal(t.noteLastSeq(45), true, 'with messages held, a higher last_seq is a gap to fetch');
  assert.deepEqual(t.gap(45), { afterSeq: 41, upTo: 45 });
});

test('our own optimistic message is replaced in place by the server copy (same key)', () => {
  const t = new MessageThread('c1', 'u-me');
  t.ingest(msg(1));
  t.addPending({ key: 't:abc', local: true, temp_id: 'abc', id: '', seq: 0, conversation_id: 'c1', sender_id: 'u-me', content: 'hi', content_type: 'text', created_at: 'x', status: 'sending' });
  assert.deepEqual(t.list().map((m) => m.key), ['i:m1', 't:abc'], 'pending after the held ones');
  t.ingest(msg(2, { sender_id: 'u-me', temp_id: 'abc', content: 'hi' }));
  assert.equal(t.pending.size, 0);
  const list = t.list();
  assert.deepEqual(list.map((m) => m.key), ['i:m1', 't:abc']);
  assert.equal(list[1].id, 'm2');
  assert.equal(list[1].local, undefined);
});

test('hasOlder is false once seq 1 is held', () => {
  const t = new MessageThread('c1', 'u-me');
  t.ingest(msg(5));
  assert.equal(t.hasOlder, true);
  t.ingest(msg(1));
  assert.equal(t.hasOlder, false);
});
