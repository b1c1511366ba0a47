// Tokens against the real server with short-lived access tokens (20 s): the client renews its
// token in band (`auth` frame) before it expires, so the one WebSocket stays open and messages
// keep arriving live; REST calls refresh the token as needed; and a reload stays signed in.
// This test starts its own server (it needs the short token lifetime), even with CHAT_BASE_URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newUser, registerViaUi, startDirectViaUi, sendViaUi } from './support/harness.mjs';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer({ own: true, env: { CHAT_AUTH__ACCESS_TTL_SECS: '20' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('short-lived tokens are renewed in band: one socket, live messages past several expiries, reload stays signed in', { timeout: 180_000 }, async () => {
  const base = server.baseUrl;
  const alice = newUser('Alice Token');
  const bob = newUser('Bob Token');
  const ctxB = await browser.newContext();
  const pageB = await ctxB.newPage();
  await registerViaUi(pageB, base, bob);

  const ctxA = await browser.newContext();
  const pageA = await ctxA.newPage();
  /** @type {string[]} */
  const sockets = [];
  /** @type {string[]} */
  const clientFrames = [];
  pageA.on('websocket', (ws) => {
    sockets.push(ws.url());
    ws.on('framesent', (f) => clientFrames.push(String(f.payload)));
  });
  await registerViaUi(pageA, base, alice);
  await pageA.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected');
  await startDirectViaUi(pageA, bob);
  await pageB.locator('.conv-item', { hasText: alice.name }).click();
  const firstToken = await pageA.evaluate(() => /** @type {any} */ (window).chatClient.session.accessToken);

  // Three token lifetimes.
  for (let i = 1; i <= 3; i++) {
    await pageA.waitForTimeout(20_000);
    await sendViaUi(pageB, `Still live after ${i * 20} s`);
    await pageA.locator('.msg-text', { hasText: `Still live after ${i * 20} s` }).waitFor({ timeout: 5_000 });
  }
  assert.equal(sockets.length, 1, 'never reconnected: the same socket the whole time');
  assert.equal(await pageA.evaluate(() => /** @type {any} */ (window).chatClient.state), 'connected');
  const renewals = clientFrames.filter((f) => f.includes('"type":"auth"'));
  assert.ok(renewals.length >= 3, `renewed in band (${renewals.length} auth frames)`);
  assert.notEqual(await pageA.evaluate(() => /** @type {any} */ (window).chatClient.session.accessToken), firstToken);

  // A REST call and a send still work, and a reload keeps the session.
  await sendViaUi(pageA, 'From Alice after renewals');
  await pageB.locator('.msg-text', { hasText: 'From Alice after renewals' }).waitFor({ timeout: 5_000 });
  await pageA.reload();
  await pageA.locator('.sidebar').waitFor();
  await pageA.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 10_000 });
  assert.equal(await pageA.locator('.auth-card').count(), 0, 'still signed in after a reload');
  await ctxA.close();
  await ctxB.close();
});
