// Offline as a state, bursts and long histories, in a real browser against a scripted server
// (no chat server): the browser's own offline switch, a link that goes silent, 60 messages in
// 0.2 s, 10,000 messages in one conversation, and the small defects found by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot, sendViaUi } from './support/harness.mjs';
import { scriptedSuite } from './support/scripted.mjs';

const scripted = scriptedSuite();

/** Short send and heartbeat timings: a whole retry schedule is 2.9 s, a silent link shows in 1.1 s. */
const TIMINGS = { sendRetryMs: [300, 600, 1200], sendFinalAckMs: 800, pongTimeoutMs: 800 };

/**
 * A scripted server with a direct conversation with Bob (online), `history` messages in it, and
 * the page signed in with that conversation open.
 * @param {{history?: number, viewport?: {width: number, height: number}}} [opts]
 */
async function withBob({ history = 0, viewport } = {}) {
  const s = await scripted({ viewport });
  await s.ctx.addInitScript((timings) => {
    /** @type {any} */ (window).CHAT_CONFIG = { timings };
  }, TIMINGS);
  s.backend.addUser('u-bob', 'Bob');
  s.backend.addConversation('d1', { members: ['u-me', 'u-bob'] });
  for (let i = 1; i <= history; i++) s.backend.addMessage('d1', i % 3 ? 'u-bob' : 'u-me', `Earlier message number ${i}, long enough to take a line of its own.`);
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Bob' }).click();
  s.push({ type: 'presence', user_id: 'u-bob', status: 'online', last_seen: null });
  await s.page.locator('.chat-subtitle', { hasText: 'Online' }).waitFor();
  return s;
}

/** @param {import('playwright-core').Page} page */
function distanceFromBottom(page) {
  return page.evaluate(() => {
    const s = /** @type {HTMLElement} */ (document.querySelector('.messages'));
    return s.scrollHeight - s.scrollTop - s.clientHeight;
  });
}

/** @param {import('playwright-core').Page} page @param {string} text */
function row(page, text) {
  return page.locator('.msg-row.is-mine', { hasText: text });
}

test('browser offline: a banner, sends stay pending, presence is last known; back online they go out once', { timeout: 60_000 }, async () => {
  const s = await withBob();
  const { page } = s;
  await s.ctx.setOffline(true);
  const banner = page.locator('.chat .banner');
  await banner.filter({ hasText: 'You are offline. Messages will be sent when you are back.' }).waitFor({ timeout: 5_000 });
  await page.locator('.chat-subtitle', { hasText: 'Last known: online' }).waitFor();
  assert.equal(await page.locator('.chat-header .presence-dot.is-unknown').count(), 1, 'the dot no longer claims "online"');
  for (const text of ['one while offline', 'two while offline', 'three while offline']) await sendViaUi(page, text);
  for (const text of ['one', 'two', 'three']) await row(page, `${text} while offline`).and(page.locator('[data-status="sending"]')).waitFor();
  // Longer than the whole retry schedule (2.9 s): pending, not "Not sent".
  await page.waitForTimeout(3_500);
  assert.equal(await page.locator('.msg-row.is-failed').count(), 0, 'nothing failed while offline');
  assert.equal(await page.locator('.msg-row.is-mine[data-status="sending"]').count(), 3);
  assert.equal(s.sent.filter((f) => f.type === 'message').length, 0, 'nothing was written to a socket while offline');
  await screenshot(page, 'offline-banner-pending');

  await s.ctx.setOffline(false);
  // Reconnects at once (not at the next backoff step), then the three go out, once each.
  for (const text of ['one', 'two', 'three']) await row(page, `${text} while offline`).and(page.locator('[data-status="sent"]')).waitFor({ timeout: 5_000 });
  await banner.waitFor({ state: 'hidden' });
  const frames = s.sent.filter((f) => f.type === 'message');
  assert.deepEqual(frames.map((f) => f.content).sort(), ['one while offline', 'three while offline', 'two while offline']);
  assert.equal(new Set(frames.map((f) => f.temp_id)).size, 3);
  assert.equal(s.backend.convs.get('d1').messages.length, 3, 'stored once each');
  assert.deepEqual(s.errors, []);
  await screenshot(page, 'offline-back-online');
  await s.ctx.close();
});

test('a silent link (socket open, nothing answers): offline after the probe, pending, then sent once', { timeout: 60_000 }, async () => {
  const s = await withBob();
  const { page } = s;
  s.state.pong = false;
  s.state.ack = false;
  await sendViaUi(page, 'into a silent link');
  // The late ack pings the link; no pong: the socket is given up and the banner says offline.
  await page.waitForFunction(() => /** @type {any} */ (window).chatClient.offline === true, null, { timeout: 5_000 });
  await page.locator('.chat .banner', { hasText: 'You are offline.' }).waitFor({ timeout: 2_000 }).catch(() => {
    /* the scripted server answers the reconnect at once, so the banner may be brief */
  });
  await page.waitForTimeout(3_500);
  assert.equal(await page.locator('.msg-row.is-failed').count(), 0, 'a silent link never fails a send');
  await row(page, 'into a silent link').and(page.locator('[data-status="sending"]')).waitFor();
  s.state.pong = true;
  s.state.ack = true;
  await row(page, 'into a silent link').and(page.locator('[data-status="sent"]')).waitFor({ timeout: 10_000 });
  assert.equal(s.backend.convs.get('d1').messages.length, 1, 'stored once');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('server unreachable: "Reconnecting..." and the peer is no longer shown online', { timeout: 60_000 }, async () => {
  const s = await withBob();
  const { page } = s;
  await s.goDown();
  await page.locator('.chat .banner', { hasText: 'Reconnecting...' }).waitFor();
  await page.locator('.chat-subtitle', { hasText: 'Last known: online' }).waitFor();
  assert.equal(await page.locator('.conv-item .presence-dot.is-online').count(), 0, 'the list does not claim "online" either');
  await screenshot(page, 'reconnecting-last-known');
  s.comeBack();
  await page.evaluate(() => /** @type {any} */ (window).chatClient.reconnect());
  await page.locator('.chat .banner').waitFor({ state: 'hidden', timeout: 5_000 });
  s.push({ type: 'presence', user_id: 'u-bob', status: 'online', last_seen: null });
  await page.locator('.chat-subtitle', { hasText: /^Online$/ }).waitFor();
  await s.ctx.close();
});

test('60 messages within 0.2 s at the bottom: the view stays at the bottom', { timeout: 60_000 }, async () => {
  const s = await withBob({ history: 30 });
  const { page } = s;
  await page.waitForFunction(() => document.querySelectorAll('.msg-row').length >= 30);
  assert.ok((await distanceFromBottom(page)) < 2, 'starts at the bottom');
  const t0 = Date.now();
  for (let i = 1; i <= 60; i++) {
    s.push({ type: 'message', message: s.backend.addMessage('d1', 'u-bob', `Burst message ${i} of sixty`) });
    if (i % 6 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(Date.now() - t0 < 1_000, 'the burst was sent quickly');
  await page.locator('.msg-row', { hasText: 'Burst message 60 of sixty' }).waitFor();
  // Let any smooth scroll finish.
  await page.waitForFunction(() => {
    const el = /** @type {HTMLElement} */ (document.querySelector('.messages'));
    return el.scrollHeight - el.scrollTop - el.clientHeight < 2;
  }, null, { timeout: 3_000 });
  await page.waitForTimeout(500);
  assert.ok((await distanceFromBottom(page)) < 2, 'still at the bottom');
  assert.equal(await page.locator('.new-messages-btn').isHidden(), true, 'no "new messages" button at the bottom');
  await screenshot(page, 'burst-at-bottom');
  await s.ctx.close();
});

test('10,000 messages: the page holds a window of them, scrolling up puts more back, typing works', { timeout: 120_000 }, async () => {
  const s = await withBob();
  const { page } = s;
  for (let i = 1; i <= 10_000; i++) {
    s.push({ type: 'message', message: s.backend.addMessage('d1', i % 2 ? 'u-bob' : 'u-me', `Message ${i} of ten thousand`) });
    if (i % 500 === 0) await new Promise((r) => setTimeout(r, 10));
  }
  await page.locator('.msg-row', { hasText: 'Message 10000 of ten thousand' }).waitFor({ timeout: 60_000 });
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).chatClient.messages('d1').length), 10_000, 'all held by the client');
  const inPage = await page.locator('.msg-row').count();
  assert.ok(inPage <= 300, `only a window is in the page: ${inPage} rows`);
  await page.waitForFunction(() => {
    const el = /** @type {HTMLElement} */ (document.querySelector('.messages'));
    return el.scrollHeight - el.scrollTop - el.clientHeight < 2;
  }, null, { timeout: 5_000 });
  // Typing: the composer takes keys as usual.
  const input = page.getByRole('textbox', { name: 'Message' });
  await input.pressSequentially('typing in a long conversation');
  assert.equal(await input.inputValue(), 'typing in a long conversation');
  // Scrolling to the top puts back older messages the client holds (no request needed).
  const requests = s.backend.calls.length;
  await page.evaluate(() => {
    /** @type {HTMLElement} */ (document.querySelector('.messages')).scrollTop = 0;
  });
  await page.waitForFunction((n) => document.querySelectorAll('.msg-row').length > n, inPage, { timeout: 5_000 });
  const revealed = await page.locator('.msg-row').count();
  assert.ok(revealed > inPage && revealed <= inPage + 200, `scrolling up revealed ${revealed - inPage} more`);
  assert.equal(s.backend.calls.filter((c, i) => i >= requests && c.path.includes('/messages')).length, 0, 'held messages come back without a request');
  await screenshot(page, 'long-history-scrolled-up');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('"Not sent. Tap to retry." is in view at the bottom of a full list; ticks on my bubble are legible', { timeout: 60_000 }, async () => {
  const s = await withBob({ history: 40 });
  const { page } = s;
  await sendViaUi(page, 'This one is delivered');
  const m = s.backend.convs.get('d1').messages.at(-1);
  s.push({ type: 'delivered', conversation_id: 'd1', message_id: m.id, seq: m.seq, user_id: 'u-bob' });
  await row(page, 'This one is delivered').and(page.locator('[data-status="delivered"]')).waitFor();
  const tick = row(page, 'This one is delivered').locator('.ticks');
  const color = await tick.evaluate((el) => getComputedStyle(el).color);
  assert.equal(color, 'rgb(255, 255, 255)', 'delivered ticks are opaque white on my bubble');
  s.state.ack = false;
  await sendViaUi(page, 'This one will not be confirmed');
  const retry = page.getByRole('button', { name: 'Not sent. Tap to retry.' });
  await retry.waitFor({ timeout: 10_000 });
  await page.waitForTimeout(400);
  const box = await retry.boundingBox();
  const view = await page.locator('.messages').boundingBox();
  assert.ok(box && view, 'both are laid out');
  assert.ok(box.y + box.height <= view.y + view.height + 0.5, `the retry line is cut off: its bottom ${box.y + box.height} > the list's ${view.y + view.height}`);
  await screenshot(page, 'retry-line-in-view');
  await s.ctx.close();
});
