// The message lifecycle end to end against the real server, two users in two browser contexts:
// a reaction, an edit, a reply and a deletion made in one reach the other live; a reload
// keeps them (the change cursor and the sync).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newUser, registerViaUi, startDirectViaUi, sendViaUi } from './support/harness.mjs';

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
const row = (page, text) => page.locator('.msg-row').filter({ has: page.locator('.msg-text', { hasText: text }) });

test('lifecycle with a real server: react, edit, reply and delete reach the other user live, and survive a reload', { timeout: 180_000 }, async () => {
  const base = server.baseUrl;
  const userA = newUser('Alma Ash');
  const userB = newUser('Boris Birch');
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const pageA = await ctxA.newPage();
  const pageB = await ctxB.newPage();
  const errors = [];
  for (const p of [pageA, pageB]) p.on('pageerror', (e) => errors.push(e.message));
  try {
    await registerViaUi(pageB, base, userB);
    await registerViaUi(pageA, base, userA);
    for (const p of [pageA, pageB]) await p.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 10_000 });
    await startDirectViaUi(pageA, userB);
    await sendViaUi(pageA, 'First draft of the plan');
    await row(pageA, 'First draft of the plan').and(pageA.locator('[data-status="sent"], [data-status="delivered"], [data-status="read"]')).waitFor();

    // The lifecycle routes answer (an edit to the same text changes nothing).
    const probe = await pageA.evaluate(async () => {
      const c = /** @type {any} */ (window).chatClient;
      const id = c.activeConversationId;
      const m = c.messages(id).at(-1);
      try {
        await c.rest.editMessage(id, m.id, m.content);
        return 'ok';
      } catch (err) {
        return String(/** @type {any} */ (err).status);
      }
    });
    assert.equal(probe, 'ok', 'PATCH of a message answered');

    await pageB.locator('.conv-item', { hasText: userA.name }).click();
    await row(pageB, 'First draft of the plan').waitFor();

    // B reacts: A sees the chip live, not highlighted for A.
    await row(pageB, 'First draft').locator('.bubble').hover();
    await row(pageB, 'First draft').getByRole('button', { name: 'Message actions' }).click();
    await pageB.locator('.msg-menu').getByRole('menuitem', { name: 'React with 👍' }).click();
    await row(pageB, 'First draft').locator('.reaction-chip[data-emoji="👍"][aria-pressed="true"]').waitFor();
    const chipA = row(pageA, 'First draft').locator('.reaction-chip[data-emoji="👍"]');
    await chipA.waitFor({ timeout: 5_000 });
    assert.equal(await chipA.getAttribute('aria-pressed'), 'false');
    assert.equal(await chipA.getAttribute('title'), `${userB.name} reacted with 👍`);
    // A joins in: B's chip counts 2 and stays B's.
    await chipA.click();
    await row(pageB, 'First draft').locator('.reaction-chip[data-emoji="👍"][aria-pressed="true"] .reaction-count', { hasText: '2' }).waitFor({ timeout: 5_000 });

    // A edits (Up in the empty composer): B sees the new text and "(edited)".
    const inputA = pageA.locator('.composer-input');
    await inputA.focus();
    await inputA.press('ArrowUp');
    await inputA.fill('Final plan, agreed');
    await inputA.press('Enter');
    await row(pageB, 'Final plan, agreed').locator('.msg-edited').waitFor({ timeout: 5_000 });

    // B replies: A sees the quote.
    await row(pageB, 'Final plan').locator('.bubble').hover();
    await row(pageB, 'Final plan').getByRole('button', { name: 'Message actions' }).click();
    await pageB.locator('.msg-menu').getByRole('menuitem', { name: 'Reply' }).click();
    await pageB.locator('.composer-input').fill('Sounds good to me');
    await pageB.locator('.composer-input').press('Enter');
    const quoteA = row(pageA, 'Sounds good to me').locator('.msg-quote');
    await quoteA.waitFor({ timeout: 5_000 });
    assert.equal(await quoteA.locator('.msg-quote-text').textContent(), 'Final plan, agreed');

    // A deletes the original: B sees the tombstone and the quote marked deleted.
    await row(pageA, 'Final plan').locator('.bubble').hover();
    await row(pageA, 'Final plan').getByRole('button', { name: 'Message actions' }).click();
    await pageA.locator('.msg-menu').getByRole('menuitem', { name: 'Delete' }).click();
    await pageA.getByRole('dialog', { name: 'Delete message?' }).getByRole('button', { name: 'Delete' }).click();
    await pageB.locator('.msg-row.is-deleted', { hasText: 'This message was deleted' }).waitFor({ timeout: 5_000 });
    await row(pageB, 'Sounds good to me').locator('.msg-quote-text', { hasText: 'Original message was deleted' }).waitFor();

    // B goes away; A edits nothing more but reacts to B's reply; B reloads and has it.
    await pageB.close();
    await row(pageA, 'Sounds good to me').locator('.bubble').hover();
    await row(pageA, 'Sounds good to me').getByRole('button', { name: 'Message actions' }).click();
    await pageA.locator('.msg-menu').getByRole('menuitem', { name: 'React with 🙏' }).click();
    await row(pageA, 'Sounds good to me').locator('.reaction-chip[data-emoji="🙏"][aria-pressed="true"]').waitFor();
    const pageB2 = await ctxB.newPage();
    pageB2.on('pageerror', (e) => errors.push(e.message));
    await pageB2.goto(`${base}/`);
    await pageB2.locator('.conv-item', { hasText: userA.name }).click();
    await row(pageB2, 'Sounds good to me').locator('.reaction-chip[data-emoji="🙏"][aria-pressed="false"]').waitFor({ timeout: 10_000 });
    await pageB2.locator('.msg-row.is-deleted').waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});
