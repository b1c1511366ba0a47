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
import { chromium } from 'playwright-core';

const T = 150_000;
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

const shot = (/** @type {import('playwright-core').Page} */ page, /** @type {string} */ name) => page.waitForTimeout(400).then(() => page.screenshot({ path: `/tmp/att-real-${name}.png` }));

/**
 * Sign up in a fresh context. `allowOrigin`: the page's Content-Security-Policy lets it show
 * images from that origin too: a local S3 server speaks plain http, which img-src (`https:`)
 * does not name; a real bucket is https. (connect-src names the blob store: the server's.)
 */
async function person(name, { e2ee = false, allowOrigin = '' } = {}) {
  const user = newUser(name);
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 }, acceptDownloads: true });
  if (allowOrigin) {
    await ctx.route(`${server.baseUrl}/`, async (route) => {
      const res = await route.fetch();
      const csp = (res.headers()['content-security-policy'] ?? '').replace("img-src 'self'", `img-src 'self' ${allowOrigin}`);
      await route.fulfill({ response: res, headers: { ...res.headers(), 'content-security-policy': csp } });
    });
  }
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

test('attach by button, paste and drop; progress; cancel; a renamed .exe refused; images and a PDF reach the other member; viewer; download', { timeout: T }, async () => {
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

  // Real progress: a larger file over a throttled link reports its way up.
  const cdp = await ann.ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 600 * 1024 });
  const big = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(1_500_000, 0x20), Buffer.from('\n%%EOF\n')]);
  await page.locator('.file-input').setInputFiles([{ name: 'big.pdf', mimeType: 'application/pdf', buffer: big }]);
  /** @type {Set<number>} */
  const seen = new Set();
  for (let i = 0; i < 300; i++) {
    const now = await item(page, 'big.pdf').locator('.tray-progress').getAttribute('aria-valuenow', { timeout: 200 }).catch(() => null);
    if (now === null && (await item(page, 'big.pdf').getAttribute('data-status')) !== 'uploading') break;
    if (now !== null) seen.add(Number(now));
    if (seen.size === 3) await shot(page, 'progress');
    await page.waitForTimeout(50);
  }
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await item(page, 'big.pdf').and(page.locator('[data-status="done"]')).waitFor({ timeout: 30_000 });
  assert.ok([...seen].some((v) => v > 0 && v < 100), `progress between 0 and 100 was shown: ${[...seen].join(', ')}`);
  await item(page, 'big.pdf').getByRole('button', { name: 'Remove big.pdf' }).click();

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

test('encrypted conversation: the image goes up encrypted and the other member sees it decrypted', { timeout: T }, async () => {
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

const MOTO_MISSING = 'moto\'s S3 server is needed for this test: install it with `python3 -m pip install "moto[server]"` (.ci/run does)';

/** moto's S3 server (PyPI's moto[server]) on a free port, with a bucket; throws, saying how to install it, when it cannot start. */
async function startMoto() {
  const { spawn, spawnSync } = await import('node:child_process');
  if (spawnSync('python3', ['-c', 'import moto.server']).status !== 0) throw new Error(MOTO_MISSING);
  const net = await import('node:net');
  const port = await new Promise((res) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = /** @type {any} */ (s.address()).port;
      s.close(() => res(p));
    });
  });
  const child = spawn('python3', ['-c', 'import sys; from moto.server import main; main(sys.argv[1:])', '-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${url}/att-e2e`, { method: 'PUT' }).then((r) => r.ok, () => false);
    if (ok) {
      // What a bucket that browsers upload to needs (S3's own CORS rules, an operator's job).
      const cors = '<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader></CORSRule></CORSConfiguration>';
      await fetch(`${url}/att-e2e?cors`, { method: 'PUT', body: cors, headers: { 'Content-Type': 'application/xml' } });
      return { url, bucket: 'att-e2e', stop: () => child.kill('SIGTERM') };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error(`moto's server did not answer on ${url} within 20 s; ${MOTO_MISSING}`);
}

test('blobs in S3 (moto): the browser uploads straight to the presigned URL, the other member downloads from it', { timeout: T }, async () => {
  const moto = await startMoto();
  const s3 = await startServer({
    own: true,
    env: { CHAT_BLOBS__URL: `s3://${moto.bucket}`, CHAT_BLOBS__ENDPOINT: moto.url, CHAT_BLOBS__ALLOW_HTTP: 'true', CHAT_BLOBS__REGION: 'us-east-1', CHAT_BLOBS__ACCESS_KEY_ID: 'test', CHAT_BLOBS__SECRET_ACCESS_KEY: 'test' },
  });
  const saved = server;
  const savedBrowser = browser;
  server = s3;
  // The page (127.0.0.1) reaching moto (127.0.0.1, another port) is a "local network" request
  // Chromium refuses without a prompt: allowed here (a real bucket is on the internet).
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights'],
  });
  try {
    const ann = await person('Ann S3', { allowOrigin: moto.url });
    const bob = await person('Bob S3', { allowOrigin: moto.url });
    await startDirectViaUi(ann.page, bob.user);
    /** @type {string[]} */
    const puts = [];
    ann.page.on('request', (r) => r.method() === 'PUT' && puts.push(r.url()));
    await ann.page.locator('.file-input').setInputFiles([
      { name: 'bucket.png', mimeType: 'image/png', buffer: makePng(500, 300) },
      { name: 'bucket.pdf', mimeType: 'application/pdf', buffer: PDF },
    ]);
    await item(ann.page, 'bucket.png').and(ann.page.locator('[data-status="done"]')).waitFor({ timeout: 30_000 });
    await item(ann.page, 'bucket.pdf').and(ann.page.locator('[data-status="done"]')).waitFor({ timeout: 30_000 });
    assert.ok(puts.length >= 2 && puts.every((u) => u.startsWith(moto.url)), `the bytes went to S3: ${puts.join(', ')}`);
    await ann.page.locator('.composer-input').fill('straight from the bucket');
    await ann.page.locator('.composer-input').press('Enter');
    await open(bob.page, ann.user.name);
    const theirs = bob.page.locator('.msg-row:not(.is-mine)', { hasText: 'straight from the bucket' });
    await loaded(theirs.locator('.att-image img'));
    await theirs.locator('.att-file', { hasText: 'bucket.pdf' }).waitFor();
    await shot(bob.page, 's3-receiver');
    assert.deepEqual(ann.errors, []);
    assert.deepEqual(bob.errors, []);
    await ann.ctx.close();
    await bob.ctx.close();
  } finally {
    await browser.close();
    browser = savedBrowser;
    server = saved;
    await s3.stop();
    moto.stop();
  }
});

test("the page's Content-Security-Policy lets it connect to the blob store's origin, and only there", { timeout: T }, async () => {
  const moto = await startMoto();
  const s3 = await startServer({ own: true, env: { CHAT_BLOBS__URL: `s3://${moto.bucket}`, CHAT_BLOBS__ENDPOINT: moto.url, CHAT_BLOBS__ALLOW_HTTP: 'true', CHAT_BLOBS__REGION: 'us-east-1', CHAT_BLOBS__ACCESS_KEY_ID: 'test', CHAT_BLOBS__SECRET_ACCESS_KEY: 'test' } });
  try {
    const csp = (await fetch(`${s3.baseUrl}/`)).headers.get('content-security-policy') ?? '';
    const connect = csp.split(';').map((d) => d.trim()).find((d) => d.startsWith('connect-src')) ?? '';
    assert.ok(connect.split(/\s+/).includes(moto.url), `connect-src lets the page PUT to ${moto.url}: ${connect}`);
    assert.ok(!/(^|\s)(https?:|\*)(\s|$)/.test(connect), `connect-src names no scheme or wildcard: ${connect}`);
    // Embedded blobs: the page connects to this server only.
    const own = (await fetch(`${server.baseUrl}/`)).headers.get('content-security-policy') ?? '';
    assert.match(own, /connect-src 'self' ws: wss:;/);
  } finally {
    await s3.stop();
    moto.stop();
  }
});
