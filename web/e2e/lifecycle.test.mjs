// The message lifecycle in the web client, against the scripted server (REST answered by the
// in-memory backend, which broadcasts the change frames a real server sends; the socket played
// by the test): the message menu by hover, keyboard and long press; edit (menu, up arrow,
// Escape), delete with confirmation, reactions (chips, highlight, who, picker), replies (bar,
// quote, jump to the original, loading around it), a refused edit rolled back with an error,
// and live changes by others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot } from './support/harness.mjs';
import { scriptedSuite } from './support/scripted.mjs';

const scripted = scriptedSuite();

/** A group with three messages (mine in the middle), signed in and open. */
async function bookClub(opts = {}) {
  const s = await scripted(opts);
  const b = s.backend;
  b.addConversation('g1', { type: 'group', title: 'Book club', members: ['u-me', 'u-ann', 'u-ben'] });
  for (const [id, name] of [['u-ann', 'Ann'], ['u-ben', 'Ben']]) b.users.get(id).display_name = name;
  for (const p of b.convs.get('g1').conv.participants) p.display_name = b.users.get(p.user_id).display_name;
  b.addMessage('g1', 'u-ann', 'Has everyone finished chapter 3?');
  b.addMessage('g1', 'u-me', 'Almost, two pages left');
  b.addMessage('g1', 'u-ben', 'Yes! The ending was wild');
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Book club' }).click();
  await row(s, 'Yes! The ending was wild').waitFor();
  return s;
}

/** @param {any} s @param {string} text */
const row = (s, text) => s.page.locator('.msg-row').filter({ has: s.page.locator('.msg-text', { hasText: text }) });
const menu = (s) => s.page.locator('.msg-menu');
/** Wait until `fn()` is true (a request the page makes after showing its optimistic state). @param {() => boolean} fn */
async function until(fn, ms = 5000) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}
/** The element is fully shown (its fade-in done). @param {import('playwright-core').Locator} loc */
const shown = (loc) => loc.evaluate((el) => new Promise((resolve) => {
  const t0 = performance.now();
  const check = () => (getComputedStyle(el).opacity === '1' || performance.now() - t0 > 2000 ? resolve(getComputedStyle(el).opacity) : requestAnimationFrame(check));
  check();
}));

/** Open a message's menu by hovering it and clicking its actions button. */
async function openByHover(s, text) {
  const r = row(s, text);
  await r.locator('.bubble').hover();
  const btn = r.getByRole('button', { name: 'Message actions' });
  await btn.waitFor();
  assert.equal(await shown(btn), '1', 'the actions button shows on hover');
  await btn.click();
  await menu(s).waitFor();
}

test('menu by hover: quick reactions, chips counted and highlighted, who reacted, toggle; the picker', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  const target = row(s, 'Has everyone finished');
  // Not hovered: the actions button is not shown.
  await s.page.mouse.move(5, 5);
  assert.equal(await target.getByRole('button', { name: 'Message actions' }).evaluate((el) => getComputedStyle(el).opacity), '0');
  await openByHover(s, 'Has everyone finished');
  await screenshot(s.page, 'lifecycle-menu');
  assert.deepEqual(await menu(s).getByRole('menuitem').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') || e.textContent)), [
    'React with 👍', 'React with ❤️', 'React with 😂', 'React with 😮', 'React with 😢', 'React with 🙏', 'More reactions', 'Reply', 'Delete',
  ], 'the common six, the picker, Reply, and Delete (owner of the group); no Edit on another\'s message');
  await menu(s).getByRole('menuitem', { name: 'React with 👍' }).click();
  await menu(s).waitFor({ state: 'detached' });
  const chip = target.locator('.reaction-chip[data-emoji="👍"]');
  await chip.waitFor();
  assert.equal(await chip.getAttribute('aria-pressed'), 'true');
  assert.match(await chip.getAttribute('class'), /is-mine/);
  assert.equal(await chip.locator('.reaction-count').textContent(), '1');
  assert.equal(await chip.getAttribute('title'), 'You reacted with 👍');
  await until(() => s.backend.calls.filter((c) => c.method === 'PUT' && c.path.includes('/reactions/')).length === 1);

  // Ann and Ben react too (live frames, without `me`): counted, still highlighted as mine.
  const m1 = s.backend.convs.get('g1').messages[0];
  s.push(s.backend.react('g1', m1.id, 'u-ann', '👍', true));
  s.push(s.backend.react('g1', m1.id, 'u-ben', '❤️', true));
  await chip.locator('.reaction-count', { hasText: '2' }).waitFor();
  assert.equal(await chip.getAttribute('aria-pressed'), 'true');
  assert.equal(await chip.getAttribute('title'), 'You and Ann reacted with 👍');
  const heart = target.locator('.reaction-chip[data-emoji="❤️"]');
  assert.equal(await heart.getAttribute('aria-pressed'), 'false');
  assert.doesNotMatch(await heart.getAttribute('class'), /is-mine/);
  assert.equal(await heart.getAttribute('title'), 'Ben reacted with ❤️');
  // More reactors than ids: "and N more".
  for (let i = 0; i < 11; i++) s.backend.addUser(`u-x${i}`, `X${i}`);
  for (let i = 0; i < 11; i++) s.push(s.backend.react('g1', m1.id, `u-x${i}`, '❤️', true));
  await heart.locator('.reaction-count', { hasText: '12' }).waitFor();
  assert.match(await heart.getAttribute('title'), / and 2 more reacted with ❤️$/);

  // Click to toggle: mine goes, Ann's stays.
  await chip.click();
  await chip.locator('.reaction-count', { hasText: '1' }).waitFor();
  assert.equal(await chip.getAttribute('aria-pressed'), 'false');
  assert.equal(await chip.getAttribute('title'), 'Ann reacted with 👍');
  await chip.click();
  await chip.locator('.reaction-count', { hasText: '2' }).waitFor();
  assert.equal(await chip.getAttribute('aria-pressed'), 'true');

  // The picker: a grid of more.
  await openByHover(s, 'Yes! The ending');
  await menu(s).getByRole('menuitem', { name: 'More reactions' }).click();
  const grid = menu(s).locator('.picker-grid');
  await grid.waitFor();
  assert.ok((await grid.getByRole('menuitem').count()) >= 24);
  await screenshot(s.page, 'lifecycle-picker');
  await grid.getByRole('menuitem', { name: 'React with 🎉' }).click();
  await row(s, 'Yes! The ending').locator('.reaction-chip[data-emoji="🎉"][aria-pressed="true"]').waitFor();
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('menu by keyboard: Tab reaches it, Enter opens, arrows move, Escape closes and gives focus back', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  const input = s.page.locator('.composer-input');
  await input.focus();
  await s.page.keyboard.press('Shift+Tab');
  const focused = () => s.page.evaluate(() => ({ cls: document.activeElement?.className ?? '', label: document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.textContent ?? '', row: document.activeElement?.closest('.msg-row')?.textContent ?? '' }));
  let f = await focused();
  assert.equal(f.label, 'Message actions', 'Shift+Tab from the composer reaches the last message\'s actions');
  assert.match(f.row, /The ending was wild/);
  const btn = row(s, 'The ending was wild').getByRole('button', { name: 'Message actions' });
  assert.equal(await shown(btn), '1', 'visible when focused');
  await s.page.keyboard.press('Enter');
  await menu(s).waitFor();
  f = await focused();
  assert.equal(f.label, 'React with 👍', 'the first item has the focus');
  await s.page.keyboard.press('ArrowRight');
  assert.equal((await focused()).label, 'React with ❤️');
  await s.page.keyboard.press('End');
  assert.match((await focused()).label, /Delete/);
  await s.page.keyboard.press('ArrowDown');
  assert.equal((await focused()).label, 'React with 👍', 'wraps around');
  await s.page.keyboard.press('Escape');
  await menu(s).waitFor({ state: 'detached' });
  assert.equal((await focused()).label, 'Message actions', 'focus back on the button');
  // Reply through the keyboard: Enter, then down to Reply.
  await s.page.keyboard.press('Enter');
  await menu(s).waitFor();
  await s.page.keyboard.press('End');
  await s.page.keyboard.press('ArrowUp');
  assert.equal((await focused()).label.trim(), 'Reply');
  await s.page.keyboard.press('Enter');
  await s.page.locator('.composer-context', { hasText: 'Replying to Ben' }).waitFor();
  assert.equal(await s.page.evaluate(() => document.activeElement?.className), 'composer-input');
  await s.page.keyboard.press('Escape');
  await s.page.locator('.composer-context').waitFor({ state: 'hidden' });
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('edit via the menu shows "(edited)"; Up in an empty composer edits the last one, Escape cancels', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  await openByHover(s, 'Almost, two pages left');
  await menu(s).getByRole('menuitem', { name: 'Edit' }).click();
  const bar = s.page.locator('.composer-context', { hasText: 'Editing message' });
  await bar.waitFor();
  const input = s.page.locator('.composer-input');
  assert.equal(await input.inputValue(), 'Almost, two pages left');
  await input.fill('Finished it last night <b>wow</b>');
  await input.press('Enter');
  const edited = row(s, 'Finished it last night');
  await edited.locator('.msg-edited', { hasText: '(edited)' }).waitFor();
  assert.equal(await edited.locator('.msg-text').textContent(), 'Finished it last night <b>wow</b>', 'rendered as text');
  assert.equal(await edited.locator('.msg-text b').count(), 0);
  await bar.waitFor({ state: 'hidden' });
  assert.equal(await input.inputValue(), '');
  await until(() => s.backend.calls.filter((c) => c.method === 'PATCH').length === 1);
  const patch = s.backend.calls.filter((c) => c.method === 'PATCH');
  assert.deepEqual(patch[0].body, { content: 'Finished it last night <b>wow</b>' });

  // Up arrow in the empty composer: edit the last own message; Escape leaves it unchanged.
  await input.focus();
  await input.press('ArrowUp');
  await bar.waitFor();
  assert.equal(await input.inputValue(), 'Finished it last night <b>wow</b>');
  await input.press('End');
  await input.pressSequentially(' more');
  await input.press('Escape');
  await bar.waitFor({ state: 'hidden' });
  assert.equal(await input.inputValue(), '');
  assert.equal(await edited.locator('.msg-text').textContent(), 'Finished it last night <b>wow</b>');
  assert.equal(s.backend.calls.filter((c) => c.method === 'PATCH').length, 1);
  // A draft is kept while editing.
  await input.fill('a draft');
  await openByHover(s, 'Finished it last night');
  await menu(s).getByRole('menuitem', { name: 'Edit' }).click();
  await bar.waitFor();
  await s.page.getByRole('button', { name: 'Cancel edit' }).click();
  assert.equal(await input.inputValue(), 'a draft');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('a refused edit is shown at once, then rolled back with a visible error', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  await s.ctx.route('**/api/v1/conversations/*/messages/*', async (route) => {
    if (route.request().method() !== 'PATCH') return route.fallback();
    await new Promise((r) => setTimeout(r, 600));
    await route.fulfill({ status: 409, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: { code: 'edit_window_closed', message: 'The edit window has closed.' } }) });
  });
  const input = s.page.locator('.composer-input');
  await input.focus();
  await input.press('ArrowUp');
  await input.fill('Too late to change this');
  await input.press('Enter');
  await row(s, 'Too late to change this').waitFor();
  await s.page.locator('.toast-error', { hasText: 'Your edit was not saved: messages can only be edited for 48 hours.' }).waitFor();
  await row(s, 'Almost, two pages left').waitFor();
  assert.equal(await row(s, 'Too late to change this').count(), 0);
  assert.equal(await row(s, 'Almost, two pages left').locator('.msg-edited').count(), 0);
  await screenshot(s.page, 'lifecycle-edit-refused');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('delete asks first, then leaves a tombstone; the owner may delete another member\'s message', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  await openByHover(s, 'Almost, two pages left');
  await menu(s).getByRole('menuitem', { name: 'Delete' }).click();
  const dialog = s.page.getByRole('dialog', { name: 'Delete message?' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(s.backend.calls.filter((c) => c.method === 'DELETE').length, 0, 'cancelled: nothing sent');
  await row(s, 'Almost, two pages left').waitFor();

  await openByHover(s, 'Almost, two pages left');
  await menu(s).getByRole('menuitem', { name: 'Delete' }).click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  const tomb = s.page.locator('.msg-row.is-deleted.is-mine');
  await tomb.locator('.msg-text', { hasText: 'This message was deleted' }).waitFor();
  assert.equal(await tomb.getByRole('button', { name: 'Message actions' }).count(), 0, 'no menu on a tombstone');
  assert.equal(await row(s, 'Almost, two pages left').count(), 0);
  await until(() => s.backend.calls.filter((c) => c.method === 'DELETE').length === 1);

  // Ben's message, as the group's owner.
  await openByHover(s, 'The ending was wild');
  await menu(s).getByRole('menuitem', { name: 'Delete' }).click();
  await dialog.getByText('This message from Ben will be deleted for everyone.').waitFor();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await s.page.locator('.msg-row.is-deleted:not(.is-mine)').waitFor();
  assert.equal(await s.page.locator('.msg-row.is-deleted').count(), 2);
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('reply: the bar, the quote, a click on it scrolls to the original; its deletion shows in the quote', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  for (let i = 1; i <= 30; i++) s.push({ type: 'message', message: s.backend.messageJson('g1', s.backend.addMessage('g1', i % 2 ? 'u-ben' : 'u-ann', `filler ${i}`)) });
  await row(s, 'filler 30').waitFor();
  await s.page.locator('.messages').evaluate((el) => {
    el.scrollTop = 0;
  });
  await openByHover(s, 'Has everyone finished');
  await menu(s).getByRole('menuitem', { name: 'Reply' }).click();
  const bar = s.page.locator('.composer-context', { hasText: 'Replying to Ann' });
  await bar.waitFor();
  assert.match(await bar.locator('.ctx-text').textContent(), /Has everyone finished chapter 3\?/);
  await bar.getByRole('button', { name: 'Cancel reply' }).click();
  await bar.waitFor({ state: 'hidden' });
  await openByHover(s, 'Has everyone finished');
  await menu(s).getByRole('menuitem', { name: 'Reply' }).click();
  await bar.waitFor();
  await s.page.locator('.composer-input').fill('Not yet, give me a day');
  await screenshot(s.page, 'lifecycle-reply-bar');
  await s.page.locator('.composer-input').press('Enter');
  await bar.waitFor({ state: 'hidden' });
  const reply = row(s, 'Not yet, give me a day');
  const quote = reply.locator('.msg-quote');
  await quote.waitFor();
  assert.equal(await quote.locator('.msg-quote-name').textContent(), 'Ann');
  assert.equal(await quote.locator('.msg-quote-text').textContent(), 'Has everyone finished chapter 3?');
  const frame = s.sent.filter((f) => f.type === 'message').at(-1);
  assert.equal(frame.reply_to, s.backend.convs.get('g1').messages[0].id, 'sent with reply_to');

  // The original is far above: a click on the quote scrolls to it.
  const original = row(s, 'Has everyone finished');
  const inView = () => original.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const v = /** @type {HTMLElement} */ (document.querySelector('.messages')).getBoundingClientRect();
    return r.top >= v.top && r.bottom <= v.bottom;
  });
  assert.equal(await inView(), false);
  await quote.click();
  await s.page.waitForFunction(() => !!document.querySelector('.msg-row.is-highlighted'));
  assert.equal(await inView(), true);

  // Ann deletes the original: the quote says so.
  s.push(s.backend.deleteMessage('g1', s.backend.convs.get('g1').messages[0].id, 'u-ann'));
  await quote.locator('.msg-quote-text', { hasText: 'Original message was deleted' }).waitFor();
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('a quote whose original is not loaded loads the history around it, then scrolls there', { timeout: 60_000 }, async () => {
  const s = await scripted();
  const b = s.backend;
  b.addConversation('c1', { members: ['u-me', 'u-ann'] });
  b.users.get('u-ann').display_name = 'Ann';
  b.convs.get('c1').conv.participants[1].display_name = 'Ann';
  b.addMessage('c1', 'u-ann', 'The very first question, long ago');
  for (let i = 2; i <= 200; i++) b.addMessage('c1', i % 2 ? 'u-ann' : 'u-me', `message ${i}`);
  b.addMessage('c1', 'u-ann', 'Answering that old question now', null, 'm-c1-1');
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Ann' }).click();
  const quote = s.page.locator('.msg-row', { hasText: 'Answering that old question now' }).locator('.msg-quote');
  await quote.waitFor();
  assert.equal(await quote.locator('.msg-quote-text').textContent(), 'The very first question, long ago');
  assert.equal(await s.page.locator('.msg-text', { hasText: 'The very first question' }).count(), 0, 'not loaded yet');
  await quote.click();
  const original = s.page.locator('.msg-row.is-highlighted', { hasText: 'The very first question, long ago' });
  await original.waitFor();
  assert.equal(b.calls.filter((c) => c.path.includes('around=m-c1-1')).length, 1, 'loaded with ?around=');
  const visible = await original.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const v = /** @type {HTMLElement} */ (document.querySelector('.messages')).getBoundingClientRect();
    return r.top >= v.top && r.bottom <= v.bottom;
  });
  assert.equal(visible, true);
  // Everything between is there (no hole in the history).
  const seqs = await s.page.evaluate(() => /** @type {any} */ (window).chatClient.messages('c1').map((/** @type {any} */ m) => m.seq));
  assert.deepEqual(seqs, Array.from({ length: 201 }, (_, i) => i + 1));
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('live changes by others: edits, reactions and deletions update the view', { timeout: 60_000 }, async () => {
  const s = await bookClub();
  const [m1, m2, m3] = s.backend.convs.get('g1').messages;
  const reply = s.backend.addMessage('g1', 'u-ben', 'Chapter 4 is even better', null, m2.id);
  s.push({ type: 'message', message: s.backend.messageJson('g1', reply) });
  await row(s, 'Chapter 4 is even better').locator('.msg-quote', { hasText: 'Almost, two pages left' }).waitFor();
  s.push(s.backend.editMessage('g1', m1.id, 'Has everyone finished chapter 3? No spoilers!'));
  await row(s, 'No spoilers!').locator('.msg-edited').waitFor();
  s.push(s.backend.react('g1', m3.id, 'u-ann', '😂', true));
  s.push(s.backend.react('g1', m3.id, 'u-ben', '😂', true));
  s.push(s.backend.react('g1', m1.id, 'u-ben', '👍', true));
  await row(s, 'The ending was wild').locator('.reaction-chip[data-emoji="😂"] .reaction-count', { hasText: '2' }).waitFor();
  await s.page.locator('.reaction-chip[data-emoji="👍"]').click();
  await s.page.locator('.reaction-chip[data-emoji="👍"][aria-pressed="true"]').waitFor();
  // An edit repeated or out of order changes nothing.
  const old = s.backend.editMessage('g1', m3.id, 'Yes! The ending was wild (v1)');
  const newer = s.backend.editMessage('g1', m3.id, 'Yes! The ending was wild!!');
  s.push(newer);
  s.push(old);
  await row(s, 'The ending was wild!!').waitFor();
  await s.page.waitForTimeout(200);
  assert.equal(await row(s, '(v1)').count(), 0);
  // Ben deletes his message: a tombstone, its reactions gone.
  const gone = s.backend.addMessage('g1', 'u-ben', 'Oops, wrong chat');
  s.push({ type: 'message', message: s.backend.messageJson('g1', gone) });
  await row(s, 'Oops, wrong chat').waitFor();
  s.push(s.backend.deleteMessage('g1', gone.id, 'u-ben'));
  await s.page.locator('.msg-row.is-deleted', { hasText: 'This message was deleted' }).waitFor();
  assert.equal(await row(s, 'Oops, wrong chat').count(), 0);
  // Unread does not move on changes.
  assert.equal(await s.page.evaluate(() => /** @type {any} */ (window).chatClient.conversation('g1').unread_count), 0);
  await s.page.mouse.move(5, 5);
  await screenshot(s.page, 'lifecycle-conversation');
  await s.page.emulateMedia({ colorScheme: 'dark' });
  await screenshot(s.page, 'lifecycle-conversation-dark');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('phone: a long press opens the menu as a sheet at the bottom', { timeout: 60_000 }, async () => {
  const s = await bookClub({ viewport: { width: 390, height: 844 }, hasTouch: true });
  const bubble = row(s, 'Has everyone finished').locator('.bubble');
  const box = /** @type {{x: number, y: number, width: number, height: number}} */ (await bubble.boundingBox());
  const cdp = await s.ctx.newCDPSession(s.page);
  const x = box.x + box.width / 2;
  const y = box.y + box.height / 2;
  // A short tap does not open it.
  await s.page.touchscreen.tap(x, y);
  await s.page.waitForTimeout(700);
  assert.equal(await menu(s).count(), 0);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [{ x, y }] });
  await s.page.waitForTimeout(700);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await menu(s).waitFor();
  const sheet = /** @type {{x: number, y: number, width: number, height: number}} */ (await menu(s).boundingBox());
  assert.equal(Math.round(sheet.width), 390, 'full width');
  assert.equal(Math.round(sheet.y + sheet.height), 844, 'at the bottom');
  await screenshot(s.page, 'lifecycle-phone-menu');
  // Escape closes it too (no focus inside after a long press); then a long press again.
  await s.page.keyboard.press('Escape');
  await menu(s).waitFor({ state: 'detached' });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [{ x, y }] });
  await s.page.waitForTimeout(700);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await menu(s).waitFor();
  await menu(s).getByRole('menuitem', { name: 'React with ❤️' }).click();
  await row(s, 'Has everyone finished').locator('.reaction-chip[data-emoji="❤️"][aria-pressed="true"]').waitFor();
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});
