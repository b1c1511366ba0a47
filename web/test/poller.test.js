import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Poller } from '../sdk/poller.js';
import { FakeClock } from './fakes.js';

function setup() {
  const clock = new FakeClock();
  const t0 = clock.now();
  const runs = { messages: [], conversations: [], unread: [] };
  const tasks = Object.fromEntries(Object.keys(runs).map((k) => [k, () => runs[k].push(clock.now() - t0)]));
  return { clock, runs, poller: new Poller({ clock, tasks }), t0 };
}

test('fallback polling: messages every 5 s, conversations every 15 s, unread every 30 s (first poll at once)', async () => {
  const { clock, runs, poller } = setup();
  poller.setMode('fallback');
  await clock.advance(60_000);
  assert.deepEqual(runs.messages, [0, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 45000, 50000, 55000, 60000]);
  assert.deepEqual(runs.conversations, [0, 15000, 30000, 45000, 60000]);
  assert.deepEqual(runs.unread, [0, 30000, 60000]);
});

test('light polling while connected: conversations and unread every 60 s, messages never', async () => {
  const { clock, runs, poller } = setup();
  poller.setMode('light');
  await clock.advance(180_000);
  assert.deepEqual(runs.conversations, [60000, 120000, 180000]);
  assert.deepEqual(runs.unread, [60000, 120000, 180000]);
  assert.deepEqual(runs.messages, []);
});

test('off stops every poll; switching modes replaces the schedule', async () => {
  const { clock, runs, poller } = setup();
  poller.setMode('fallback');
  await clock.advance(5000);
  poller.setMode('off');
  await clock.advance(120_000);
  assert.deepEqual(runs.messages, [0, 5000]);
  poller.setMode('light');
  await clock.advance(59_999);
  assert.equal(runs.conversations.length, 1);
  await clock.advance(1);
  assert.equal(runs.conversations.length, 2);
  assert.equal(clock.pendingTimers, 2);
  poller.stop();
  assert.equal(clock.pendingTimers, 0);
});

test('a slow poll is never run twice at once', async () => {
  const clock = new FakeClock();
  let started = 0;
  let release;
  const poller = new Poller({ clock, tasks: { messages: () => (started++, new Promise((r) => (release = r))), conversations() {}, unread() {} } });
  poller.setMode('fallback');
  await clock.advance(20_000);
  assert.equal(started, 1);
  release();
  await clock.advance(5000);
  assert.equal(started, 2);
});
