// The local cache in a real browser (real IndexedDB), against a scripted server that can be
// taken down: a reload while the server is unreachable shows the list, the open conversation
// (its URL kept), its messages and the queued ones as pending; when the server is back the
// queue goes out exactly once and the page reconciles without duplicates or flicker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot, sendViaUi, bubbles } from './support/harness.mjs';
import { scriptedSuite } from './support/scripted.mjs';

const scripted = scriptedSuite();

/**
 * One conversation's cached window as the page's IndexedDB holds it (null when none). Never
 * creates the database: opening a missing one would make an empty, store-less version 1.
 * @param {import('playwright-core').Page} page @param {string} userId @param {string} id
 */
function cachedThread(page, userId, id) {
  return page.evaluate(
    async ([userId, id]) => {
      const name = `chat.cache.${userId}`;
      if (!(await indexedDB.databases()).some((d) => d.name === name)) return null;
      const db = await new Promise((res, rej) => {
        const r = indexedDB.open(name);
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      try {
        return await new Promise((res, rej) => {
          const q = db.transaction('threads').objectStore('threads').get(id);
          q.onsuccess = () => res(q.result ?? null);
          q.onerror = () => rej(q.error);
        });
      } finally {
        db.close();
      }
    },
    [userId, id],
  );
}

test('reload while the server is down: list, open conversation and 3 queued messages from the cache; then each sent once', { timeout: 90_000 }, async () => {
  const s = await scripted();
  const { backend, page } = s;
  backend.addUser('u-bob', 'Bob Marley');
  backend.addUser('u-cat', 'Cat Stevens');
  backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  backend.addConversation('g1', { type: 'group', title: 'Weekend trip', members: ['u-me', 'u-bob', 'u-cat'] });
  backend.addConversation('c2', { members: ['u-me', 'u-cat'] });
  backend.addMessage('g1', 'u-cat', 'Tent or cabin?');
  backend.addMessage('c2', 'u-cat', 'Call me later');
  const history = ['Hey, are you around?', 'Yes, what is up?', 'Dinner on Friday?', 'Sure, where?', 'The usual place at 8'];
  history.forEach((text, i) => backend.addMessage('c1', i % 2 ? 'u-me' : 'u-bob', text));

  await s.signIn();
  await page.locator('.conv-item', { hasText: 'Bob Marley' }).click();
  await page.locator('.msg-text', { hasText: 'The usual place at 8' }).waitFor();
  // A live message: the cache follows live events, not only history loads.
  s.push({ type: 'message', message: backend.addMessage('c1', 'u-bob', 'Live before the outage') });
  await page.locator('.msg-text', { hasText: 'Live before the outage' }).waitFor();
  const url = page.url();
  assert.match(url, /#\/c\/c1$/);
  for (let i = 0; i < 50; i++) {
    const row = await cachedThread(page, 'u-me', 'c1');
    if (row?.messages?.length === 6) break;
    await page.waitForTimeout(100);
  }
  assert.equal((await cachedThread(page, 'u-me', 'c1'))?.messages?.length, 6, 'the open conversation is cached');

  // The server goes away; three messages are written and wait in the queue.
  await s.goDown();
  await page.locator('.chat .banner', { hasText: 'Reconnecting...' }).waitFor({ timeout: 10_000 });
  const queued = ['Queued one', 'Queued two', 'Queued three'];
  for (const text of queued) await sendViaUi(page, text);
  for (const text of queued) await page.locator('.msg-row[data-status="sending"]', { hasText: text }).waitFor();
  await screenshot(page, 'cache-before-reload');
  const sentBefore = s.sent.filter((f) => f.type === 'message').length;

  // Reload with the server still down. From the first paint on, note whether the empty list
  // ("No conversations yet") or a failed history load is ever shown, even for a moment.
  await page.addInitScript(() => {
    const w = /** @type {any} */ (window);
    w.__seen = { empty: false, loadError: false };
    new MutationObserver(() => {
      const empty = document.querySelector('.list-empty');
      if (empty && !(/** @type {HTMLElement} */ (empty).hidden) && /No conversations yet/.test(empty.textContent ?? '')) w.__seen.empty = true;
      if (document.querySelector('.history-error')) w.__seen.loadError = true;
    }).observe(document, { childList: true, subtree: true, attributes: true });
  });
  const refusedBefore = s.state.refusedRequests;
  await page.reload();
  await page.locator('.chat .chat-title', { hasText: 'Bob Marley' }).waitFor({ timeout: 10_000 });
  for (const text of queued) await page.locator('.msg-row[data-status="sending"]', { hasText: text }).waitFor({ timeout: 10_000 });
  await page.locator('.msg-text', { hasText: 'Live before the outage' }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.conv-item').length === 3);
  await page.waitForTimeout(500); // let the failed list load land: nothing may change after it
  assert.equal(page.url(), url, 'the open conversation stays in the URL');
  assert.ok(s.state.refusedRequests > refusedBefore, 'the page did ask the server, which did not answer');
  const names = await page.locator('.conv-item .conv-name').allTextContents();
  assert.deepEqual([...names].sort(), ['Bob Marley', 'Cat Stevens', 'Weekend trip']);
  assert.equal(await page.locator('.list-empty').isVisible(), false, 'no "No conversations yet"');
  assert.equal(await page.getByText('No conversations yet').count(), 0);
  assert.equal(await page.locator('.history-error').count(), 0, 'no "Could not load messages"');
  assert.deepEqual(await page.evaluate(() => /** @type {any} */ (window).__seen), { empty: false, loadError: false }, 'neither shown at any moment of the reload');
  const offline = await bubbles(page);
  assert.deepEqual(
    offline.map((b) => b.text),
    [...history, 'Live before the outage', ...queued],
  );
  assert.deepEqual(
    offline.filter((b) => b.status === 'sending').map((b) => b.text),
    queued,
    'the queued ones, and only they, are pending',
  );
  assert.equal(await page.locator('.chat .banner', { hasText: 'Reconnecting...' }).isVisible(), true);
  await screenshot(page, 'cache-offline-reload');

  // While we were away Bob wrote again. Watch the DOM from here: nothing shown may be removed
  // and put back (a flicker), and the list and messages never shrink.
  backend.addMessage('c1', 'u-bob', 'While you were away');
  await page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__kept = [...document.querySelectorAll('.conv-li, .msg-row')];
    w.__min = { list: Infinity, rows: Infinity };
    const note = () => {
      w.__min.list = Math.min(w.__min.list, document.querySelectorAll('.conv-li').length);
      w.__min.rows = Math.min(w.__min.rows, document.querySelectorAll('.msg-row').length);
    };
    note();
    w.__observer = new MutationObserver(note);
    w.__observer.observe(document.body, { childList: true, subtree: true });
  });

  // The server is back; the page reconnects as soon as it is shown again.
  s.comeBack();
  await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await page.waitForFunction(() => /** @type {any} */ (window).chatClient.state === 'connected', null, { timeout: 15_000 });
  await page.locator('.msg-text', { hasText: 'While you were away' }).waitFor({ timeout: 10_000 });
  await page.waitForFunction(() => document.querySelectorAll('.msg-row[data-status="sending"]').length === 0, null, { timeout: 10_000 });
  await page.waitForTimeout(1500); // past the first resend time: nothing more may go out

  const out = s.sent.filter((f) => f.type === 'message');
  assert.equal(sentBefore, 0, 'nothing went out while the server was down');
  assert.deepEqual(out.map((f) => f.content), queued, 'each queued message sent once, in order');
  assert.equal(new Set(out.map((f) => f.temp_id)).size, 3);
  assert.deepEqual(
    backend.convs.get('c1').messages.map((m) => m.content),
    [...history, 'Live before the outage', 'While you were away', ...queued],
    'the server holds each once',
  );
  const online = await bubbles(page);
  assert.deepEqual(online.map((b) => b.text), [...history, 'Live before the outage', 'While you were away', ...queued], 'in the server\'s order');
  assert.equal(new Set(online.map((b) => b.text)).size, online.length, 'no duplicates');
  assert.deepEqual(online.filter((b) => queued.includes(b.text)).map((b) => b.status), ['sent', 'sent', 'sent']);
  assert.equal(await page.locator('.conv-item').count(), 3);
  const flicker = await page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__observer.disconnect();
    return { gone: w.__kept.filter((/** @type {Element} */ el) => !el.isConnected).length, kept: w.__kept.length, min: w.__min };
  });
  assert.equal(flicker.gone, 0, `every list item and message shown from the cache is still the same element (${flicker.kept})`);
  assert.deepEqual(flicker.min, { list: 3, rows: 9 }, 'the list and the messages never shrank');
  assert.equal(await page.locator('.chat .banner').isVisible(), false);
  assert.deepEqual(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('chat.outbox'))), [], 'the queue is empty');
  await screenshot(page, 'cache-reconciled');

  // Signing out deletes the cache.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('.auth-card').waitFor();
  await page.waitForFunction(async () => !(await indexedDB.databases()).some((d) => d.name?.startsWith('chat.cache.')), null, { timeout: 5_000 });
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});
