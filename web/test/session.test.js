import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../sdk/session.js';
import { FakeClock, MemoryStorage } from './fakes.js';

const answer = (n, expiresIn = 900) => ({ access_token: `at-${n}`, refresh_token: `rt-${n}`, token_type: 'bearer', expires_in: expiresIn, user: { id: 'u1', email: 'a@b.c', display_name: 'A' } });

test('a stored session survives a reload', () => {
  const storage = new MemoryStorage();
  const clock = new FakeClock();
  new Session({ storage, clock }).set(answer(1));
  const again = new Session({ storage, clock });
  assert.equal(again.isAuthenticated, true);
  assert.equal(again.accessToken, 'at-1');
  assert.equal(again.user.display_name, 'A');
});

test('token() refreshes only when the token is about to expire', async () => {
  const clock = new FakeClock();
  const s = new Session({ clock });
  let n = 1;
  const used = [];
  s.setRefresher(async (rt) => (used.push(rt), answer(++n)));
  s.set(answer(1, 60));
  assert.equal(await s.token({ minValidityMs: 10_000 }), 'at-1');
  await clock.advance(51_000);
  assert.equal(await s.token({ minValidityMs: 10_000 }), 'at-2');
  assert.deepEqual(used, ['rt-1']);
});

test('concurrent refreshes share one request (the refresh token is used once)', async () => {
  const clock = new FakeClock();
  const s = new Session({ clock });
  let calls = 0;
  s.setRefresher(async () => (calls++, answer(2)));
  s.set(answer(1));
  const [a, b] = await Promise.all([s.token({ force: true }), s.token({ force: true })]);
  assert.equal(calls, 1);
  assert.equal(a, 'at-2');
  assert.equal(b, 'at-2');
});

test('a rotation done by another tab is adopted instead of reusing the old refresh token', async () => {
  const storage = new MemoryStorage();
  const clock = new FakeClock();
  const tabA = new Session({ storage, clock });
  const tabB = new Session({ storage, clock });
  tabA.set(answer(1));
  tabB._load();
  let calls = 0;
  tabA.setRefresher(async () => (calls++, answer(2)));
  tabB.setRefresher(async () => (calls++, answer(3)));
  await tabA.token({ force: true });
  assert.equal(await tabB.token({ force: true }), 'at-2', 'tab B took tab A\'s fresh token');
  assert.equal(calls, 1);
});

test('a refused refresh (401) ends the session', async () => {
  const clock = new FakeClock();
  const s = new Session({ clock });
  const changes = [];
  s.onChange((u) => changes.push(u));
  s.setRefresher(async () => {
    throw Object.assign(new Error('no'), { status: 401 });
  });
  s.set(answer(1));
  await assert.rejects(s.token({ force: true }), (e) => e.sessionExpired === true);
  assert.equal(s.isAuthenticated, false);
  assert.equal(changes.at(-1), null);
});

test('a network error during refresh keeps the session', async () => {
  const clock = new FakeClock();
  const s = new Session({ clock });
  s.setRefresher(async () => {
    throw Object.assign(new Error('offline'), { status: 0 });
  });
  s.set(answer(1));
  await assert.rejects(s.token({ force: true }));
  assert.equal(s.isAuthenticated, true);
});
