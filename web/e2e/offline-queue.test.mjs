// Seed 004's offline queue in a real browser: messages written while the WebSocket is down
// wait in the queue (shown as sending), survive a reload, and are delivered exactly once when
// the connection comes back (same temp_id, so the server deduplicates any resend).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newUser, registerViaUi, startDirectViaUi, sendViaUi, bubbles } from './support/harness.mjs';

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

test('queued offline, reloaded, flushed once on reconnect: each message delivered exactly once', { timeout: 180_000 }, async () => {
  const base = server.baseUrl;
  const alice = newUser('Alice Queue');
  const bob = newUser('Bob Queue');
  const ctxB = await browser.newContext();
  const pageB = await ctxB.newPage();
  await registerViaUi(pageB, base, bob);

  const ctxA = await browser.newContext();
  let blocked = false;
  /** @type {Set<any>} */
  const open = new Set();
  await ctxA.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    if (blocked) {
      ws.close({ code: 3000, reason: 'offline (test)' });
      return;
    }
    ws.connectToServer();
    open.add(ws);
  });
  const pageA = await ctxA.newPage();
  await registerViaUi(pageA, base, alice);
  await pageA.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 10_000 });
  await startDirectViaUi(pageA, bob);
  await sendViaUi(pageA, 'Before going offline');
  await pageB.locator('.conv-item', { hasText: alice.name }).click();
  await pageB.locator('.msg-text', { hasText: 'Before going offline' }).waitFor();

  // Go offline: the socket drops and new ones are refused.
  blocked = true;
  for (const ws of open) await ws.close({ code: 3001, reason: 'network lost (test)' }).catch(() => {});
  open.clear();
  await pageA.locator('.chat .banner', { hasText: 'Reconnecting...' }).waitFor({ timeout: 10_000 });

  const queued = ['Queued one', 'Queued two', 'Queued three'];
  for (const text of queued) await sendViaUi(pageA, text);
  for (const text of queued) await pageA.locator('.msg-row[data-status="sending"]', { hasText: text }).waitFor();
  const stored = await pageA.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('chat.outbox')).map((k) => JSON.parse(localStorage.getItem(k) ?? '[]').length));
  assert.deepEqual(stored, [3], 'the queue is in localStorage');

  // Reload while still offline: the queued messages are still there, still waiting.
  await pageA.reload();
  await pageA.locator('.chat .chat-title', { hasText: bob.name }).waitFor();
  for (const text of queued) await pageA.locator('.msg-row[data-status="sending"]', { hasText: text }).waitFor({ timeout: 10_000 });

  // Back online: visibility brings the socket back at once; the queue flushes once.
  blocked = false;
  await pageA.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await pageA.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 15_000 });
  for (const text of queued) await pageB.locator('.msg-text', { hasText: text }).waitFor({ timeout: 10_000 });
  await pageA.waitForFunction(() => document.querySelectorAll('.msg-row[data-status="sending"]').length === 0, null, { timeout: 10_000 });

  // Exactly once, on both sides, and in the server's history.
  await pageB.waitForTimeout(1500);
  const seenByB = (await bubbles(pageB)).map((b) => b.text);
  const seenByA = (await bubbles(pageA)).map((b) => b.text);
  for (const text of queued) {
    assert.equal(seenByB.filter((t) => t === text).length, 1, `B sees "${text}" once`);
    assert.equal(seenByA.filter((t) => t === text).length, 1, `A sees "${text}" once`);
  }
  const history = await pageA.evaluate(async () => {
    const c = /** @type {any} */ (window).chatClient;
    const id = c.activeConversationId;
    return (await c.rest.messagesAfter(id, 0, 100)).map((/** @type {any} */ m) => m.content);
  });
  assert.deepEqual(history, ['Before going offline', ...queued], 'the server holds each message once, in order');
  assert.deepEqual(await pageA.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('chat.outbox'))), [], 'the queue is empty');

  await ctxA.close();
  await ctxB.close();
});
