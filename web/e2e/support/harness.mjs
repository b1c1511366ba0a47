// What the browser tests share: the server under test, Chromium, and a few UI steps.
//
// The server: CHAT_BASE_URL when set (a running chat server that serves the web client).
// Otherwise the harness starts one itself: the chat-server binary (CHAT_SERVER_BIN, or
// target/debug/chat-server, built with cargo when missing) on a free port with a fresh data
// directory, short presence grace and relaxed login limits. The binary must serve the web
// client itself (embedded in it); web/e2e/support/dev-server.mjs is only for hand-editing the
// client without rebuilding.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const WEB = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const REPO = resolve(WEB, '..');
export const SCREENSHOTS = join(WEB, 'screenshots');

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

/**
 * Waits for `url` to answer; gives up early when `child` has exited (its port was taken).
 * @param {string} url @param {number} ms @param {import('node:child_process').ChildProcess} [child]
 */
async function waitFor(url, ms, child) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child && child.exitCode !== null) throw new Error(`the server exited (code ${child.exitCode}) before ${url} answered`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

/**
 * The server the tests talk to. Call `stop()` at the end.
 * @param {{env?: Record<string, string>, own?: boolean}} [opts]  `own`: start a server with these
 *   settings even when CHAT_BASE_URL names one (for tests that need particular settings)
 * @returns {Promise<{baseUrl: string, stop: () => Promise<void>, restart?: () => Promise<void>}>}
 */
export async function startServer({ env: extraEnv = {}, own = false } = {}) {
  if (process.env.CHAT_BASE_URL && !own) return { baseUrl: process.env.CHAT_BASE_URL.replace(/\/$/, ''), stop: async () => {} };

  const bin = process.env.CHAT_SERVER_BIN || join(REPO, 'target', 'debug', 'chat-server');
  if (!process.env.CHAT_SERVER_BIN) {
    // Make sure the binary matches the sources (a no-op when it does).
    const built = spawnSync('cargo', ['build', '--quiet', '-p', 'server', '--bin', 'chat-server'], { cwd: REPO, stdio: 'inherit' });
    if (built.status !== 0 && !existsSync(bin)) throw new Error('cargo build of the chat server failed; set CHAT_BASE_URL or CHAT_SERVER_BIN');
    if (built.status !== 0) console.warn(`cargo build failed; testing the existing ${bin}`);
  }
  if (!existsSync(bin)) throw new Error(`no chat server binary at ${bin}`);
  let port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-'));
  mkdirSync(dataDir, { recursive: true });
  const env = {
    ...process.env,
    CHAT_HTTP__ADDR: `127.0.0.1:${port}`,
    CHAT_DATA__DIR: dataDir,
    CHAT_CONFIG_DIR: join(dataDir, 'no-config'),
    CHAT_AUTH__LOGIN_ATTEMPTS_PER_MINUTE: '10000',
    CHAT_AUTH__LOGIN_BURST: '10000',
    CHAT_AUTH__REGISTRATIONS_PER_MINUTE: '10000',
    CHAT_AUTH__REGISTRATION_BURST: '10000',
    CHAT_AUTH__ARGON2_MEMORY_KIB: '1024',
    CHAT_AUTH__ARGON2_ITERATIONS: '1',
    CHAT_LOG__LEVEL: process.env.CHAT_LOG__LEVEL || 'warn',
    ...extraEnv,
  };
  /** @type {import('node:child_process').ChildProcess} */
  let child;
  // The server's own output goes to a file (web/test-results/), not into the test report.
  mkdirSync(join(WEB, 'test-results'), { recursive: true });
  const logPath = join(WEB, 'test-results', `chat-server-${port}.log`);
  const log = openSync(logPath, 'a');
  const launch = async () => {
    child = spawn(bin, [], { env: { ...env, CHAT_HTTP__ADDR: `127.0.0.1:${port}` }, stdio: ['ignore', log, log] });
    await waitFor(`http://127.0.0.1:${port}/healthz`, 30_000, child);
  };
  // A port found free may be taken before the server binds it: then try another one.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 5 || child.exitCode === null) throw err;
      port = await freePort();
    }
  }
  const direct = `http://127.0.0.1:${port}`;
  // The binary serves the client itself (embedded): a build that does not is a failure,
  // never papered over by the dev server.
  const served = await fetch(`${direct}/app/main.js`).then((r) => r.ok && (r.headers.get('content-type') ?? '').includes('javascript'), () => false);
  if (!served) throw new Error(`the chat server at ${direct} does not serve the web client (/app/main.js)`);
  return {
    baseUrl: direct,
    restart: async () => {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      await launch();
    },
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            child.kill('SIGKILL');
            r(undefined);
          }, 5000);
          child.once('exit', () => {
            clearTimeout(t);
            r(undefined);
          });
        });
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium from the distribution (Debian's `chromium`), driven by playwright-core. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

let counter = 0;
/** A unique user for this run. @param {string} name */
export function newUser(name) {
  const tag = `${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  return { name, email: `${name.toLowerCase().replace(/\W+/g, '.')}.${tag}@example.com`, password: 'correct horse battery', tag };
}

/**
 * Register through the UI and wait for the chat screen.
 * @param {import('playwright-core').Page} page
 * @param {string} baseUrl
 * @param {{name: string, email: string, password: string}} user
 */
export async function registerViaUi(page, baseUrl, user) {
  await page.goto(`${baseUrl}/`);
  await page.getByRole('tab', { name: 'Create account' }).click();
  await page.getByLabel('Display name').fill(user.name);
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.locator('form.auth-form button[type=submit]').click();
  await page.locator('.sidebar').waitFor();
}

/**
 * Sign in through the UI.
 * @param {import('playwright-core').Page} page
 * @param {string} baseUrl
 * @param {{email: string, password: string}} user
 */
export async function loginViaUi(page, baseUrl, user) {
  await page.goto(`${baseUrl}/`);
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.locator('form.auth-form button[type=submit]').click();
  await page.locator('.sidebar').waitFor();
}

/**
 * Start a 1:1 conversation through the UI (New chat, search, pick).
 * @param {import('playwright-core').Page} page
 * @param {{name: string, email: string}} other
 */
export async function startDirectViaUi(page, other) {
  await page.getByRole('button', { name: 'New chat' }).first().click();
  await page.getByRole('dialog').getByPlaceholder('Search people by name or email').fill(other.email);
  await page.getByRole('dialog').locator('.user-item', { hasText: other.name }).click();
  await page.locator('.chat .chat-title', { hasText: other.name }).waitFor();
}

/**
 * Type and send through the composer.
 * @param {import('playwright-core').Page} page
 * @param {string} text
 */
export async function sendViaUi(page, text) {
  const input = page.locator('.composer-input');
  await input.click();
  await input.pressSequentially(text, { delay: 15 });
  await input.press('Enter');
}

/** @param {import('playwright-core').Page} page @param {string} name */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.waitForTimeout(400); // let entrance animations finish
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** Messages as the page shows them: [{text, status, mine}]. @param {import('playwright-core').Page} page */
export function bubbles(page) {
  return page.locator('.msg-row').evaluateAll((rows) =>
    rows.map((r) => ({ text: r.querySelector('.msg-text')?.textContent ?? '', status: /** @type {HTMLElement} */ (r).dataset.status ?? '', mine: r.classList.contains('is-mine') })),
  );
}

export { rmSync };
