import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../sdk/connection.js';
import { FakeClock, FakeDocument, makeFakeWebSocket, settle } from './fakes.js';

function setup({ tokenExpiresIn = 900_000, timings = {}, refresh } = {}) {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket(clock);
  const document = new FakeDocument();
  const window = new FakeDocument();
  const log = [];
  let n = 0;
  let expiresAt = clock.now() + tokenExpiresIn;
  let issuedAt = clock.now();
  const auth = {
    calls: [],
    async token(opts = {}) {
      auth.calls.push(opts);
      if (opts.force || expiresAt - clock.now() < 10_000) {
        if (refresh) await refresh();
        n++;
        issuedAt = clock.now();
        expiresAt = clock.now() + tokenExpiresIn;
      }
      return `token-${n}`;
    },
    expiresAt: () => expiresAt,
    issuedAt: () => issuedAt,
  };
  const conn = new Connection({ url: 'ws://chat.test/ws', auth, WebSocket: WS, clock, timings, document, window, logger: { warn() {}, debug() {} } });
  conn.on('state', (s) => log.push({ at: clock.now() - t0, state: s.state }));
  const t0 = clock.now();
  return { clock, WS, document, window, conn, log, auth, t0, elapsed: () => clock.now() - t0 };
}

test('connects: connecting until hello, then connected', async () => {
  const { conn, WS } = setup();
  conn.start();
  await settle();
  assert.equal(conn.state, 'connecting');
  assert.equal(WS.instances.length, 1);
  assert.equal(WS.last().url, 'ws://chat.test/ws?token=token-0');
  WS.last().accept();
  assert.equal(conn.state, 'connecting', 'an open socket is not connected before hello');
  WS.last().hello();
  assert.equal(conn.state, 'connected');
});

test('reconnects with backoff 1, 2, 4, 8, 16 s, then gives up after 5 attempts as failed', async () => {
  const { conn, WS, clock, elapsed } = setup({ timings: { failedProbeMs: 0 } });
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().serverClose(1006);
  assert.equal(conn.state, 'disconnected');
  const attemptsAt = [];
  for (let i = 0; i < 5; i++) {
    const before = WS.instances.length;
    // advance until the next attempt opens a socket
    while (WS.instances.length === before) await clock.advance(100);
    attemptsAt.push(elapsed());
    assert.equal(conn.state, 'connecting');
    WS.last().fail();
  }
  assert.deepEqual(attemptsAt, [1000, 3000, 7000, 15000, 31000]);
  assert.equal(conn.state, 'failed');
  await clock.advance(10 * 60_000);
  assert.equal(WS.instances.length, 6, 'no attempt after giving up');
});

test('state sequence of an outage: disconnected while waiting, connecting while trying, failed at the end', async () => {
  const { conn, WS, clock, log } = setup({ timings: { failedProbeMs: 0 } });
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().serverClose(1001);
  for (let i = 0; i < 5; i++) {
    await clock.advance(16_000);
    WS.last().fail();
  }
  assert.deepEqual(
    log.map((l) => l.state),
    ['connecting', 'connected', ...Array(5).fill(['disconnected', 'connecting']).flat(), 'failed'],
  );
});

test('a successful reconnect resets the backoff', async () => {
  const { conn, WS, clock, elapsed } = setup();
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().serverClose(1006);
  await clock.advance(1000);
  WS.last().fail();
  await clock.advance(2000);
  WS.last().hello();
  assert.equal(conn.state, 'connected');
  const t = elapsed();
  WS.last().serverClose(1006);
  await clock.advance(999);
  assert.equal(conn.state, 'disconnected');
  await clock.advance(1);
  assert.equal(conn.state, 'connecting');
  assert.equal(elapsed() - t, 1000);
});

test('visibilitychange to visible reconnects at once, with a fresh backoff', async () => {
  const { conn, WS, clock, document } = setup();
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().serverClose(1006);
  await clock.advance(1000);
  WS.last().fail(); // now waiting 2 s for attempt 2
  assert.equal(conn.attempt, 2);
  document.setVisible(false);
  document.setVisible(true);
  await settle();
  assert.equal(WS.instances.length, 3, 'reconnected without waiting');
  assert.equal(conn.attempt, 0, 'backoff counter reset');
  WS.last().fail();
  assert.equal(conn.nextRetryAt - clock.now(), 1000, 'next wait starts again at 1 s');
});

test('visibilitychange also brings back a failed connection', async () => {
  const { conn, WS, clock, document } = setup({ timings: { failedProbeMs: 0 } });
  conn.start();
  await settle();
  WS.last().fail();
  for (let i = 0; i < 5; i++) {
    await clock.advance(16_000);
    WS.last().fail();
  }
  assert.equal(conn.state, 'failed');
  document.setVisible(true);
  await settle();
  assert.equal(conn.state, 'connecting');
  WS.last().hello();
  assert.equal(conn.state, 'connected');
});

test('the browser coming back online reconnects at once', async () => {
  const { conn, WS, window } = setup();
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().serverClose(1006);
  window.dispatch('online');
  await settle();
  assert.equal(WS.instances.length, 2);
});

test('while failed, the socket is probed quietly every failedProbeMs without leaving failed', async () => {
  const { conn, WS, clock, log } = setup({ timings: { failedProbeMs: 60_000 } });
  conn.start();
  await settle();
  WS.last().fail();
  for (let i = 0; i < 5; i++) {
    await clock.advance(16_000);
    WS.last().fail();
  }
  assert.equal(conn.state, 'failed');
  const n = WS.instances.length;
  const states = log.length;
  await clock.advance(60_000);
  assert.equal(WS.instances.length, n + 1, 'probe opened a socket');
  assert.equal(conn.state, 'failed');
  WS.last().fail();
  assert.equal(log.length, states, 'no state flicker during a failed probe');
  await clock.advance(60_000);
  WS.last().hello();
  assert.equal(conn.state, 'connected');
});

test('heartbeat: a ping every 30 s while connected', async () => {
  const { conn, WS, clock } = setup();
  conn.start();
  await settle();
  const ws = WS.last();
  ws.hello();
  await clock.advance(29_999);
  assert.equal(ws.framesOfType('ping').length, 0);
  await clock.advance(1);
  assert.equal(ws.framesOfType('ping').length, 1);
  ws.receive({ type: 'pong' });
  await clock.advance(30_000);
  assert.equal(ws.framesOfType('ping').length, 2);
  ws.receive({ type: 'pong' });
  await clock.advance(30_000);
  assert.equal(ws.framesOfType('ping').length, 3);
  assert.equal(conn.state, 'connected');
});

test('heartbeat: no pong within 5 s closes the socket and reconnects', async () => {
  const { conn, WS, clock } = setup();
  conn.start();
  await settle();
  const ws = WS.last();
  ws.hello();
  await clock.advance(30_000);
  assert.equal(ws.framesOfType('ping').length, 1);
  await clock.advance(4_999);
  assert.equal(conn.state, 'connected', 'still within the pong timeout');
  await clock.advance(1);
  assert.ok(ws.closedWith, 'the silent socket was closed');
  assert.equal(conn.state, 'disconnected');
  await clock.advance(1000);
  assert.equal(WS.instances.length, 2, 'and a new one opened after the first backoff step');
});

test('a pong in time keeps the connection', async () => {
  const { conn, WS, clock } = setup();
  conn.start();
  await settle();
  const ws = WS.last();
  ws.hello();
  await clock.advance(30_000);
  await clock.advance(4_000);
  ws.receive({ type: 'pong' });
  await clock.advance(10_000);
  assert.equal(conn.state, 'connected');
  assert.equal(ws.closedWith, null);
});

test('an attempt with no hello within connectTimeoutMs counts as failed', async () => {
  const { conn, WS, clock } = setup({ timings: { connectTimeoutMs: 10_000 } });
  conn.start();
  await settle();
  WS.last().accept();
  await clock.advance(10_000);
  assert.equal(conn.state, 'disconnected');
  assert.ok(WS.last().closedWith);
  await clock.advance(1000);
  assert.equal(WS.instances.length, 2);
});

test('close 4001: the token is refreshed and the socket reconnects at once with the new one', async () => {
  const { conn, WS, auth } = setup();
  conn.start();
  await settle();
  WS.last().hello();
  assert.equal(WS.last().token, 'token-0');
  WS.last().serverClose(4001, 'token expired');
  await settle();
  assert.equal(auth.calls.at(-2).force, true, 'forced a refresh');
  assert.equal(WS.instances.length, 2, 'reconnected without a backoff wait');
  assert.equal(WS.last().token, 'token-1');
});

test('close 4001 twice in a row backs off instead of looping', async () => {
  const { conn, WS, clock } = setup();
  conn.start();
  await settle();
  WS.last().serverClose(4001);
  await settle();
  assert.equal(WS.instances.length, 2);
  WS.last().serverClose(4001);
  await settle();
  assert.equal(WS.instances.length, 2);
  assert.equal(conn.state, 'disconnected');
  await clock.advance(1000);
  assert.equal(WS.instances.length, 3);
});

test('close 4001 with a refused refresh ends the session', async () => {
  const err = Object.assign(new Error('expired'), { sessionExpired: true });
  const { conn, WS } = setup({
    refresh: async () => {
      throw err;
    },
  });
  let expired = 0;
  conn.on('session_expired', () => expired++);
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().serverClose(4001);
  await settle();
  assert.equal(expired, 1);
  assert.equal(WS.instances.length, 1, 'no reconnect without a session');
});

test('a token about to expire is refreshed before connecting', async () => {
  const { conn, WS, auth } = setup({ tokenExpiresIn: 5_000 });
  conn.start();
  await settle();
  assert.equal(auth.calls.length, 1);
  assert.equal(WS.last().token, 'token-1', 'the socket used the refreshed token');
});

test('in-band renewal: an auth frame with a fresh token before the token expires, no reconnect', async () => {
  const { conn, WS, clock } = setup({ tokenExpiresIn: 900_000 });
  conn.start();
  await settle();
  const ws = WS.last();
  ws.autoPong = true;
  ws.hello();
  // margin: min(60 s, half the lifetime) before expiry
  await clock.advance(840_000 - 1);
  assert.equal(ws.framesOfType('auth').length, 0);
  await clock.advance(1);
  const auth = ws.framesOfType('auth');
  assert.equal(auth.length, 1);
  assert.equal(auth[0].token, 'token-1');
  ws.receive({ type: 'auth_ok', expires_at: new Date(clock.now() + 900_000).toISOString() });
  assert.equal(WS.instances.length, 1, 'same socket');
  assert.equal(conn.state, 'connected');
});

test('close 4003 (not a participant) stops retrying and falls back to polling', async () => {
  const { conn, WS, clock } = setup({ timings: { failedProbeMs: 0 } });
  conn.start();
  await settle();
  WS.last().serverClose(4003);
  assert.equal(conn.state, 'failed');
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 1);
});

test('without WebSocket support it goes straight to failed (polling)', async () => {
  const clock = new FakeClock();
  const conn = new Connection({ url: 'ws://x/ws', WebSocket: undefined, clock, auth: { token: async () => 't', expiresAt: () => null, issuedAt: () => null }, logger: { warn() {}, debug() {} } });
  conn.start();
  await settle();
  assert.equal(conn.state, 'failed');
});

test('malformed frames and unknown types are ignored without harm', async () => {
  const { conn, WS } = setup();
  const frames = [];
  conn.on('frame', (f) => frames.push(f.type));
  conn.start();
  await settle();
  WS.last().hello();
  WS.last().receive('not json{');
  WS.last().receive({ nope: 1 });
  WS.last().receive({ type: 'something_new' });
  assert.equal(conn.state, 'connected');
  assert.deepEqual(frames, ['hello', 'something_new']);
});

test('stop() closes with 1000, removes listeners and leaves no timer running', async () => {
  const { conn, WS, clock, document, window } = setup();
  conn.start();
  await settle();
  const ws = WS.last();
  ws.hello();
  assert.equal(document.listenerCount('visibilitychange'), 1);
  conn.stop();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'client stopped' });
  assert.equal(conn.state, 'disconnected');
  assert.equal(document.listenerCount('visibilitychange'), 0);
  assert.equal(window.listenerCount('online'), 0);
  assert.equal(clock.pendingTimers, 0);
  await clock.advance(120_000);
  assert.equal(WS.instances.length, 1);
});

test('send() only works while connected', async () => {
  const { conn, WS } = setup();
  conn.start();
  await settle();
  assert.equal(conn.send({ type: 'ping' }), false);
  WS.last().hello();
  assert.equal(conn.send({ type: 'typing', conversation_id: 'c', is_typing: true }), true);
  assert.deepEqual(WS.last().sent, [{ type: 'typing', conversation_id: 'c', is_typing: true }]);
});

test('the browser going offline drops a silent socket at once, and offline never turns into failed', async () => {
  const { conn, WS, window, clock } = setup();
  const seen = [];
  conn.on('offline', (v) => seen.push(v));
  conn.start();
  await settle();
  const ws = WS.last();
  ws.hello();
  assert.equal(conn.offline, false);
  window.dispatch('offline');
  await settle();
  assert.ok(ws.closedWith, 'the socket was given up without waiting for a heartbeat');
  assert.equal(conn.state, 'disconnected');
  assert.equal(conn.offline, true);
  assert.deepEqual(seen, [true]);
  // Far longer than the whole backoff: slow retries, never `failed` (which would poll REST).
  for (let i = 0; i < 10; i++) {
    await clock.advance(16_000);
    WS.last().serverClose(1006);
    await settle();
  }
  assert.notEqual(conn.state, 'failed');
  assert.equal(conn.attempt, 0, 'no attempt of the backoff was spent while offline');
  const before = WS.instances.length;
  window.dispatch('online');
  await settle();
  assert.equal(WS.instances.length, before + 1, 'online reconnects at once');
  assert.equal(conn.offline, false);
  WS.last().hello();
  assert.equal(conn.state, 'connected');
  assert.deepEqual(seen, [true, false]);
});

test('a ping with no answer marks the link offline until the next hello', async () => {
  const { conn, WS, clock } = setup();
  conn.start();
  await settle();
  WS.last().hello();
  conn.probe();
  assert.equal(WS.last().framesOfType('ping').length, 1, 'probe() pings at once');
  await clock.advance(5_000);
  assert.equal(conn.state, 'disconnected');
  assert.equal(conn.offline, true, 'the link went silent');
  await clock.advance(1_000);
  WS.last().hello();
  assert.equal(conn.offline, false);
});

test('a refused connection (server down) is not offline', async () => {
  const { conn, WS } = setup();
  conn.start();
  await settle();
  WS.last().serverClose(1006);
  await settle();
  assert.equal(conn.state, 'disconnected');
  assert.equal(conn.offline, false);
});

test('a page that starts with the browser offline is offline at once', async () => {
  const { conn, window } = setup();
  window.navigator = { onLine: false };
  conn.start();
  await settle();
  assert.equal(conn.offline, true);
});
