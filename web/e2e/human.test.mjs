// Seed 000's human test, end to end through the UI, with two browser contexts as User A and
// User B:
//   1. A logs in and starts a conversation with B     5. B replies
//   2. A sends a message                               6. both see the history with receipts
//   3. B sees it appear instantly (no refresh)         7. A goes offline: B sees presence change
//   4. B types: A sees "typing..."                     8. messages persist after logout/login
// It also saves the screenshots of the main screens (list, chat with typing and ticks, phone).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newUser, registerViaUi, loginViaUi, startDirectViaUi, sendViaUi, screenshot, bubbles } from './support/harness.mjs';

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

/** @param {import('playwright-core').Page} page @param {string} text */
const bubble = (page, text) => page.locator('.msg-row', { has: page.locator('.msg-text', { hasText: text }) });

test("seed 000's human test: two users chat in real time with typing, receipts and presence", { timeout: 180_000 }, async () => {
  const base = server.baseUrl;
  const userA = newUser('Alice Archer');
  const userB = newUser('Bruno Baker');
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const pageA = await ctxA.newPage();
  const pageB = await ctxB.newPage();
  const errors = [];
  for (const p of [pageA, pageB]) p.on('pageerror', (e) => errors.push(e.message));

  await registerViaUi(pageB, base, userB);
  await registerViaUi(pageA, base, userA);
  for (const p of [pageA, pageB]) await p.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 10_000 });

  // 1. A starts a conversation with B.
  await startDirectViaUi(pageA, userB);

  // 2-3. A sends; B sees it without refreshing, in the list and in the chat.
  await sendViaUi(pageA, 'Hello!');
  const itemB = pageB.locator('.conv-item', { hasText: userA.name });
  await itemB.filter({ hasText: 'Hello!' }).waitFor({ timeout: 5_000 });
  assert.equal(await itemB.locator('.badge').textContent(), '1', 'B sees one unread message');
  await screenshot(pageB, 'list');

  // A sees "delivered" once B's session has the message.
  await pageA.waitForFunction(() => document.querySelector('.msg-row.is-mine')?.getAttribute('data-status') === 'delivered' || document.querySelector('.msg-row.is-mine')?.getAttribute('data-status') === 'read', null, { timeout: 10_000 });

  await itemB.click();
  await bubble(pageB, 'Hello!').waitFor();
  // B has the chat open and visible: the message is marked read, and A's tick turns to read.
  await bubble(pageA, 'Hello!').and(pageA.locator('[data-status="read"]')).waitFor({ timeout: 10_000 });
  await pageB.locator('.conv-item', { hasText: userA.name }).locator('.badge').waitFor({ state: 'detached' });

  // 4. B types: A sees the typing line (seed 001 wording, aria-live polite).
  const inputB = pageB.locator('.composer-input');
  await inputB.click();
  await inputB.pressSequentially('Hi back', { delay: 60 });
  const typingA = pageA.locator('.typing-line');
  await typingA.filter({ hasText: `${userB.name} is typing...` }).waitFor({ timeout: 5_000 });
  assert.equal(await typingA.getAttribute('aria-live'), 'polite');
  await screenshot(pageA, 'chat-typing-ticks');

  // 5. B replies; the typing line goes away at once; A sees the reply.
  await inputB.pressSequentially('!', { delay: 20 });
  await inputB.press('Enter');
  await bubble(pageA, 'Hi back!').waitFor({ timeout: 5_000 });
  await typingA.filter({ hasText: 'typing' }).waitFor({ state: 'detached', timeout: 5_000 }).catch(async () => {
    assert.equal((await typingA.textContent())?.trim(), '', 'typing line cleared');
  });

  // 6. A has the chat open: B's reply is read, and B sees "read".
  await bubble(pageB, 'Hi back!').and(pageB.locator('[data-status="read"]')).waitFor({ timeout: 10_000 });
  const historyA = await bubbles(pageA);
  assert.deepEqual(historyA.map((b) => [b.text, b.mine]), [['Hello!', true], ['Hi back!', false]]);
  assert.equal(historyA[0].status, 'read');
  await screenshot(pageB, 'chat-read');

  // Phone width: the list and the chat one at a time.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const pagePhone = await phone.newPage();
  await loginViaUi(pagePhone, base, userA);
  await pagePhone.locator('.conv-item', { hasText: userB.name }).waitFor();
  assert.equal(await pagePhone.locator('.chat-pane').isVisible(), false, 'phone: only the list');
  await screenshot(pagePhone, 'phone-list');
  await pagePhone.locator('.conv-item', { hasText: userB.name }).click();
  await bubble(pagePhone, 'Hi back!').waitFor();
  assert.equal(await pagePhone.locator('.sidebar').isVisible(), false, 'phone: only the chat');
  await screenshot(pagePhone, 'phone-chat');
  await pagePhone.getByRole('button', { name: 'Back to conversations' }).click();
  await pagePhone.locator('.sidebar').waitFor();
  await phone.close();

  // 7. A goes offline: B sees the presence change in the header (after the server's grace).
  const subtitleB = pageB.locator('.chat-subtitle');
  await subtitleB.filter({ hasText: 'Online' }).waitFor({ timeout: 10_000 });
  await ctxA.close();
  await subtitleB.filter({ hasText: /Last seen|Offline/ }).waitFor({ timeout: 20_000 });
  await screenshot(pageB, 'presence-offline');

  // 8. Messages persist after logout and login.
  await pageB.getByRole('button', { name: 'Sign out' }).click();
  await pageB.locator('.auth-card').waitFor();
  await loginViaUi(pageB, base, userB);
  await pageB.locator('.conv-item', { hasText: userA.name }).click();
  await bubble(pageB, 'Hi back!').waitFor();
  const historyB = await bubbles(pageB);
  assert.deepEqual(historyB.map((b) => [b.text, b.mine]), [['Hello!', false], ['Hi back!', true]]);
  assert.equal(historyB[1].status, 'read', 'receipts persist too');

  assert.deepEqual(errors, [], 'no script errors');
  await ctxB.close();
});

test('content is rendered as text, never as HTML', { timeout: 60_000 }, async () => {
  const base = server.baseUrl;
  const a = newUser('Xavier Script');
  const b = newUser('Yara Text');
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const pageA = await ctxA.newPage();
  const pageB = await ctxB.newPage();
  await registerViaUi(pageB, base, b);
  await registerViaUi(pageA, base, a);
  await startDirectViaUi(pageA, b);
  const payload = '<img src=x onerror="window.__pwned=1"><b>bold</b>';
  await sendViaUi(pageA, payload);
  await pageB.locator('.conv-item', { hasText: a.name }).click();
  await bubble(pageB, 'bold').waitFor();
  assert.equal(await pageB.locator('.msg-text').first().textContent(), payload);
  assert.equal(await pageB.locator('.msg-text img, .msg-text b').count(), 0);
  assert.equal(await pageB.evaluate(() => /** @type {any} */ (window).__pwned), undefined);
  await ctxA.close();
  await ctxB.close();
});
