// Seed 001 AC-5/9/29-31 in a real browser: with the WebSocket blocked the app shows
// "Reconnecting...", gives up after the backoff, says "Real-time updates unavailable. Messages
// may be delayed.", and HTTP polling still delivers messages both ways. When the socket is
// allowed again and the tab becomes visible, it reconnects and the banner goes away.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newUser, registerViaUi, startDirectViaUi, sendViaUi, screenshot, bubbles } from './support/harness.mjs';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('WebSocket blocked: banners, then polling delivers messages both ways; recovery when unblocked', { timeout: 240_000 }, async () => {
  const base = server.baseUrl;
  const alice = newUser('Alice Fallback');
  const bob = newUser('Bob Fallback');

  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const pageB = await ctxB.newPage();
  await registerViaUi(pageB, base, bob);

  // Alice's browser cannot open WebSockets (until `blocked` is cleared).
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  let blocked = true;
  await ctxA.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    if (blocked) ws.close({ code: 3000, reason: 'blocked by the test' });
    else ws.connectToServer();
  });
  const pageA = await ctxA.newPage();
  await registerViaUi(pageA, base, alice);

  const banner = pageA.locator('.chat-pane .banner');
  await banner.filter({ hasText: 'Reconnecting...' }).waitFor({ timeout: 15_000 });
  await startDirectViaUi(pageA, bob);
  await screenshot(pageA, 'reconnecting-banner');

  // Backoff 1+2+4+8+16 s, then the app gives up on the socket.
  await pageA.locator('.chat .banner', { hasText: 'Real-time updates unavailable. Messages may be delayed.' }).waitFor({ timeout: 60_000 });
  assert.equal(await pageA.evaluate(() => /** @type {any} */ (window).chatClient.state), 'failed');
  await screenshot(pageA, 'failed-banner');

  // Alice sends while polling: the message goes over REST and reaches Bob live.
  await sendViaUi(pageA, 'Sent while the socket is blocked');
  await pageB.locator('.conv-item', { hasText: alice.name }).click();
  await pageB.locator('.msg-text', { hasText: 'Sent while the socket is blocked' }).waitFor({ timeout: 20_000 });

  // Bob answers over his WebSocket; Alice gets it by polling (5 s for the open conversation).
  await sendViaUi(pageB, 'Answer delivered by polling');
  await pageA.locator('.msg-text', { hasText: 'Answer delivered by polling' }).waitFor({ timeout: 15_000 });
  const seen = await bubbles(pageA);
  assert.equal(seen.filter((b) => b.text === 'Answer delivered by polling').length, 1);
  assert.equal(seen.filter((b) => b.text === 'Sent while the socket is blocked').length, 1);

  // Unblock; the tab becoming visible reconnects at once, and the banner disappears.
  blocked = false;
  await pageA.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await pageA.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 15_000 });
  await pageA.locator('.chat .banner').waitFor({ state: 'hidden' });
  await sendViaUi(pageB, 'Live again');
  await pageA.locator('.msg-text', { hasText: 'Live again' }).waitFor({ timeout: 5_000 });

  await ctxA.close();
  await ctxB.close();
});
