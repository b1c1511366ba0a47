// End-to-end encryption in the real browser against the scripted server (web/e2e/support/
// scripted.mjs) with the key routes of web/test/fake-e2ee.js: the page's own WebCrypto and
// IndexedDB, the other member's device played here with crypto.js. What the UI shows: the lock,
// the security panel, the waiting and undecryptable states, key backup and restore.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot, sendViaUi, bubbles } from './support/harness.mjs';
import { scriptedSuite } from './support/scripted.mjs';
import { e2eeServer } from '../test/fake-e2ee.js';
import { decryptMessage, encryptMessage, generateConversationKey, generateDeviceKeys } from '../sdk/crypto.js';

const scripted = scriptedSuite();

async function setup() {
  const s = await scripted();
  const conv = s.backend.addConversation('c1', { members: ['u-me', 'u-bob'] });
  s.backend.users.get('u-bob').display_name = 'Bob';
  conv.participants[1].display_name = 'Bob';
  Object.assign(conv, { encrypted: true, key_version: 0, rotation_needed: false });
  s.backend.addConversation('c2', { members: ['u-me', 'u-ann'] });
  s.backend.users.get('u-ann').display_name = 'Ann';
  s.backend.convs.get('c2').conv.participants[1].display_name = 'Ann';
  const server = e2eeServer(s.backend);
  const bobKeys = await generateDeviceKeys();
  const bob = { ...server.addDevice('u-bob', bobKeys.publicRaw, 'Firefox on Android'), ...bobKeys };
  const key1 = await generateConversationKey();
  await server.storeKey('c1', 1, key1, bob, [bob]);
  server.grants.push({ convId: 'c1', version: 1, key: key1, from: bob });
  /** Bob's message, stored as the server stores it. */
  const say = async (text, key = key1, version = 1) => {
    const m = s.backend.addMessage('c1', 'u-bob', await encryptMessage({ key, version, plaintext: text, conversationId: 'c1' }));
    m.content_type = 'encrypted';
    return m;
  };
  return { s, server, bob, key1, say };
}

test('encrypted conversation: lock, decrypted history, waiting and undecryptable states, send encrypts, security panel, backup', { timeout: 90_000 }, async () => {
  const { s, server, bob, key1, say } = await setup();
  await say('Hi! This one is end-to-end encrypted.');
  const bad = await say('a secret that was tampered with');
  const env = JSON.parse(bad.content);
  env.ct = (env.ct[0] === 'A' ? 'B' : 'A') + env.ct.slice(1);
  bad.content = JSON.stringify(env);
  // Version 2, not (yet) wrapped for this browser.
  const key2 = await generateConversationKey();
  await server.storeKey('c1', 2, key2, bob, [bob]);
  await say('sent with a key you do not have yet', key2, 2);

  await s.signIn();
  const item = s.page.locator('.conv-item', { hasText: 'Bob' });
  await item.locator('.conv-lock').waitFor();
  assert.equal(await s.page.locator('.conv-item', { hasText: 'Ann' }).locator('.conv-lock').count(), 0, 'no lock on a plain conversation');
  await item.click();
  await s.page.locator('.chat-header .e2ee-badge:not([hidden])').waitFor();
  await s.page.locator('.msg-text', { hasText: 'Hi! This one is end-to-end encrypted.' }).waitFor();
  await s.page.locator('.msg-text.is-undecryptable', { hasText: 'This message could not be decrypted' }).waitFor();
  await s.page.locator('.msg-text.is-waiting', { hasText: "Waiting for this message's key" }).waitFor();
  const shown = (await bubbles(s.page)).map((b) => b.text).join('\n');
  assert.ok(!shown.includes('tampered with'), 'no text from a failed decryption');
  assert.ok(!shown.includes('{"v":1'), 'never the envelope');
  await s.page.locator('.key-banner', { hasText: 'waits for a key' }).waitFor();
  assert.ok(server.requests.some((r) => r.convId === 'c1'), 'the key was asked for');
  assert.equal(await s.page.locator('.composer-input').getAttribute('placeholder'), 'Write an encrypted message...');
  await screenshot(s.page, 'e2ee-chat-states');

  // Sending: an envelope leaves, the text shows.
  await sendViaUi(s.page, 'my encrypted answer');
  await s.page.locator('.msg-row.is-mine[data-status="sent"]', { hasText: 'my encrypted answer' }).waitFor();
  const frame = s.sent.find((f) => f.type === 'message');
  assert.equal(frame.content_type, 'encrypted');
  assert.ok(!JSON.stringify(s.sent).includes('my encrypted answer'));
  assert.equal(await decryptMessage({ key: key1, envelope: frame.content, conversationId: 'c1' }), 'my encrypted answer');

  // Bob answers his first message: the server quotes it as "Encrypted message", the page shows
  // its own decryption of the original.
  const first = s.backend.convs.get('c1').messages[0];
  const answer = s.backend.addMessage('c1', 'u-bob', await encryptMessage({ key: key1, version: 1, plaintext: 'a reply to it', conversationId: 'c1' }), null, first.id);
  answer.content_type = 'encrypted';
  s.push({ type: 'message', message: s.backend.messageJson('c1', answer) });
  const quoted = s.page.locator('.msg-row', { hasText: 'a reply to it' }).locator('.msg-quote-text');
  await quoted.filter({ hasText: 'Hi! This one is end-to-end encrypted.' }).waitFor();

  // The key of version 2 arrives: the waiting message is decrypted in place.
  const mine = [...server.devices.values()].find((d) => d.user_id === 'u-me');
  await server.storeKey('c1', 2, key2, bob, [mine]);
  s.push({ type: 'key_shared', conversation_id: 'c1', key_version: 2, rotated: false, from_user_id: 'u-bob', from_device_id: bob.id, device_ids: [mine.id] });
  await s.page.locator('.msg-text:not(.is-e2ee)', { hasText: 'sent with a key you do not have yet' }).waitFor();
  await s.page.locator('.key-banner').waitFor({ state: 'hidden' });

  // Security panel: this device, Bob's device with its safety number.
  await s.page.locator('.chat-header .e2ee-badge').click();
  const panel = s.page.getByRole('dialog');
  await panel.locator('.device-card[data-device="' + bob.id + '"] .safety-number').waitFor();
  assert.equal(await panel.locator('.device-card.is-this').count(), 1, 'this browser, once, among my devices');
  const sn = (await panel.locator('.safety-number').first().textContent()).replace(/\s+/g, '');
  assert.match(sn, /^\d{60}$/);
  await screenshot(s.page, 'e2ee-security-panel');

  // Key backup: the proposed passphrase is eight words (about 65 bits); a short own one is refused.
  await panel.getByRole('button', { name: 'Set up key backup' }).click();
  const backup = s.page.getByRole('dialog', { name: 'Key backup' });
  const proposed = (await backup.locator('.passphrase').textContent()).trim();
  assert.equal(proposed.split(' ').length, 8);
  await backup.getByRole('button', { name: 'Use my own passphrase' }).click();
  await backup.getByLabel(/Passphrase \(at least/).fill('short');
  await backup.getByLabel('The same again').fill('short');
  await backup.getByRole('button', { name: 'Save backup' }).click();
  await backup.locator('.form-error', { hasText: 'at least 12' }).waitFor();
  await backup.getByRole('button', { name: 'Propose one for me' }).click();
  await screenshot(s.page, 'e2ee-backup-setup');
  const pass = (await backup.locator('.passphrase').textContent()).trim();
  await backup.getByRole('button', { name: 'Save backup' }).click();
  await s.page.locator('.toast', { hasText: 'Key backup saved (2 keys)' }).waitFor();
  assert.equal(server.backup.kdf, 'PBKDF2-SHA256');
  assert.deepEqual(s.errors, []);
  await s.ctx.close();

  // A new browser (fresh context): waiting, the banner offers the restore; a wrong passphrase is clear.
  const t = await scripted();
  t.backend.convs = s.backend.convs;
  t.backend.users = s.backend.users;
  const server2 = e2eeServer(t.backend);
  server2.devices = server.devices;
  server2.keys = server.keys;
  server2.backup = server.backup;
  await t.signIn();
  await t.page.locator('.conv-item', { hasText: 'Bob' }).click();
  await t.page.locator('.msg-text.is-waiting').first().waitFor();
  await t.page.locator('.key-banner').getByRole('button', { name: 'Restore keys from backup' }).waitFor();
  await screenshot(t.page, 'e2ee-restore-banner');
  await t.page.locator('.key-banner').getByRole('button', { name: 'Restore keys from backup' }).click();
  const restore = t.page.getByRole('dialog', { name: 'Restore keys from backup' });
  await restore.getByLabel('Backup passphrase').fill('not the passphrase');
  await restore.getByRole('button', { name: 'Restore keys' }).click();
  await restore.locator('.form-error', { hasText: 'does not open the backup' }).waitFor();
  await restore.getByLabel('Backup passphrase').fill(pass);
  await restore.getByRole('button', { name: 'Restore keys' }).click();
  await t.page.locator('.msg-text:not(.is-e2ee)', { hasText: 'Hi! This one is end-to-end encrypted.' }).waitFor();
  await t.page.locator('.msg-text:not(.is-e2ee)', { hasText: 'sent with a key you do not have yet' }).waitFor();
  assert.deepEqual(t.errors, []);
  await t.ctx.close();
});

test('turning encryption on asks first and says it cannot be turned off', { timeout: 60_000 }, async () => {
  const { s } = await setup();
  await s.signIn();
  await s.page.locator('.conv-item', { hasText: 'Ann' }).click();
  assert.equal(await s.page.locator('.chat-header .e2ee-badge').isHidden(), true);
  await s.page.getByRole('button', { name: 'Conversation details' }).click();
  await s.page.getByRole('dialog').getByRole('button', { name: 'Turn on encryption' }).click();
  const confirm = s.page.getByRole('dialog', { name: 'Turn on end-to-end encryption?' });
  await confirm.locator('.confirm-text', { hasText: 'cannot be turned off' }).waitFor();
  await screenshot(s.page, 'e2ee-turn-on-confirm');
  await confirm.getByRole('button', { name: 'Turn on encryption' }).click();
  await s.page.locator('.chat-header .e2ee-badge:not([hidden])').waitFor();
  assert.equal(s.backend.convs.get('c2').conv.encrypted, true);
  await s.page.keyboard.press('Escape');
  await s.page.setViewportSize({ width: 390, height: 760 });
  await screenshot(s.page, 'e2ee-phone-header');
  await s.page.setViewportSize({ width: 1280, height: 800 });
  // The new-conversation dialog offers encryption from the start.
  await s.page.keyboard.press('Escape');
  await s.page.getByRole('button', { name: 'New chat' }).first().click();
  await s.page.getByRole('dialog').getByText('End-to-end encrypted').waitFor();
  assert.deepEqual(s.errors, []);
  await s.ctx.close();
});
