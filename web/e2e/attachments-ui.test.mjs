// Attachments in the real browser against the scripted server (web/e2e/support/scripted.mjs,
// whose in-memory backend plays the attachment routes): attach by the paperclip, a paste and
// a drop; progress, cancel, a refused file; sending images and a PDF; another member's files
// (thumbnails, file cards, the viewer, a download); an encrypted conversation's files
// encrypted before they leave and decrypted when they come. No chat server needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { scriptedSuite } from './support/scripted.mjs';
import { EXE, PDF, makePng, transferFiles } from './support/files.mjs';
import { e2eeServer } from '../test/fake-e2ee.js';
import { decryptMessage, encryptMessage, generateConversationKey, generateDeviceKeys } from '../sdk/crypto.js';
import { decryptFile, encryptFile, messagePlaintext } from '../sdk/attachments.js';

const scripted = scriptedSuite();
const shot = (/** @type {any} */ page, /** @type {string} */ name) => page.waitForTimeout(300).then(() => page.screenshot({ path: `/tmp/att-${name}.png` }));

/** Bob in a direct conversation c1 with me. */
function withBob(s) {
  s.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  s.backend.users.get('u-bob').display_name = 'Bob';
  s.backend.convs.get('c1').conv.participants[1].display_name = 'Bob';
}

/** Hold every PUT of bytes until the returned function is called. */
function holdUploads(s) {
  /** @type {() => void} */
  let release = () => {};
  s.state.holdUploads = new Promise((r) => (release = r));
  return () => {
    s.state.holdUploads = null;
    release();
  };
}

const tray = (s) => s.page.locator('.composer-tray');
const item = (s, name) => s.page.locator('.tray-item', { has: s.page.locator('.tray-name', { hasText: name }) });

test('attach by button, paste and drop; progress and cancel; a refused file; send images and a PDF; the other side; viewer; download', { timeout: 90_000 }, async () => {
  const s = await scripted();
  withBob(s);
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Bob' }).click();
  const send = s.page.locator('.send-btn');
  assert.equal(await send.isDisabled(), true);
  assert.equal(await s.page.getByRole('button', { name: 'Attach files' }).isVisible(), true);

  // The paperclip: a file picker; the upload runs (held here) with its progress bar.
  let release = holdUploads(s);
  const [chooser] = await Promise.all([s.page.waitForEvent('filechooser'), s.page.getByRole('button', { name: 'Attach files' }).click()]);
  assert.equal(chooser.isMultiple(), true);
  await chooser.setFiles([{ name: 'sunset.png', mimeType: 'image/png', buffer: makePng(640, 400) }]);
  await item(s, 'sunset.png').locator('.tray-progress[role="progressbar"]').waitFor();
  assert.equal(await item(s, 'sunset.png').getAttribute('data-status'), 'uploading');
  await item(s, 'sunset.png').locator('img.tray-thumb[src^="data:image/jpeg"]').waitFor();
  assert.equal(await send.isDisabled(), true, 'nothing confirmed yet');
  await shot(s.page, 'tray-uploading');
  release();
  await item(s, 'sunset.png').and(s.page.locator('[data-status="done"]')).waitFor();
  assert.equal(await send.isDisabled(), false, 'a confirmed file can be sent alone');
  await item(s, 'sunset.png').locator('.tray-meta', { hasText: 'PNG' }).waitFor();

  // Cancel: the held upload is dropped, never confirmed.
  release = holdUploads(s);
  await s.page.locator('.file-input').setInputFiles([{ name: 'huge-video.mp4', mimeType: 'video/mp4', buffer: Buffer.alloc(4096, 1) }]);
  await item(s, 'huge-video.mp4').locator('.tray-cancel').click();
  await item(s, 'huge-video.mp4').waitFor({ state: 'detached' });
  release();
  await s.page.waitForTimeout(300);
  const confirmsAfterCancel = s.backend.calls.filter((c) => c.path.endsWith('/confirm')).length;
  assert.equal(confirmsAfterCancel, 1, 'only the first file was confirmed');

  // A renamed .exe sent as image/png: refused (415), said so, no retry offered.
  await s.page.locator('.file-input').setInputFiles([{ name: 'holiday.png', mimeType: 'image/png', buffer: EXE }]);
  const refused = item(s, 'holiday.png');
  await refused.locator('.tray-error', { hasText: 'not what its name or type says' }).waitFor();
  assert.equal(await refused.getAttribute('data-status'), 'failed');
  assert.equal(await refused.locator('.tray-retry').count(), 0, 'a refusal is not retried');
  await shot(s.page, 'tray-refused');
  await refused.getByRole('button', { name: 'Remove holiday.png' }).click();
  await refused.waitFor({ state: 'detached' });

  // A failed upload (the server is away): an error and a retry button, which works.
  s.backend.override = (method, path) => (method === 'POST' && path === '/attachments/upload-url' ? { status: 503, body: { error: { code: 'unavailable', message: 'Try later.' } } } : null);
  await s.page.locator('.file-input').setInputFiles([{ name: 'flaky.pdf', mimeType: 'application/pdf', buffer: PDF }]);
  const flaky = item(s, 'flaky.pdf');
  await flaky.locator('.tray-retry').waitFor({ timeout: 15_000 });
  s.backend.override = null;
  await flaky.locator('.tray-retry').click();
  await flaky.and(s.page.locator('[data-status="done"]')).waitFor();
  await flaky.getByRole('button', { name: 'Remove flaky.pdf' }).click();

  // A pasted screenshot and a dropped PDF.
  await transferFiles(s.page, 'paste', [{ name: 'image.png', type: 'image/png', data: makePng(300, 420, [40, 170, 120], [20, 60, 140]) }]);
  await s.page.locator('.tray-item.has-preview').nth(1).and(s.page.locator('[data-status="done"]')).waitFor();
  assert.match(await s.page.locator('.tray-item').nth(1).getAttribute('data-name'), /^pasted-.*\.png$/);
  // Dragging files over the conversation shows where to drop them.
  const drag = (/** @type {string} */ type) =>
    s.page.evaluate((type) => {
      const dt = new DataTransfer();
      dt.items.add(new File(['x'], 'x.pdf', { type: 'application/pdf' }));
      document.querySelector('.messages')?.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, type);
  await drag('dragenter');
  await s.page.locator('.drop-overlay:not([hidden])').waitFor();
  await shot(s.page, 'drop-overlay');
  await drag('dragleave');
  await s.page.locator('.drop-overlay').waitFor({ state: 'hidden' });
  await transferFiles(s.page, 'drop', [{ name: 'report.pdf', type: 'application/pdf', data: PDF }]);
  await item(s, 'report.pdf').and(s.page.locator('[data-status="done"]')).waitFor();
  assert.equal(await s.page.locator('.drop-overlay').isHidden(), true);
  await shot(s.page, 'tray-ready');

  // Send: one message, three attachment_ids, the tray empties.
  const input = s.page.locator('.composer-input');
  await input.fill('Photos from the trip, and the report');
  await input.press('Enter');
  await tray(s).waitFor({ state: 'hidden' });
  const mine = s.page.locator('.msg-row.is-mine', { hasText: 'Photos from the trip' });
  await mine.and(s.page.locator('[data-status="sent"]')).waitFor();
  await mine.locator('.att-image img').nth(1).waitFor();
  await mine.locator('.att-file', { hasText: 'report.pdf' }).waitFor();
  const frame = s.sent.filter((f) => f.type === 'message').at(-1);
  assert.equal(frame.attachment_ids.length, 3);
  assert.equal(frame.content, 'Photos from the trip, and the report');

  // Bob sends an image and a PDF: a thumbnail and a file card.
  const img = s.backend.addAttachment('c1', 'u-bob', { filename: 'beach.png', mime_type: 'image/png', bytes: makePng(800, 500, [30, 140, 220], [250, 210, 120]), width: 800, height: 500 });
  const doc = s.backend.addAttachment('c1', 'u-bob', { filename: 'itinerary.pdf', mime_type: 'application/pdf', bytes: PDF });
  const m = s.backend.addMessage('c1', 'u-bob', 'Here is mine', null, null, [img.id, doc.id]);
  s.push({ type: 'message', message: s.backend.messageJson('c1', m) });
  const theirs = s.page.locator('.msg-row:not(.is-mine)', { hasText: 'Here is mine' });
  const thumb = theirs.locator('.att-image img');
  await thumb.waitFor();
  await s.page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await thumb.elementHandle());
  assert.equal(await thumb.getAttribute('width'), '240');
  assert.equal(await thumb.getAttribute('height'), '150');
  await theirs.locator('.att-file .att-file-meta', { hasText: 'PDF' }).waitFor();
  await shot(s.page, 'conversation');
  // The list says what came.
  await s.page.locator('.conv-item', { hasText: 'Bob' }).locator('.conv-preview', { hasText: 'Here is mine' }).waitFor();

  // The viewer: full size, Esc closes.
  await theirs.getByRole('button', { name: 'Open image beach.png' }).click();
  const viewer = s.page.locator('dialog.viewer[open]');
  await viewer.waitFor();
  await s.page.waitForFunction(() => {
    const i = /** @type {HTMLImageElement|null} */ (document.querySelector('dialog.viewer .viewer-img'));
    return !!i && i.complete && i.naturalWidth === 800;
  });
  await shot(s.page, 'viewer');
  await s.page.keyboard.press('Escape');
  await viewer.waitFor({ state: 'detached' });

  // Download: the file card's link, with the file's name.
  const card = theirs.locator('.att-file', { hasText: 'itinerary.pdf' });
  assert.equal(await card.getAttribute('download'), 'itinerary.pdf');
  const [download] = await Promise.all([s.page.waitForEvent('download'), card.click()]);
  assert.equal(download.suggestedFilename(), 'itinerary.pdf');
  // (An intercepted response cannot be saved as a download here: its bytes are fetched instead.)
  const got = await s.page.evaluate(async (href) => [...new Uint8Array(await (await fetch(href)).arrayBuffer())], await card.getAttribute('href'));
  assert.deepEqual(Buffer.from(got), PDF);

  // A media-only message from Bob.
  const solo = s.backend.addAttachment('c1', 'u-bob', { filename: 'tall.png', mime_type: 'image/png', bytes: makePng(300, 600), width: 300, height: 600 });
  const m2 = s.backend.addMessage('c1', 'u-bob', '', null, null, [solo.id]);
  s.push({ type: 'message', message: s.backend.messageJson('c1', m2) });
  await s.page.locator('.bubble.is-media-only img').waitFor();
  await s.page.locator('.conv-item', { hasText: 'Bob' }).locator('.conv-preview', { hasText: 'Photo' }).waitFor();
  await shot(s.page, 'media-only');

  // Dark mode.
  await s.page.emulateMedia({ colorScheme: 'dark' });
  await shot(s.page, 'dark');
  await s.page.emulateMedia({ colorScheme: 'light' });

  // Phone layout.
  await s.page.setViewportSize({ width: 390, height: 760 });
  await s.page.locator('.file-input').setInputFiles([{ name: 'a-rather-long-file-name-for-a-phone.pdf', mimeType: 'application/pdf', buffer: PDF }]);
  await item(s, 'a-rather-long-file-name-for-a-phone.pdf').and(s.page.locator('[data-status="done"]')).waitFor();
  await shot(s.page, 'phone');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});

test('encrypted conversation: files leave encrypted (encrypted.bin), the thumbnail is made here, and what comes is decrypted', { timeout: 90_000 }, async () => {
  const s = await scripted();
  withBob(s);
  Object.assign(s.backend.convs.get('c1').conv, { encrypted: true, key_version: 0, rotation_needed: false });
  const server = e2eeServer(s.backend);
  const bobKeys = await generateDeviceKeys();
  const bob = { ...server.addDevice('u-bob', bobKeys.publicRaw, 'Bob phone'), ...bobKeys };
  const key = await generateConversationKey();
  await server.storeKey('c1', 1, key, bob, [bob]);
  server.grants.push({ convId: 'c1', version: 1, key, from: bob });
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Bob' }).click();
  await s.page.locator('.chat-header .e2ee-badge:not([hidden])').waitFor();
  await s.page.waitForFunction(() => /** @type {any} */ (window).chatClient.conversation('c1')?.key_held);

  const png = makePng(900, 600);
  await s.page.locator('.file-input').setInputFiles([
    { name: 'secret-plan.png', mimeType: 'image/png', buffer: png },
    { name: 'contract.pdf', mimeType: 'application/pdf', buffer: PDF },
  ]);
  await item(s, 'secret-plan.png').and(s.page.locator('[data-status="done"]')).waitFor();
  await item(s, 'contract.pdf').and(s.page.locator('[data-status="done"]')).waitFor();
  // The server holds ciphertext only, under a name and type that say nothing.
  const stored = [...s.backend.attachments.values()];
  assert.equal(stored.length, 3, 'the image, its thumbnail, the PDF');
  for (const a of stored) {
    assert.equal(a.filename, 'encrypted.bin');
    assert.equal(a.mime_type, 'application/octet-stream');
    assert.ok(!Buffer.from(a.bytes).includes(Buffer.from('%PDF')) && Buffer.from(a.bytes).subarray(1, 4).toString() !== 'PNG');
  }
  await s.page.locator('.composer-input').fill('the plan');
  await s.page.locator('.composer-input').press('Enter');
  await s.page.locator('.msg-row.is-mine[data-status="sent"]', { hasText: 'the plan' }).waitFor();
  const frame = s.sent.filter((f) => f.type === 'message').at(-1);
  assert.equal(frame.content_type, 'encrypted');
  assert.equal(frame.attachment_ids.length, 3);
  assert.ok(!JSON.stringify(frame).includes('secret-plan'));
  const plain = JSON.parse(await decryptMessage({ key, envelope: frame.content, conversationId: 'c1' }));
  assert.equal(plain.text, 'the plan');
  const [imgKey, pdfKey] = plain.files;
  assert.equal(imgKey.name, 'secret-plan.png');
  assert.equal(imgKey.type, 'image/png');
  assert.equal(imgKey.width, 900);
  assert.equal(imgKey.height, 600);
  assert.ok(imgKey.thumbnail_attachment_id && imgKey.thumb_iv);
  assert.equal(pdfKey.name, 'contract.pdf');
  assert.equal(pdfKey.thumbnail_attachment_id, undefined);
  // Bob's side (played here) decrypts: the file is the PNG, the thumbnail a 320 px JPEG.
  assert.deepEqual(Buffer.from(await decryptFile(s.backend.attachments.get(imgKey.attachment_id).bytes, { key: imgKey.key, iv: imgKey.iv })), png);
  const thumbBytes = Buffer.from(await decryptFile(s.backend.attachments.get(imgKey.thumbnail_attachment_id).bytes, { key: imgKey.key, iv: imgKey.thumb_iv }));
  assert.equal(thumbBytes[0], 0xff);
  assert.equal(thumbBytes[1], 0xd8);
  // Our own message shows its decrypted thumbnail.
  const mine = s.page.locator('.msg-row.is-mine', { hasText: 'the plan' });
  await s.page.waitForFunction((el) => el.src.startsWith('data:image/jpeg') && el.naturalWidth === 320, await mine.locator('.att-image img').elementHandle());

  // Bob sends an encrypted image (its thumbnail the same PNG, smaller) and a file.
  const bobPng = makePng(600, 400, [20, 160, 90], [240, 230, 90]);
  const sealed = await encryptFile(bobPng);
  const sealedThumb = await encryptFile(makePng(240, 160, [20, 160, 90], [240, 230, 90]), { key: sealed.key });
  const fileBytes = Buffer.from('minutes of the secret meeting\n');
  const sealedFile = await encryptFile(fileBytes);
  const put = (/** @type {Uint8Array} */ bytes) => s.backend.addAttachment('c1', 'u-bob', { filename: 'encrypted.bin', mime_type: 'application/octet-stream', bytes });
  const a1 = put(sealed.ciphertext);
  const a2 = put(sealedThumb.ciphertext);
  const a3 = put(sealedFile.ciphertext);
  const files = [
    { attachment_id: a1.id, thumbnail_attachment_id: a2.id, key: sealed.rawKey, iv: sealed.iv, thumb_iv: sealedThumb.iv, name: 'garden.png', type: 'image/png', size: bobPng.length, width: 600, height: 400 },
    { attachment_id: a3.id, key: sealedFile.rawKey, iv: sealedFile.iv, name: 'minutes.txt', type: 'text/plain', size: fileBytes.length },
  ];
  const m = s.backend.addMessage('c1', 'u-bob', await encryptMessage({ key, version: 1, plaintext: messagePlaintext('from Bob, encrypted', files), conversationId: 'c1' }), null, null, [a1.id, a2.id, a3.id]);
  m.content_type = 'encrypted';
  s.push({ type: 'message', message: s.backend.messageJson('c1', m) });
  const theirs = s.page.locator('.msg-row:not(.is-mine)', { hasText: 'from Bob, encrypted' });
  const thumb = theirs.locator('.att-image img');
  await thumb.waitFor();
  await s.page.waitForFunction((el) => el.src.startsWith('data:image/jpeg') && el.naturalWidth === 240, await thumb.elementHandle());
  await theirs.locator('.att-file', { hasText: 'minutes.txt' }).waitFor();
  await shot(s.page, 'e2ee-conversation');
  await theirs.getByRole('button', { name: 'Open image garden.png' }).click();
  await s.page.waitForFunction(() => {
    const i = /** @type {HTMLImageElement|null} */ (document.querySelector('dialog.viewer .viewer-img'));
    return !!i && i.src.startsWith('data:image/png') && i.complete && i.naturalWidth === 600;
  });
  await shot(s.page, 'e2ee-viewer');
  await s.page.keyboard.press('Escape');
  const [download] = await Promise.all([s.page.waitForEvent('download'), theirs.locator('.att-file', { hasText: 'minutes.txt' }).click()]);
  assert.equal(download.suggestedFilename(), 'minutes.txt');
  assert.deepEqual(readFileSync(await download.path()), fileBytes);
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});
