// The web client's rendering rules in a real browser, against a scripted server: the REST API
// answered by the in-memory backend of the unit tests and a WebSocket the test plays. No chat
// server needed; every frame is chosen by the test, so the checks are exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot, sendViaUi, bubbles } from './support/harness.mjs';
import { scriptedSuite } from './support/scripted.mjs';

const scripted = scriptedSuite();

test('typing line wording for one, two and three people, and auto-hide after 4 s', { timeout: 60_000 }, async () => {
  const s = await scripted();
  s.backend.addConversation('g1', { type: 'group', title: 'Design crew', members: ['u-me', 'u-ann', 'u-ben', 'u-cat'] });
  s.backend.users.get('u-ann').display_name = 'Ann';
  s.backend.users.get('u-ben').display_name = 'Ben';
  s.backend.users.get('u-cat').display_name = 'Cat';
  for (const p of s.backend.convs.get('g1').conv.participants) p.display_name = s.backend.users.get(p.user_id).display_name;
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Design crew' }).click();
  const line = s.page.locator('.typing-line');
  assert.equal(await line.getAttribute('aria-live'), 'polite');
  s.push({ type: 'typing', conversation_id: 'g1', user_id: 'u-ann', is_typing: true });
  await line.filter({ hasText: 'Ann is typing...' }).waitFor();
  s.push({ type: 'typing', conversation_id: 'g1', user_id: 'u-ben', is_typing: true });
  await line.filter({ hasText: 'Ann and Ben are typing...' }).waitFor();
  s.push({ type: 'typing', conversation_id: 'g1', user_id: 'u-cat', is_typing: true });
  await line.filter({ hasText: '3 people are typing...' }).waitFor();
  s.push({ type: 'typing', conversation_id: 'g1', user_id: 'u-cat', is_typing: false });
  await line.filter({ hasText: 'Ann and Ben are typing...' }).waitFor();
  // No refresh for 4 s: hidden.
  const t0 = Date.now();
  await s.page.waitForFunction(() => document.querySelector('.typing-text')?.textContent === '', null, { timeout: 8000 });
  assert.ok(Date.now() - t0 >= 2500, 'not hidden early');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('ticks: sending, sent, delivered, read; "Read by k of n" in a group; failed with tap to retry', { timeout: 60_000 }, async () => {
  const s = await scripted();
  s.backend.addConversation('g1', { type: 'group', title: 'Weekend trip', members: ['u-me', 'u-ann', 'u-ben', 'u-cat'] });
  s.backend.addMessage('g1', 'u-ann', 'Who is bringing the tent?');
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Weekend trip' }).click();
  await sendViaUi(s.page, 'I will!');
  const mine = s.page.locator('.msg-row.is-mine', { hasText: 'I will!' });
  await mine.and(s.page.locator('[data-status="sent"]')).waitFor();
  const m = s.backend.convs.get('g1').messages.at(-1);
  for (const u of ['u-ann', 'u-ben', 'u-cat']) s.push({ type: 'delivered', conversation_id: 'g1', message_id: m.id, seq: m.seq, user_id: u });
  await mine.and(s.page.locator('[data-status="delivered"]')).waitFor();
  s.push({ type: 'read_receipt', conversation_id: 'g1', message_id: m.id, seq: m.seq, read_by: 'u-ann', read_at: new Date().toISOString() });
  s.push({ type: 'read_receipt', conversation_id: 'g1', message_id: m.id, seq: m.seq, read_by: 'u-ben', read_at: new Date().toISOString() });
  await s.page.locator('.read-line', { hasText: 'Read by 2 of 3' }).waitFor();
  s.push({ type: 'typing', conversation_id: 'g1', user_id: 'u-cat', is_typing: true });
  await s.page.locator('.typing-line', { hasText: 'is typing...' }).waitFor();
  await screenshot(s.page, 'group-chat-ticks-typing');
  s.push({ type: 'read_receipt', conversation_id: 'g1', message_id: m.id, seq: m.seq, read_by: 'u-cat', read_at: new Date().toISOString() });
  await mine.and(s.page.locator('[data-status="read"]')).waitFor();

  // No ack at all: resent with the same temp_id, then "Not sent. Tap to retry."
  s.state.ack = false;
  await sendViaUi(s.page, 'This one will fail');
  const failing = s.page.locator('.msg-row.is-mine', { hasText: 'This one will fail' });
  await failing.and(s.page.locator('[data-status="sending"]')).waitFor();
  await failing.and(s.page.locator('[data-status="failed"]')).waitFor({ timeout: 20_000 });
  const attempts = s.sent.filter((f) => f.type === 'message' && f.content === 'This one will fail');
  assert.equal(attempts.length, 4, 'sent, then resent after 1, 2 and 4 s');
  assert.equal(new Set(attempts.map((f) => f.temp_id)).size, 1, 'always the same temp_id');
  await screenshot(s.page, 'failed-message');
  s.state.ack = true;
  await failing.getByRole('button', { name: 'Not sent. Tap to retry.' }).click();
  await failing.and(s.page.locator('[data-status="sent"]')).waitFor();
  assert.equal((await bubbles(s.page)).filter((b) => b.text === 'This one will fail').length, 1);
  await s.ctx.close();
});

test('auto-scroll only near the bottom; otherwise a "new messages" button; history pages in upward', { timeout: 60_000 }, async () => {
  const s = await scripted();
  s.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  s.backend.users.get('u-bob').display_name = 'Bob';
  s.backend.convs.get('c1').conv.participants[1].display_name = 'Bob';
  for (let i = 1; i <= 130; i++) s.backend.addMessage('c1', i % 3 ? 'u-bob' : 'u-me', `Message number ${i}`);
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Bob' }).click();
  await s.page.locator('.msg-text', { hasText: 'Message number 130' }).waitFor();
  const scroller = s.page.locator('.messages');
  const atBottom = () => scroller.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 5);
  assert.equal(await atBottom(), true, 'opens at the newest message');

  // Near the bottom: a new message scrolls into view.
  const live = (/** @type {string} */ text) => {
    const m = s.backend.addMessage('c1', 'u-bob', text);
    s.push({ type: 'message', message: m });
  };
  live('Live while at the bottom');
  await s.page.locator('.msg-text', { hasText: 'Live while at the bottom' }).waitFor();
  await s.page.waitForFunction(() => {
    const el = /** @type {HTMLElement} */ (document.querySelector('.messages'));
    return el.scrollHeight - el.scrollTop - el.clientHeight < 5;
  });

  // Scrolled up to read: no jump, a button instead.
  await scroller.evaluate((el) => el.scrollTo({ top: el.scrollHeight / 2 }));
  await s.page.waitForTimeout(200);
  const before = await scroller.evaluate((el) => el.scrollTop);
  live('Arrives while reading history');
  const button = s.page.locator('.new-messages-btn');
  await button.filter({ hasText: '1 new message' }).waitFor();
  assert.equal(Math.abs((await scroller.evaluate((el) => el.scrollTop)) - before) < 2, true, 'the reader was not moved');
  await button.click();
  await button.waitFor({ state: 'hidden' });
  await s.page.waitForFunction(() => {
    const el = /** @type {HTMLElement} */ (document.querySelector('.messages'));
    return el.scrollHeight - el.scrollTop - el.clientHeight < 5;
  });

  // Scrolling to the top pages older history in, keeping the reading position.
  assert.equal(await s.page.locator('.msg-text', { hasText: /^Message number 1$/ }).count(), 0);
  for (let i = 0; i < 5 && (await s.page.locator('.msg-text', { hasText: /^Message number 1$/ }).count()) === 0; i++) {
    await scroller.evaluate((el) => el.scrollTo({ top: 0 }));
    await s.page.waitForTimeout(400);
  }
  await s.page.locator('.msg-text', { hasText: /^Message number 1$/ }).waitFor();
  await s.page.locator('.history-start', { hasText: 'This is the beginning of your conversation.' }).waitFor();
  const texts = (await bubbles(s.page)).map((b) => b.text);
  assert.equal(texts.length, 132);
  assert.equal(new Set(texts).size, 132, 'no duplicates');
  assert.ok(s.backend.calls.some((c) => c.path.includes('before=')), 'history fetched with before=');
  await s.ctx.close();
});

test('keyboard: Enter sends, Shift+Enter adds a line; composer is labelled', { timeout: 60_000 }, async () => {
  const s = await scripted();
  s.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  await s.signIn();
  await s.page.locator('.conv-item').first().focus();
  await s.page.keyboard.press('Enter');
  const input = s.page.getByLabel('Message', { exact: true });
  await input.waitFor();
  await input.focus();
  await s.page.keyboard.type('first line');
  await s.page.keyboard.press('Shift+Enter');
  await s.page.keyboard.type('second line');
  await s.page.keyboard.press('Enter');
  await s.page.locator('.msg-text', { hasText: 'second line' }).waitFor();
  assert.equal(await s.page.locator('.msg-text').last().textContent(), 'first line\nsecond line');
  assert.equal(await input.inputValue(), '');
  const typing = s.sent.filter((f) => f.type === 'typing').map((f) => f.is_typing);
  assert.equal(typing[0], true);
  assert.equal(typing.at(-1), false, 'typing stopped on send');
  assert.ok(typing.filter((t) => t).length <= 2, 'typing true debounced');
  await s.ctx.close();
});

test('phone width: the list and the chat one at a time, with a way back', { timeout: 60_000 }, async () => {
  const s = await scripted({ viewport: { width: 390, height: 844 } });
  s.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  s.backend.users.get('u-bob').display_name = 'Bob Marley';
  s.backend.convs.get('c1').conv.participants[1].display_name = 'Bob Marley';
  s.backend.addConversation('g1', { type: 'group', title: 'Family', members: ['u-me', 'u-ann', 'u-ben'] });
  s.backend.addMessage('g1', 'u-ann', 'Dinner at 8?');
  s.backend.addMessage('c1', 'u-bob', 'Are you coming tonight? I saved you a seat near the stage, it is going to be great.');
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Bob Marley' }).waitFor();
  assert.equal(await s.page.locator('.chat-pane').isVisible(), false);
  await screenshot(s.page, 'phone-list-scripted');
  await s.page.locator('.conv-item', { hasText: 'Bob Marley' }).click();
  await s.page.locator('.msg-text', { hasText: 'saved you a seat' }).waitFor();
  assert.equal(await s.page.locator('.sidebar').isVisible(), false);
  await sendViaUi(s.page, 'On my way!');
  s.push({ type: 'typing', conversation_id: 'c1', user_id: 'u-bob', is_typing: true });
  await s.page.locator('.typing-line', { hasText: 'Bob Marley is typing...' }).waitFor();
  await screenshot(s.page, 'phone-chat-scripted');
  await s.page.getByRole('button', { name: 'Back to conversations' }).click();
  await s.page.locator('.sidebar').waitFor();
  assert.equal(await s.page.locator('.chat-pane').isVisible(), false);
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('new group through search, then rename, add and remove members, and leave', { timeout: 60_000 }, async () => {
  const s = await scripted();
  s.backend.addUser('u-ann', 'Ann Lee');
  s.backend.addUser('u-ben', 'Ben Ortiz');
  s.backend.addUser('u-cat', 'Cat Nguyen');
  await s.signIn();
  await s.page.getByRole('button', { name: 'New chat' }).first().click();
  const dialog = s.page.getByRole('dialog');
  await dialog.getByRole('tab', { name: 'New group' }).click();
  await dialog.getByLabel('Group name').fill('Book club');
  const search = dialog.getByPlaceholder('Search people by name or email');
  await search.fill('Ann');
  await dialog.locator('.user-item', { hasText: 'Ann Lee' }).click();
  await search.fill('Ben');
  await dialog.locator('.user-item', { hasText: 'Ben Ortiz' }).click();
  await dialog.locator('.chip', { hasText: 'Ann Lee' }).waitFor();
  await screenshot(s.page, 'new-group-dialog');
  await dialog.getByRole('button', { name: 'Create group' }).click();
  await s.page.locator('.chat-title', { hasText: 'Book club' }).waitFor();
  const created = s.backend.callsTo('POST', '/conversations').at(-1);
  assert.deepEqual(created.body, { type: 'group', title: 'Book club', participant_ids: ['u-ann', 'u-ben'] });

  await s.page.getByRole('button', { name: 'Conversation details' }).click();
  const info = s.page.getByRole('dialog');
  // We are connected: our own line of the members list says so (it said "Offline").
  await info.locator('.members .user-item', { hasText: '(you)' }).locator('.user-email', { hasText: 'Online' }).waitFor({ timeout: 5_000 });
  await info.getByLabel('Group name').fill('Book club (fiction)');
  await info.getByRole('button', { name: 'Save' }).click();
  await s.page.locator('.chat-title', { hasText: 'Book club (fiction)' }).waitFor();
  const toastBox = await s.page.locator('.toast', { hasText: 'Group renamed.' }).boundingBox();
  const composerBox = await s.page.locator('.composer').boundingBox();
  assert.ok(toastBox && composerBox, 'the toast and the composer are shown');
  assert.ok(toastBox.y + toastBox.height <= composerBox.y, `the toast (${JSON.stringify(toastBox)}) covers the composer (${JSON.stringify(composerBox)})`);
  // Above the open dialog (the top layer), not dimmed behind its backdrop.
  assert.ok(await s.page.locator('.toasts').evaluate((el) => el.matches(':popover-open')), 'the toasts are in the top layer');
  await screenshot(s.page, 'group-renamed-toast');
  await info.getByPlaceholder('Add people').fill('Cat');
  await info.locator('.user-item', { hasText: 'Cat Nguyen' }).click();
  await info.locator('.members .user-item', { hasText: 'Cat Nguyen' }).waitFor();
  await info.getByRole('button', { name: 'Remove Ben Ortiz' }).click();
  await info.locator('.members .user-item', { hasText: 'Ben Ortiz' }).waitFor({ state: 'detached' });
  await screenshot(s.page, 'group-details-dialog');
  s.page.once('dialog', (d) => d.accept());
  await info.getByRole('button', { name: 'Leave group' }).click();
  await s.page.locator('.empty-chat').waitFor();
  assert.equal(await s.page.locator('.conv-item', { hasText: 'Book club' }).count(), 0);
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('close 4001 with a refused refresh: back to sign-in with a notice, nothing left running', { timeout: 60_000 }, async () => {
  const s = await scripted();
  s.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  await s.signIn();
  s.backend.refreshFails = true;
  const sockets = [];
  s.page.on('websocket', (ws) => sockets.push(ws));
  // The server ends the session: token expired and the refresh token is refused.
  await s.close(4001, 'token expired');
  await s.page.locator('.auth-card').waitFor();
  await s.page.locator('.form-error', { hasText: 'Your session has expired. Please sign in again.' }).waitFor();
  assert.equal(await s.page.evaluate(() => /** @type {any} */ (window).chatClient.isAuthenticated), false);
  await s.page.waitForTimeout(2500);
  assert.equal(sockets.length, 0, 'no reconnect attempt without a session');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});
