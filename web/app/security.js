// End-to-end encryption in the UI (issue 13): the security panel of a conversation (this
// device's fingerprint, every member's devices, safety numbers with a direct peer's devices),
// key backup set-up and restore, and turning encryption on. See docs/client.md.

import { h, icon } from './dom.js';
import { toast } from './components.js';
import { confirmDialog, Dialog } from './dialogs.js';

/** A user's own passphrase must be at least this long. */
export const MIN_PASSPHRASE = 12;
/** Words in a proposed passphrase. */
export const PASSPHRASE_WORDS = 8;

/** Plain, neutral words for proposed passphrases (274 of them, about 8.1 bits each: eight words are about 65 bits, above the 60 that docs/security.md asks of a backup passphrase). */
const WORDS = 'acorn actor adobe agent alarm album alley amber anchor angle ankle apple apron arena arrow aspen atlas attic autumn avenue badge bagel bakery balcony bamboo banana banjo barley barrel basil basket beach beacon beaver bench berry bicycle birch biscuit blanket blossom border bottle boulder bracket branch breeze brick bridge brook bubble bucket budget buffalo bundle butter button cabin cactus camel candle canoe canyon carbon carpet carrot castle cattle cedar cellar cereal chalk channel cherry chess chimney cider cinema circle citrus clover cobalt coffee comet compass copper coral cotton cousin cradle crater crayon cricket crystal cupboard curtain cushion daisy dancer delta desert diamond dinner dolphin donkey dragon drawer dune eagle easel echo elbow ember engine falcon feather fence fern ferry fiddle fig finch flame flute forest fossil fountain fox garden garlic gazelle geyser ginger glacier globe goose granite grape gravel guitar hammer harbor harvest hazel helmet heron hickory honey horizon hotel iceberg igloo island ivory jacket jasmine jelly jungle kayak kettle kitten ladder lagoon lantern laptop lemon lentil lettuce lily lizard lobster locket maple marble meadow melon meteor mirror mitten monkey mosaic muffin mustard napkin nectar needle nutmeg oasis ocean olive onion orange orbit orchid otter owl paddle palace panda pantry paper parrot pasta peach peanut pebble pencil pepper piano pickle pigeon pillow pilot pine planet plum pocket pony potato puzzle quartz quilt rabbit radish rain raisin raven reef ribbon river robin rocket saddle salmon sandal satin scarf shadow shell shovel silver sketch sled spruce squash stable statue stream sugar summit sunset swan table tablet teapot tiger timber toast tomato tulip tunnel turnip velvet violin volcano wagon walnut whale willow window winter wizard yogurt zebra'.split(' ');

/** A passphrase of random words (crypto.getRandomValues, without modulo bias). */
export function proposePassphrase(n = PASSPHRASE_WORDS) {
  const out = [];
  const limit = Math.floor(0x1_0000_0000 / WORDS.length) * WORDS.length;
  const buf = new Uint32Array(1);
  while (out.length < n) {
    crypto.getRandomValues(buf);
    if (buf[0] < limit) out.push(WORDS[buf[0] % WORDS.length]);
  }
  return out.join(' ');
}

/** What went wrong, for a person. @param {any} err */
function backupError(err) {
  if (err?.code === 'bad_passphrase') return 'That passphrase does not open the backup. Check it and try again.';
  if (err?.status === 404) return 'There is no key backup for your account yet.';
  if (err?.code === 'malformed') return 'The stored backup is not one this app can read.';
  return err?.message || 'That did not work. Please try again.';
}

/**
 * Ask, then turn encryption on for a conversation.
 * @param {import('../sdk/chat-client.js').ChatClient} client @param {string} id
 */
export async function turnOnEncryption(client, id) {
  const ok = await confirmDialog({
    title: 'Turn on end-to-end encryption?',
    message: 'New messages will be readable only on the devices of the members. This cannot be turned off. Messages sent before stay as they are.',
    confirmLabel: 'Turn on encryption',
  });
  if (!ok) return false;
  try {
    await client.enableEncryption(id);
    toast('End-to-end encryption is on.');
    return true;
  } catch (err) {
    toast(/** @type {any} */ (err)?.status === 403 ? 'Only the group owner or an admin can turn on encryption.' : /** @type {any} */ (err)?.message || 'Could not turn on encryption.', 'error');
    return false;
  }
}

/** "c070 c21e ..." as two lines of 8 groups. @param {string} fp */
function fingerprintEl(fp) {
  const groups = fp.split(' ');
  return h('code', { class: 'fingerprint' }, groups.slice(0, 8).join(' '), h('br'), groups.slice(8).join(' '));
}

/** 12 groups of 5 digits as 3 rows. @param {string} sn */
function safetyEl(sn) {
  const g = sn.split(' ');
  return h('code', { class: 'safety-number' }, g.slice(0, 4).join(' '), h('br'), g.slice(4, 8).join(' '), h('br'), g.slice(8).join(' '));
}

export class SecurityDialog extends Dialog {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {string} conversationId
   */
  constructor(client, conversationId) {
    super('Security', 'dialog-security');
    this.client = client;
    this.id = conversationId;
    this.render();
  }

  async render() {
    const c = this.client;
    const v = c.conversation(this.id);
    if (!v) return;
    const status = v.encrypted
      ? h('div', { class: 'e2ee-status is-on' }, icon('lock', { size: 18 }), h('div', {}, h('strong', {}, 'End-to-end encrypted'), h('p', {}, 'Messages are encrypted on the devices below. The server stores and relays them only as ciphertext.')))
      : h('div', { class: 'e2ee-status' }, icon('unlock', { size: 18 }), h('div', {}, h('strong', {}, 'Not encrypted'), h('p', {}, 'The server can read the messages of this conversation.')));
    const parts = [status];
    if (!v.encrypted && c.canEnableEncryption(this.id)) {
      parts.push(h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'on:click': async () => (await turnOnEncryption(c, this.id)) && this.render() }, icon('lock', { size: 16 }), h('span', {}, 'Turn on encryption')));
    }
    const devices = h('div', { class: 'device-section' }, h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading devices...'));
    parts.push(devices);
    parts.push(h('h3', { class: 'section-title' }, 'Key backup'), this.backupSection());
    this.body.replaceChildren(...parts);
    try {
      const [mine, members] = await Promise.all([c.deviceFingerprint(), c.memberDevices(this.id)]);
      const me = c.user?.id;
      const direct = v.type === 'direct';
      /** @type {Node[]} */
      const rows = [];
      // This device first (it is also among "Your devices" once the server lists it).
      const listed = members.some((m) => m.devices.some((/** @type {any} */ d) => d.this_device));
      if (!listed) rows.push(h('h3', { class: 'section-title' }, 'This device'), h('div', { class: 'device-card is-this' }, h('span', { class: 'device-name' }, 'This browser'), mine ? fingerprintEl(mine) : h('span', {}, 'No device key')));
      members.sort((a, b) => (a.user_id === me ? -1 : b.user_id === me ? 1 : 0));
      for (const m of members) {
        m.devices.sort((/** @type {any} */ a, /** @type {any} */ b) => Number(b.this_device) - Number(a.this_device));
        rows.push(h('h3', { class: 'section-title' }, m.user_id === me ? 'Your devices' : `${m.display_name}'s devices`));
        if (!m.devices.length) rows.push(h('p', { class: 'muted' }, 'No devices yet: they have not opened the app since encryption arrived.'));
        for (const d of m.devices) {
          rows.push(
            h(
              'div',
              { class: `device-card${d.this_device ? ' is-this' : ''}`, 'data-device': d.id },
              h('span', { class: 'device-name' }, d.name || 'Device', d.this_device ? h('span', { class: 'role-tag' }, 'This device') : null),
              fingerprintEl(d.fingerprint),
              direct && m.user_id !== me && d.safety_number
                ? h('div', { class: 'safety' }, h('span', { class: 'safety-label' }, 'Safety number with this device'), safetyEl(d.safety_number), h('p', { class: 'muted' }, `Compare it with ${m.display_name}, in person or over a channel you trust. If it matches, you are talking to their real device.`))
                : null,
            ),
          );
        }
      }
      devices.replaceChildren(...rows);
    } catch (err) {
      devices.replaceChildren(h('p', { class: 'form-error' }, /** @type {any} */ (err)?.message || 'Could not load the devices.'));
    }
  }

  backupSection() {
    const el = h('div', { class: 'backup-section' });
    const c = this.client;
    const show = async () => {
      let exists = false;
      try {
        exists = await c.hasKeyBackup();
      } catch {
        /* shown as none */
      }
      el.replaceChildren(
        h('p', { class: 'muted' }, exists ? 'A backup of your keys is stored, encrypted with your passphrase. Replace it to include the keys this device got since.' : 'Without a backup, a new browser cannot read earlier encrypted messages. The backup is encrypted with a passphrase only you know.'),
        h('div', { class: 'inline-actions' },
          h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'on:click': () => new BackupDialog(c, { onDone: show }).show() }, exists ? 'Replace key backup' : 'Set up key backup'),
          exists ? h('button', { class: 'btn btn-ghost btn-sm', type: 'button', 'on:click': () => new RestoreDialog(c).show() }, 'Restore keys from backup') : null,
        ),
      );
    };
    show();
    return el;
  }
}

export class BackupDialog extends Dialog {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {{onDone?: () => void}} [opts]
   */
  constructor(client, { onDone } = {}) {
    super('Key backup', 'dialog-backup');
    this.client = client;
    this.onDone = onDone;
    this.proposed = proposePassphrase();
    this.own = false;
    this.render();
  }

  render() {
    this.error = h('p', { class: 'form-error', role: 'alert' });
    const parts = [h('p', { class: 'muted' }, 'Your conversation keys are encrypted with this passphrase and stored on the server. Keep it somewhere safe: without it the backup cannot be opened, by anyone.')];
    if (!this.own) {
      parts.push(
        h('div', { class: 'field' }, h('span', { class: 'label' }, 'Your passphrase'), h('code', { class: 'passphrase', 'data-testid': 'proposed-passphrase' }, this.proposed)),
        h('div', { class: 'inline-actions' },
          h('button', { class: 'btn btn-ghost btn-sm', type: 'button', 'on:click': () => { this.proposed = proposePassphrase(); this.render(); } }, 'Another one'),
          h('button', { class: 'btn btn-ghost btn-sm', type: 'button', 'on:click': () => { this.own = true; this.render(); } }, 'Use my own passphrase'),
        ),
      );
    } else {
      this.input = /** @type {HTMLInputElement} */ (h('input', { class: 'input', type: 'password', id: 'backup-pass', autocomplete: 'new-password', minlength: String(MIN_PASSPHRASE) }));
      this.again = /** @type {HTMLInputElement} */ (h('input', { class: 'input', type: 'password', id: 'backup-pass-2', autocomplete: 'new-password' }));
      parts.push(
        h('div', { class: 'field' }, h('label', { class: 'label', for: 'backup-pass' }, `Passphrase (at least ${MIN_PASSPHRASE} characters)`), this.input),
        h('div', { class: 'field' }, h('label', { class: 'label', for: 'backup-pass-2' }, 'The same again'), this.again),
        h('button', { class: 'link-btn', type: 'button', 'on:click': () => { this.own = false; this.render(); } }, 'Propose one for me'),
      );
    }
    parts.push(this.error);
    this.body.replaceChildren(...parts);
    this.saveButton = h('button', { class: 'btn btn-primary', type: 'button', 'on:click': () => this.save() }, 'Save backup');
    this.footer.replaceChildren(h('button', { class: 'btn btn-ghost', type: 'button', 'on:click': () => this.close() }, 'Cancel'), this.saveButton);
  }

  async save() {
    let pass = this.proposed;
    if (this.own) {
      pass = /** @type {HTMLInputElement} */ (this.input).value;
      if ([...pass].length < MIN_PASSPHRASE) {
        this.error.textContent = `Use at least ${MIN_PASSPHRASE} characters.`;
        return;
      }
      if (pass !== /** @type {HTMLInputElement} */ (this.again).value) {
        this.error.textContent = 'The two passphrases differ.';
        return;
      }
    }
    /** @type {HTMLButtonElement} */ (this.saveButton).disabled = true;
    this.saveButton.classList.add('is-busy');
    this.error.textContent = '';
    try {
      const n = await this.client.createKeyBackup(pass);
      toast(`Key backup saved (${n} key${n === 1 ? '' : 's'}).`);
      this.close();
      this.onDone?.();
    } catch (err) {
      this.error.textContent = backupError(err);
      /** @type {HTMLButtonElement} */ (this.saveButton).disabled = false;
      this.saveButton.classList.remove('is-busy');
    }
  }
}

export class RestoreDialog extends Dialog {
  /** @param {import('../sdk/chat-client.js').ChatClient} client @param {{onDone?: () => void}} [opts] */
  constructor(client, { onDone } = {}) {
    super('Restore keys from backup', 'dialog-backup');
    this.client = client;
    this.onDone = onDone;
    this.error = h('p', { class: 'form-error', role: 'alert' });
    this.input = /** @type {HTMLInputElement} */ (h('input', { class: 'input', type: 'password', id: 'restore-pass', autocomplete: 'current-password', 'on:keydown': (/** @type {KeyboardEvent} */ e) => e.key === 'Enter' && this.restore() }));
    this.body.append(
      h('p', { class: 'muted' }, 'Enter the passphrase of your key backup to read earlier encrypted messages on this browser.'),
      h('div', { class: 'field' }, h('label', { class: 'label', for: 'restore-pass' }, 'Backup passphrase'), this.input),
      this.error,
    );
    this.button = h('button', { class: 'btn btn-primary', type: 'button', 'on:click': () => this.restore() }, 'Restore keys');
    this.footer.append(h('button', { class: 'btn btn-ghost', type: 'button', 'on:click': () => this.close() }, 'Cancel'), this.button);
  }

  show() {
    super.show();
    this.input.focus();
  }

  async restore() {
    const pass = this.input.value;
    if (!pass) return;
    /** @type {HTMLButtonElement} */ (this.button).disabled = true;
    this.button.classList.add('is-busy');
    this.error.textContent = '';
    try {
      const { imported } = await this.client.restoreKeyBackup(pass);
      toast(imported ? `Restored ${imported} key${imported === 1 ? '' : 's'}.` : 'The backup holds no keys this browser lacked.');
      this.close();
      this.onDone?.();
    } catch (err) {
      this.error.textContent = backupError(err);
      /** @type {HTMLButtonElement} */ (this.button).disabled = false;
      this.button.classList.remove('is-busy');
    }
  }
}
