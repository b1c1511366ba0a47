// End-to-end encryption against the real chat server, in headless Chromium: users chat in an
// encrypted conversation and read each other; the server's storage (the SQLite files, and in
// scale-out mode the PostgreSQL database and the Redis traffic) never holds a marker text that
// was sent encrypted, while a control text sent in plain is found there; a removed group member
// cannot decrypt what follows; a tampered envelope shows "could not be decrypted"; a new browser
// restores its keys from a backup; a user's second device gets the key by a key request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, newUser, registerViaUi, loginViaUi, screenshot, sendViaUi, startServer } from './support/harness.mjs';

const T = 120_000;

/** Sign up in a fresh context; resolves once this browser's device is registered. */
async function person(browser, baseUrl, name) {
  const user = newUser(name);
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await registerViaUi(page, baseUrl, user);
  await deviceReady(page);
  return { user, ctx, page, errors };
}

/** @param {import('playwright-core').Page} page */
function deviceReady(page) {
  return page.waitForFunction(() => !!(/** @type {any} */ (window).chatClient?.e2ee?.device?.id), null, { timeout: 20_000 });
}

/** A new encrypted 1:1 through the UI. */
async function startEncryptedDirect(page, other) {
  await page.getByRole('button', { name: 'New chat' }).first().click();
  const dlg = page.getByRole('dialog');
  await dlg.locator('#new-encrypted').check();
  await dlg.getByPlaceholder('Search people by name or email').fill(other.email);
  await dlg.locator('.user-item', { hasText: other.name }).click();
  await page.locator('.chat .chat-title', { hasText: other.name }).waitFor();
  await page.locator('.chat-header .e2ee-badge:not([hidden])').waitFor();
}

/** A new group through the UI, encrypted or not. */
async function startGroup(page, title, members, { encrypted }) {
  await page.getByRole('button', { name: 'New chat' }).first().click();
  const dlg = page.getByRole('dialog');
  await dlg.getByRole('tab', { name: 'New group' }).click();
  await dlg.getByLabel('Group name').fill(title);
  if (encrypted) await dlg.locator('#new-encrypted').check();
  for (const m of members) {
    await dlg.getByPlaceholder('Search people by name or email').fill(m.email);
    await dlg.locator('.user-item', { hasText: m.name }).click();
  }
  await dlg.getByRole('button', { name: 'Create group' }).click();
  await page.locator('.chat .chat-title', { hasText: title }).waitFor();
}

/** Open a conversation from the list. */
async function open(page, name) {
  await page.locator('.conv-item').filter({ has: page.locator('.conv-name', { hasText: name }) }).first().click();
  await page.locator('.chat .chat-title', { hasText: name }).waitFor();
}

/** The bubble with this text, decrypted (a normal text bubble, not a state). */
const plain = (page, text) => page.locator('.msg-text:not(.is-e2ee)', { hasText: text });

/** Every byte under a directory, as latin1 text (a binary grep). @param {string} dir */
function dirBytes(dir) {
  return readdirSync(dir)
    .filter((f) => f.startsWith('chat.db'))
    .map((f) => readFileSync(join(dir, f)).toString('latin1'))
    .join('\n');
}

/** @param {string} cmd @param {string[]} args */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

const haveScaleOut = () =>
  spawnSync('pg_isready', ['-h', '127.0.0.1', '-p', '5432']).status === 0 && spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG';

test('embedded server: encrypted chat, no plaintext in SQLite, a tampered envelope, removal, backup restore, a second device by key request', { timeout: 6 * T }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'chat-e2ee-'));
  const server = await startServer({ own: true, env: { CHAT_DATA__DIR: dataDir } });
  const browser = await launchBrowser();
  try {
    const base = server.baseUrl;
    const alice = await person(browser, base, 'Alice');
    const bob = await person(browser, base, 'Bob');
    const carol = await person(browser, base, 'Carol');
    const tag = alice.user.tag;
    const MARKER = `marker-${tag}-quokka`;
    const CONTROL = `control-${tag}-plain`;

    // (a) Alice and Bob in an encrypted 1:1, each reads the other.
    await startEncryptedDirect(alice.page, bob.user);
    await alice.page.locator('.conv-item', { hasText: 'Bob' }).locator('.conv-lock').waitFor();
    await sendViaUi(alice.page, `hello Bob ${MARKER}`);
    await alice.page.locator('.msg-row.is-mine[data-status="sent"], .msg-row.is-mine[data-status="delivered"], .msg-row.is-mine[data-status="read"]', { hasText: MARKER }).waitFor();
    await open(bob.page, 'Alice');
    await plain(bob.page, `hello Bob ${MARKER}`).waitFor();
    await bob.page.locator('.conv-item', { hasText: 'Alice' }).locator('.conv-lock').waitFor();
    await sendViaUi(bob.page, `hi Alice ${MARKER} back`);
    await plain(alice.page, `hi Alice ${MARKER} back`).waitFor();
    await screenshot(alice.page, 'e2ee-real-alice');

    // A control text, sent in plain in a group whose title is also plain.
    const controlTitle = `Plain group ${tag}`;
    await startGroup(alice.page, controlTitle, [bob.user], { encrypted: false });
    await sendViaUi(alice.page, CONTROL);
    await plain(alice.page, CONTROL).waitFor();

    // (b, SQLite) The marker is nowhere in the database files (-wal and -shm included); the control is.
    await new Promise((r) => setTimeout(r, 1500));
    let bytes = dirBytes(dataDir);
    assert.ok(bytes.includes(CONTROL), 'the grep finds the plain control text');
    assert.ok(bytes.includes(controlTitle), 'and the plain title');
    assert.ok(!bytes.includes(MARKER), 'the encrypted marker is not in the SQLite files');
    assert.ok(bytes.includes('"kid":1'), 'envelopes are stored');

    // (f) Alice's second browser: a new device, gets the key by a key request, reads the history.
    const alice2ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const alice2 = await alice2ctx.newPage();
    await loginViaUi(alice2, base, alice.user);
    await deviceReady(alice2);
    await open(alice2, 'Bob');
    await plain(alice2, `hello Bob ${MARKER}`).waitFor({ timeout: 30_000 });
    await plain(alice2, `hi Alice ${MARKER} back`).waitFor();
    await alice2ctx.close();

    // (e) Bob backs up his keys; a new browser of Bob's restores them and reads the history.
    await bob.page.locator('.chat-header .e2ee-badge').click();
    await bob.page.getByRole('dialog').getByRole('button', { name: 'Set up key backup' }).click();
    const backupDlg = bob.page.getByRole('dialog', { name: 'Key backup' });
    const passphrase = (await backupDlg.locator('.passphrase').textContent()).trim();
    await backupDlg.getByRole('button', { name: 'Save backup' }).click();
    await bob.page.locator('.toast', { hasText: 'Key backup saved' }).waitFor({ timeout: 30_000 });
    await bob.page.keyboard.press('Escape');
    // Alice's first device closes, so that only the backup can help the new browser at once.
    await alice.page.close();
    const bob2ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const bob2 = await bob2ctx.newPage();
    await bob.page.close(); // nobody of Bob's answers key requests either
    await loginViaUi(bob2, base, bob.user);
    await deviceReady(bob2);
    await open(bob2, 'Alice');
    await bob2.locator('.msg-text.is-waiting').first().waitFor({ timeout: 30_000 });
    await bob2.locator('.key-banner').getByRole('button', { name: 'Restore keys from backup' }).click();
    const restoreDlg = bob2.getByRole('dialog', { name: 'Restore keys from backup' });
    await restoreDlg.getByLabel('Backup passphrase').fill('wrong words entirely');
    await restoreDlg.getByRole('button', { name: 'Restore keys' }).click();
    await restoreDlg.locator('.form-error', { hasText: 'does not open the backup' }).waitFor({ timeout: 30_000 });
    await restoreDlg.getByLabel('Backup passphrase').fill(passphrase);
    await restoreDlg.getByRole('button', { name: 'Restore keys' }).click();
    await plain(bob2, `hello Bob ${MARKER}`).waitFor({ timeout: 30_000 });
    await plain(bob2, `hi Alice ${MARKER} back`).waitFor();

    // (d) A tampered envelope: Alice sends while Bob's page is closed, the stored envelope is
    // altered, Bob opens the conversation: "could not be decrypted", never text.
    const aliceP = await alice.ctx.newPage();
    await aliceP.goto(`${base}/`);
    await aliceP.locator('.sidebar').waitFor();
    await open(aliceP, 'Bob');
    await bob2.close();
    await sendViaUi(aliceP, `to be tampered ${tag}`);
    const row = aliceP.locator('.msg-row.is-mine:not([data-status="sending"])', { hasText: `to be tampered ${tag}` });
    await row.waitFor();
    const messageId = await row.getAttribute('data-id');
    const py = `
import sqlite3, json, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
row = db.execute("select content from messages where id = ?", (sys.argv[2],)).fetchone()
env = json.loads(row[0])
ct = env["ct"]
env["ct"] = ("B" if ct[3] == "A" else "A").join([ct[:3], ct[4:]])
db.execute("update messages set content = ? where id = ?", (json.dumps(env, separators=(",", ":")), sys.argv[2]))
db.commit()
print("ok")
`;
    assert.equal(run('python3', ['-c', py, join(dataDir, 'chat.db'), messageId]).trim(), 'ok');
    await server.restart?.(); // no server-side copy survives
    const bob3 = await bob2ctx.newPage();
    await bob3.goto(`${base}/`);
    await bob3.locator('.sidebar').waitFor();
    await open(bob3, 'Alice');
    await bob3.locator('.msg-text.is-undecryptable', { hasText: 'This message could not be decrypted' }).waitFor({ timeout: 30_000 });
    assert.equal(await bob3.locator('.msg-text', { hasText: 'to be tampered' }).count(), 0);
    await screenshot(bob3, 'e2ee-real-tampered');

    // (c) An encrypted group; Carol is removed; what follows she cannot decrypt.
    const group = `Secret group ${tag}`;
    await aliceP.reload();
    await aliceP.locator('.sidebar').waitFor();
    await startGroup(aliceP, group, [bob.user, carol.user], { encrypted: true });
    await sendViaUi(aliceP, `before removal ${tag}`);
    await open(carol.page, group);
    await plain(carol.page, `before removal ${tag}`).waitFor({ timeout: 30_000 });
    const convId = await carol.page.evaluate(() => /** @type {any} */ (window).chatClient.activeConversationId);
    await aliceP.getByRole('button', { name: 'Conversation details' }).click();
    await aliceP.getByRole('dialog').getByRole('button', { name: `Remove ${carol.user.name}` }).click();
    await aliceP.getByRole('dialog').locator('.user-item', { hasText: carol.user.name }).waitFor({ state: 'detached' });
    await aliceP.keyboard.press('Escape');
    // Alice's client rotates (rotation_needed), then sends with the new version.
    await aliceP.waitForFunction((id) => /** @type {any} */ (window).chatClient.e2ee.heldVersion(id) >= 2, convId, { timeout: 30_000 });
    await sendViaUi(aliceP, `after removal ${MARKER}`);
    const after = aliceP.locator('.msg-row.is-mine:not([data-status="sending"])', { hasText: 'after removal' });
    await after.waitFor();
    const afterId = await after.getAttribute('data-id');
    const stored = run('python3', ['-c', 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select content from messages where id = ?", (sys.argv[2],)).fetchone()[0])', join(dataDir, 'chat.db'), afterId]).trim();
    assert.equal(JSON.parse(stored).kid, 2, 'sent with the rotated key');
    // Carol's browser, with every key it ever held, cannot read it.
    const carolTry = await carol.page.evaluate(async ([id, env]) => /** @type {any} */ (window).chatClient.e2ee.decrypt(id, env), [convId, stored]);
    assert.equal(carolTry.state, 'waiting', 'no key for version 2 on the removed member\'s device');
    assert.equal(await carol.page.locator('.msg-text', { hasText: 'after removal' }).count(), 0);
    // Bob (still a member) reads it.
    await bob3.locator('.conv-item', { hasText: group }).click();
    await plain(bob3, `after removal ${MARKER}`).waitFor({ timeout: 30_000 });
    bytes = dirBytes(dataDir);
    assert.ok(!bytes.includes(MARKER), 'still no marker in the SQLite files');
    assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], []);
  } finally {
    await browser.close();
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('scale-out mode: no plaintext in PostgreSQL or in the Redis traffic, the control is in both', { timeout: 3 * T }, async () => {
  // The suite needs PostgreSQL and Redis (the README's prerequisites): never skipped.
  assert.ok(haveScaleOut(), 'this test needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379: start them (see the README), it is never skipped');
  const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const db = `chat_e2ee_${tag}`;
  const pg = ['-h', '127.0.0.1', '-p', '5432', '-U', 'postgres'];
  run('psql', [...pg, '-v', 'ON_ERROR_STOP=1', '-c', `CREATE DATABASE ${db}`]);
  const capDir = mkdtempSync(join(tmpdir(), 'chat-e2ee-redis-'));
  const capFile = join(capDir, 'monitor.txt');
  const prefix = `e2ee-${tag}:`;
  const monitor = spawn('sh', ['-c', `exec redis-cli -h 127.0.0.1 -p 6379 monitor > '${capFile}'`], { stdio: 'ignore' });
  const server = await startServer({
    own: true,
    env: {
      CHAT_DATABASE__URL: `postgres://postgres@127.0.0.1:5432/${db}`,
      CHAT_REDIS__URL: 'redis://127.0.0.1:6379',
      CHAT_REDIS__KEY_PREFIX: prefix,
      CHAT_AUTH__JWT_SECRET: `e2ee-test-secret-${tag}-0123456789abcdef`,
    },
  });
  const browser = await launchBrowser();
  try {
    const base = server.baseUrl;
    const alice = await person(browser, base, 'Alice');
    const bob = await person(browser, base, 'Bob');
    const MARKER = `marker-${tag}-wombat`;
    const CONTROL = `control-${tag}-visible`;
    await startEncryptedDirect(alice.page, bob.user);
    await sendViaUi(alice.page, `pg ${MARKER}`);
    await open(bob.page, 'Alice');
    await plain(bob.page, `pg ${MARKER}`).waitFor({ timeout: 30_000 });
    await sendViaUi(bob.page, `answer ${MARKER}`);
    await plain(alice.page, `answer ${MARKER}`).waitFor({ timeout: 30_000 });
    await startGroup(alice.page, `Plain ${tag}`, [bob.user], { encrypted: false });
    await sendViaUi(alice.page, CONTROL);
    await bob.page.locator('.conv-item', { hasText: `Plain ${tag}` }).click();
    await plain(bob.page, CONTROL).waitFor({ timeout: 30_000 });
    await new Promise((r) => setTimeout(r, 1000));

    const dump = run('pg_dump', [...pg, '--data-only', db], { maxBuffer: 256 * 1024 * 1024 });
    assert.ok(dump.includes(CONTROL), 'pg_dump has the plain control text');
    assert.ok(dump.includes(`Plain ${tag}`), 'and the plain title');
    assert.ok(!dump.includes(MARKER), 'the encrypted marker is not in PostgreSQL');
    const traffic = existsSync(capFile) ? readFileSync(capFile, 'latin1') : '';
    assert.ok(traffic.includes(prefix), 'the Redis capture saw this server');
    assert.ok(traffic.includes(CONTROL), 'the Redis capture has the plain control text');
    assert.ok(!traffic.includes(MARKER), 'the encrypted marker is not in the Redis traffic');
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    await browser.close();
    await server.stop();
    monitor.kill('SIGTERM');
    rmSync(capDir, { recursive: true, force: true });
    spawnSync('psql', [...pg, '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`]);
  }
});
