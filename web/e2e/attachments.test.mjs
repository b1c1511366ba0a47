// Attachments (issue 14) against the real chat server, in headless Chromium: Ann attaches
// files by the paperclip, a paste and a drop, watches the progress, cancels one, has a renamed
// .exe refused (415), and sends images and a PDF; Bob sees the thumbnails and the file card,
// opens the viewer and downloads the PDF. In an encrypted conversation the files are
// encrypted in Ann's browser and Cat sees the image decrypted in hers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { launchBrowser, newUser, registerViaUi, startDirectViaUi, startServer } from './support/harness.mjs';
import { EXE, PDF, makePng, transferFiles } from './support/files.mjs';

const T = 150_000;
/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;
/** The server has the attachment routes (before they land this file has nothing to test). */
let hasAttachments = false;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const probe = await fetch(`${server.baseUrl}/api/v1/attachments/upload-url`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).catch(() => null);
  hasAttachments = !!probe && probe.status !== 404 && probe.status !== 405;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const shot = (/** @type {import('playwright-core').Page} */ page, /** @type {string} */ name) => page.waitForTimeout(400).then(() => page.screenshot({ path: `/tmp/att-real-${name}.png` }));

/** Sign up in a fresh context. */
async function person(name, { e2ee = false } = {}) {
  const user = newUser(name);
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 }, acceptDownloads: true });
  const page = await ctx.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await registerViaUi(page, server.baseUrl, user);
  if (e2ee) await page.waitForFunction(() => !!(/** @type {any} */ (window).chatClient?.e2ee?.device?.id), null, { timeout: 20_000 });
  return { user, ctx, page, errors };
}

/** Hold the PUTs of bytes (the server's signed upload endpoint) until released. */
async function holdUploads(page) {
  /** @type {() => void} */
  let release = () => {};
  const gate = new Promise((r) => (release = r));
  const pattern = /\/api\/v1\/attachments\/[^/]+\/content/;
  const handler = async (/** @type {import('playwright-core').Route} */ route) => {
    if (route.request().method() !== 'PUT') return route.fallback();
    await gate;
    await route.continue().catch(() => {});
  };
  await page.route(pattern, handler);
  return async () => {
    release();
    await page.unroute(pattern, handler);
  };
}

/** @param {import('playwright-core').Page} page @param {string} name */
const item = (page, name) => page.locator('.tray-item', { has: page.locator('.tray-name', { hasText: name }) });

/** @param {import('playwright-core').Page} page @param {string} name */
async function open(page, name) {
  await page.locator('.conv-item').filter({ has: page.locator('.conv-name', { hasText: name }) }).first().click();
  await page.locator('.chat .chat-title', { hasText: name }).waitFor();
}

/** @param {import('playwright-core').Locator} img */
async function loaded(img) {
  await img.waitFor();
  await img.page().waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 15_000 });
}

test('attach by button, paste and drop; progress; cancel; a renamed .exe refused; images and a PDF reach the other member; viewer; download', { timeout: T }, async (t) => {
  if (!hasAttachments) return t.skip('this server has no attachment routes yet');
  const ann = await person('Ann Attach');
  const bob = await person('Bob Receive');
  await startDirectViaUi(ann.page, bob.user);
  const page = ann.page;

  // The paperclip, held mid-upload: a progress bar and no Send yet.
  let release = await holdUploads(page);
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.getByRole('button', { name: 'Attach files' }).click()]);
  await chooser.setFiles([{ name: 'sunset.png', mimeType: 'image/png', buffer: makePng(640, 400) }]);
  await item(page, 'sunset.png').locator('.tray-progress[role="progressbar"]').waitFor();
  assert.equal(await page.locator('.send-btn').isDisabled(), true);
  await shot(page, 'uploading');
  await release();
  await item(page, 'sunset.png').and(page.locator('[data-status="done"]')).waitFor({ timeout: 20_000 });
  assert.equal(await page.locator('.send-btn').isDisabled(), false);

  // Cancel one in flight.
  release = await holdUploads(page);
  await page.locator('.file-input').setInputFiles([{ name: 'later.pdf', mimeType: 'application/pdf', buffer: PDF }]);
  await item(page, 'later.pdf').locator('.tray-cancel').click();
  await item(page, 'later.pdf').waitFor({ state: 'detached' });
  await release();

  // A renamed .exe declared as a PNG: the server refuses it (415), the tray says so.
  await page.locator('.file-input').setInputFiles([{ name: 'holiday.png', mimeType: 'image/png', buffer: EXE }]);
  await item(page, 'holiday.png').locator('.tray-error').waitFor({ timeout: 20_000 });
  const refusal = (await item(page, 'holiday.png').locator('.tray-error').textContent()) ?? '';
  assert.match(refusal, /not what its name or type says|cannot be sent|could not be read/);
  await shot(page, 'refused');
  await item(page, 'holiday.png').getByRole('button', { name: 'Remove holiday.png' }).click();

  // A pasted screenshot and a dropped PDF.
  await transferFiles(page, 'paste', [{ name: 'image.png', type: 'image/png', data: makePng(360, 480, [40, 170, 120], [20, 60, 140]) }]);
  await transferFiles(page, 'drop', [{ name: 'report.pdf', type: 'application/pdf', data: PDF }]);
  await item(page, 'report.pdf').and(page.locator('[data-status="done"]')).waitFor({ timeout: 20_000 });
  await page.locator('.tray-item.has-preview[data-status="done"]').nth(1).waitFor({ timeout: 20_000 });

  await page.locator('.composer-input').fill('Trip photos and the report');
  await page.locator('.composer-input').press('Enter');
  const mine = page.locator('.msg-row.is-mine', { hasText: 'Trip photos and the report' });
  await mine.and(page.locator('[data-status="sent"], [data-status="delivered"], [data-status="read"]')).waitFor({ timeout: 20_000 });
  await page.locator('.composer-tray').waitFor({ state: 'hidden' });
  await loaded(mine.locator('.att-image img').first());
  await mine.locator('.att-file', { hasText: 'report.pdf' }).waitFor();
  await shot(page, 'sender');

  // Bob: thumbnails (the server's), the file card, the viewer, the download.
  await open(bob.page, ann.user.name);
  const theirs = bob.page.locator('.msg-row:not(.is-mine)', { hasText: 'Trip photos and the report' });
  await loaded(theirs.locator('.att-image img').first());
  assert.equal(await theirs.locator('.att-image').count(), 2);
  await theirs.locator('.att-file', { hasText: 'report.pdf' }).locator('.att-file-meta', { hasText: 'PDF' }).waitFor();
  await shot(bob.page, 'receiver');
  await theirs.getByRole('button', { name: 'Open image sunset.png' }).click();
  await bob.page.waitForFunction(() => {
    const i = /** @type {HTMLImageElement|null} */ (document.querySelector('dialog.viewer[open] .viewer-img'));
    return !!i && i.complete && i.naturalWidth === 640;
  }, null, { timeout: 15_000 });
  await shot(bob.page, 'viewer');
  await bob.page.keyboard.press('Escape');
  await bob.page.locator('dialog.viewer').waitFor({ state: 'detached' });
  const [download] = await Promise.all([bob.page.waitForEvent('download'), theirs.locator('.att-file', { hasText: 'report.pdf' }).click()]);
  assert.equal(download.suggestedFilename(), 'report.pdf');
  assert.deepEqual(readFileSync(/** @type {string} */ (await download.path())), PDF);

  assert.deepEqual(ann.errors, []);
  assert.deepEqual(bob.errors, []);
  await ann.ctx.close();
  await bob.ctx.close();
});

test('encrypted conversation: the image goes up encrypted and the other member sees it decrypted', { timeout: T }, async (t) => {
  if (!hasAttachments) return t.skip('this server has no attachment routes yet');
  const ann = await person('Ann Secret', { e2ee: true });
  const cat = await person('Cat Secret', { e2ee: true });
  const page = ann.page;
  await page.getByRole('button', { name: 'New chat' }).first().click();
  const dlg = page.getByRole('dialog');
  await dlg.locator('#new-encrypted').check();
  await dlg.getByPlaceholder('Search people by name or email').fill(cat.user.email);
  await dlg.locator('.user-item', { hasText: cat.user.name }).click();
  await page.locator('.chat-header .e2ee-badge:not([hidden])').waitFor();
  await page.waitForFunction(() => {
    const c = /** @type {any} */ (window).chatClient;
    return !!c.activeConversationId && c.conversation(c.activeConversationId)?.key_held;
  }, null, { timeout: 30_000 });

  // What goes up: only ciphertext, as encrypted.bin.
  /** @type {any[]} */
  const announced = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/api/v1/attachments/upload-url')) announced.push(JSON.parse(r.postData() ?? '{}'));
  });
  const png = makePng(900, 600);
  await page.locator('.file-input').setInputFiles([{ name: 'garden-plan.png', mimeType: 'image/png', buffer: png }]);
  await item(page, 'garden-plan.png').and(page.locator('[data-status="done"]')).waitFor({ timeout: 30_000 });
  assert.equal(announced.length, 2, 'the image and its thumbnail');
  for (const a of announced) {
    assert.equal(a.filename, 'encrypted.bin');
    assert.equal(a.mime_type, 'application/octet-stream');
  }
  await page.locator('.composer-input').fill('the garden, encrypted');
  await page.locator('.composer-input').press('Enter');
  const mine = page.locator('.msg-row.is-mine', { hasText: 'the garden, encrypted' });
  await mine.locator('.att-image img[src^="data:image/jpeg"]').waitFor({ timeout: 20_000 });

  await open(cat.page, ann.user.name);
  const theirs = cat.page.locator('.msg-row:not(.is-mine)', { hasText: 'the garden, encrypted' });
  const thumb = theirs.locator('.att-image img');
  await thumb.waitFor({ timeout: 30_000 });
  await cat.page.waitForFunction((el) => el.src.startsWith('data:image/jpeg') && el.complete && el.naturalWidth === 320, await thumb.elementHandle(), { timeout: 30_000 });
  await shot(cat.page, 'e2ee-receiver');
  await theirs.getByRole('button', { name: 'Open image garden-plan.png' }).click();
  await cat.page.waitForFunction(() => {
    const i = /** @type {HTMLImageElement|null} */ (document.querySelector('dialog.viewer[open] .viewer-img'));
    return !!i && i.src.startsWith('data:image/png') && i.complete && i.naturalWidth === 900;
  }, null, { timeout: 30_000 });
  await shot(cat.page, 'e2ee-viewer');
  await cat.page.keyboard.press('Escape');
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(cat.errors, []);
  await ann.ctx.close();
  await cat.ctx.close();
});
