// Dialogs: start a conversation (1:1 or group), and a group's details (rename, members, leave).

import { h, icon } from './dom.js';
import { avatar, presenceLabel, toast } from './components.js';

/** Native <dialog> wrapper: focus handling, Escape, close on backdrop click, removal on close. */
export class Dialog {
  /** @param {string} title @param {string} [cls] */
  constructor(title, cls = '') {
    this.titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    this.body = h('div', { class: 'dialog-body' });
    this.footer = h('div', { class: 'dialog-footer' });
    const close = h('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Close', 'on:click': () => this.close() }, icon('close'));
    this.el = /** @type {HTMLDialogElement} */ (
      h('dialog', { class: `dialog ${cls}`, 'aria-labelledby': this.titleId }, h('header', { class: 'dialog-header' }, h('h2', { id: this.titleId }, title), close), this.body, this.footer)
    );
    this.el.addEventListener('click', (e) => {
      if (e.target === this.el) this.close();
    });
    this.el.addEventListener('close', () => this.el.remove());
  }

  show() {
    document.body.append(this.el);
    this.el.showModal();
  }

  close() {
    if (this.el.open) this.el.close();
  }
}

/**
 * Ask before doing something that cannot be undone. Resolves true when confirmed.
 * @param {{title: string, message: string, confirmLabel: string, danger?: boolean}} opts
 * @returns {Promise<boolean>}
 */
export function confirmDialog({ title, message, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    const dlg = new Dialog(title, 'dialog-confirm');
    let answer = false;
    dlg.body.append(h('p', { class: 'confirm-text' }, message));
    const cancel = h('button', { class: 'btn btn-ghost', type: 'button', 'on:click': () => dlg.close() }, 'Cancel');
    const ok = h('button', { class: `btn ${danger ? 'btn-danger-solid' : 'btn-primary'}`, type: 'button', 'on:click': () => {
      answer = true;
      dlg.close();
    } }, confirmLabel);
    dlg.footer.append(cancel, ok);
    dlg.el.addEventListener('close', () => resolve(answer));
    dlg.show();
    ok.focus();
  });
}

/**
 * A search box over users with debounced lookups.
 * @param {import('../sdk/chat-client.js').ChatClient} client
 * @param {(results: import('../sdk/session.js').User[], query: string) => void} onResults
 */
function userSearch(client, onResults, placeholder = 'Search people by name or email') {
  const input = /** @type {HTMLInputElement} */ (h('input', { class: 'input', type: 'search', placeholder, 'aria-label': placeholder, autocomplete: 'off' }));
  let timer = 0;
  let seq = 0;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) {
      onResults([], '');
      return;
    }
    timer = window.setTimeout(async () => {
      const mine = ++seq;
      try {
        const users = await client.searchUsers(q);
        if (mine === seq) onResults(users, q);
      } catch {
        if (mine === seq) onResults([], q);
      }
    }, 250);
  });
  return h('div', { class: 'search-field' }, icon('search', { size: 16, class: 'search-icon' }), input);
}

/** @param {import('../sdk/session.js').User} u @param {Node|null} [trailing] */
function userRow(u, trailing = null) {
  return [avatar(u.id, u.display_name, { size: 'sm' }), h('span', { class: 'user-main' }, h('span', { class: 'user-name' }, u.display_name), h('span', { class: 'user-email' }, u.email ?? '')), trailing];
}

export class NewConversationDialog extends Dialog {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {{onOpen: (id: string) => void}} opts
   */
  constructor(client, { onOpen }) {
    super('New conversation', 'dialog-new');
    this.client = client;
    this.onOpen = onOpen;
    /** @type {'direct'|'group'} */
    this.mode = 'direct';
    /** @type {Map<string, import('../sdk/session.js').User>} */
    this.selected = new Map();
    /** @type {import('../sdk/session.js').User[]} */
    this.results = [];
    this.query = '';

    this.tabDirect = h('button', { type: 'button', role: 'tab', class: 'tab', 'on:click': () => this.setMode('direct') }, 'Direct message');
    this.tabGroup = h('button', { type: 'button', role: 'tab', class: 'tab', 'on:click': () => this.setMode('group') }, 'New group');
    this.titleInput = /** @type {HTMLInputElement} */ (h('input', { class: 'input', id: 'group-title', maxlength: '100', placeholder: 'e.g. Weekend trip', 'on:input': () => this.renderFooter() }));
    this.titleField = h('div', { class: 'field' }, h('label', { class: 'label', for: 'group-title' }, 'Group name'), this.titleInput);
    this.chips = h('div', { class: 'chips', 'aria-label': 'Selected people' });
    this.resultsList = h('ul', { class: 'user-list', 'aria-label': 'People' });
    this.error = h('p', { class: 'form-error', role: 'alert' });
    this.search = userSearch(client, (users, q) => {
      this.results = users;
      this.query = q;
      this.renderResults();
    });
    this.createButton = h('button', { class: 'btn btn-primary', type: 'button', 'on:click': () => this.createGroup() }, 'Create group');
    this.encrypted = /** @type {HTMLInputElement} */ (h('input', { type: 'checkbox', id: 'new-encrypted', class: 'checkbox' }));
    const encryptedField = h(
      'label',
      { class: 'check-field', for: 'new-encrypted' },
      this.encrypted,
      icon('lock', { size: 16 }),
      h('span', { class: 'check-main' }, h('span', {}, 'End-to-end encrypted'), h('span', { class: 'check-hint' }, 'Only the members\' devices can read the messages. Cannot be turned off.')),
    );
    this.body.append(h('div', { class: 'tabs', role: 'tablist' }, this.tabDirect, this.tabGroup), this.titleField, encryptedField, this.search, this.chips, this.resultsList, this.error);
    this.setMode('direct');
  }

  show() {
    super.show();
    /** @type {HTMLElement} */ (this.search.querySelector('input')).focus();
  }

  /** @param {'direct'|'group'} mode */
  setMode(mode) {
    this.mode = mode;
    this.tabDirect.setAttribute('aria-selected', String(mode === 'direct'));
    this.tabGroup.setAttribute('aria-selected', String(mode === 'group'));
    this.titleField.hidden = mode !== 'group';
    this.chips.hidden = mode !== 'group';
    this.renderResults();
    this.renderFooter();
  }

  renderResults() {
    const items = this.results.map((u) => {
      const picked = this.selected.has(u.id);
      const trailing = this.mode === 'group' ? h('span', { class: `pick${picked ? ' is-picked' : ''}`, 'aria-hidden': 'true' }, picked ? icon('check', { size: 16 }) : icon('plus', { size: 16 })) : null;
      const button = h(
        'button',
        {
          type: 'button',
          class: 'user-item',
          'aria-pressed': this.mode === 'group' ? String(picked) : null,
          'on:click': () => (this.mode === 'direct' ? this.startDirect(u) : this.toggle(u)),
        },
        ...userRow(u, trailing),
      );
      return h('li', {}, button);
    });
    if (!items.length && this.query) items.push(h('li', { class: 'user-empty' }, `No one found for "${this.query}".`));
    if (!items.length && !this.query) items.push(h('li', { class: 'user-empty' }, this.mode === 'direct' ? 'Find someone to message.' : 'Find people to add to the group.'));
    this.resultsList.replaceChildren(...items);
    this.chips.replaceChildren(
      ...[...this.selected.values()].map((u) =>
        h('button', { type: 'button', class: 'chip', 'aria-label': `Remove ${u.display_name}`, 'on:click': () => this.toggle(u) }, h('span', {}, u.display_name), icon('close', { size: 14 })),
      ),
    );
  }

  renderFooter() {
    if (this.mode === 'group') {
      this.footer.replaceChildren(this.createButton);
      /** @type {HTMLButtonElement} */ (this.createButton).disabled = !this.titleInput.value.trim() || this.selected.size === 0;
    } else this.footer.replaceChildren();
  }

  /** @param {import('../sdk/session.js').User} u */
  toggle(u) {
    if (this.selected.has(u.id)) this.selected.delete(u.id);
    else this.selected.set(u.id, u);
    this.renderResults();
    this.renderFooter();
  }

  /** @param {import('../sdk/session.js').User} u */
  async startDirect(u) {
    this.error.textContent = '';
    try {
      const conv = await this.client.createDirect(u.id, { encrypted: this.encrypted.checked });
      this.close();
      this.onOpen(conv.id);
    } catch (err) {
      this.error.textContent = /** @type {any} */ (err)?.message || 'Could not start the conversation.';
    }
  }

  async createGroup() {
    this.error.textContent = '';
    const title = this.titleInput.value.trim();
    /** @type {HTMLButtonElement} */ (this.createButton).disabled = true;
    try {
      const conv = await this.client.createGroup(title, [...this.selected.keys()], { encrypted: this.encrypted.checked });
      this.close();
      this.onOpen(conv.id);
    } catch (err) {
      this.error.textContent = /** @type {any} */ (err)?.message || 'Could not create the group.';
      this.renderFooter();
    }
  }
}

export class GroupInfoDialog extends Dialog {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {string} conversationId
   * @param {{onLeft: () => void, onSecurity?: () => void, onEncrypt?: () => Promise<boolean>}} opts
   */
  constructor(client, conversationId, { onLeft, onSecurity, onEncrypt }) {
    const v = client.conversation(conversationId);
    super(v?.type === 'group' ? 'Group details' : 'Conversation details', 'dialog-info');
    this.client = client;
    this.id = conversationId;
    this.onLeft = onLeft;
    this.onSecurity = onSecurity;
    this.onEncrypt = onEncrypt;
    this.error = h('p', { class: 'form-error', role: 'alert' });
    this.members = h('ul', { class: 'user-list members', 'aria-label': 'Members' });
    this.addResults = h('ul', { class: 'user-list', 'aria-label': 'People to add' });
    this.off = client.on('conversations', () => this.render());
    this.el.addEventListener('close', () => this.off());
    this.render();
  }

  get view() {
    return this.client.conversation(this.id);
  }

  render() {
    const v = this.view;
    if (!v) {
      this.close();
      return;
    }
    const c = this.client;
    const me = c.user?.id;
    const canManage = v.type === 'group' && (v.my_role === 'owner' || v.my_role === 'admin');
    const parts = [];
    if (v.type === 'group') {
      if (!this.titleInput) {
        this.titleInput = /** @type {HTMLInputElement} */ (h('input', { class: 'input', id: `rename-${v.id}`, maxlength: '100', value: v.title ?? '' }));
        this.renameButton = h('button', { class: 'btn btn-secondary', type: 'submit' }, 'Save');
      }
      this.titleInput.disabled = !canManage;
      this.renameForm =
        this.renameForm ??
        h(
          'form',
          { class: 'rename-form', 'on:submit': (/** @type {Event} */ e) => this.rename(e) },
          h('label', { class: 'label', for: `rename-${v.id}` }, 'Group name'),
          h('div', { class: 'inline-field' }, this.titleInput, this.renameButton),
        );
      /** @type {HTMLElement} */ (this.renameButton).hidden = !canManage;
      parts.push(this.renameForm);
    }
    // Encryption: on (and the security panel), or the way to turn it on where allowed.
    parts.push(
      h('h3', { class: 'section-title' }, 'Encryption'),
      h(
        'div',
        { class: 'e2ee-row' },
        icon(v.encrypted ? 'lock' : 'unlock', { size: 18 }),
        h('span', { class: 'e2ee-row-text' }, v.encrypted ? 'Messages are end-to-end encrypted.' : 'Messages are not end-to-end encrypted.'),
        v.encrypted || !c.canEnableEncryption(v.id)
          ? null
          : h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'on:click': () => this.onEncrypt?.() }, 'Turn on encryption'),
        h('button', { class: 'btn btn-ghost btn-sm', type: 'button', 'on:click': () => this.onSecurity?.() }, 'Security'),
      ),
    );
    parts.push(h('h3', { class: 'section-title' }, `${v.participants.length} members`));
    this.members.replaceChildren(
      ...v.participants.map((p) => {
        const isMe = p.user_id === me;
        const presence = c.presence(p.user_id).status;
        const role = p.role !== 'member' ? h('span', { class: 'role-tag' }, p.role) : null;
        const remove =
          canManage && !isMe && p.role !== 'owner'
            ? h('button', { class: 'btn btn-ghost btn-sm', type: 'button', 'aria-label': `Remove ${p.display_name}`, 'on:click': () => this.remove(p.user_id) }, 'Remove')
            : null;
        return h(
          'li',
          { class: 'user-item static' },
          avatar(p.user_id, p.display_name, { size: 'sm', presence }),
          h('span', { class: 'user-main' }, h('span', { class: 'user-name' }, isMe ? `${p.display_name} (you)` : p.display_name), h('span', { class: 'user-email' }, presenceLabel(presence))),
          role,
          remove,
        );
      }),
    );
    parts.push(this.members);
    if (canManage) {
      this.addSearch =
        this.addSearch ??
        userSearch(
          c,
          (users) => {
            const members = new Set(this.view?.participants.map((p) => p.user_id));
            this.addResults.replaceChildren(
              ...users
                .filter((u) => !members.has(u.id))
                .map((u) => h('li', {}, h('button', { class: 'user-item', type: 'button', 'on:click': () => this.add(u.id) }, ...userRow(u, h('span', { class: 'pick' }, icon('plus', { size: 16 })))))),
            );
          },
          'Add people',
        );
      parts.push(h('h3', { class: 'section-title' }, 'Add people'), this.addSearch, this.addResults);
    }
    parts.push(this.error);
    this.body.replaceChildren(...parts);
    this.footer.replaceChildren(v.type === 'group' ? h('button', { class: 'btn btn-danger', type: 'button', 'on:click': () => this.leave() }, 'Leave group') : h('span'));
  }

  /** @param {Event} e */
  async rename(e) {
    e.preventDefault();
    const title = /** @type {HTMLInputElement} */ (this.titleInput).value.trim();
    if (!title) return;
    await this.act(() => this.client.rename(this.id, title), 'Group renamed.');
  }

  /** @param {string} userId */
  async add(userId) {
    await this.act(() => this.client.addMember(this.id, userId));
    const input = /** @type {HTMLInputElement|null} */ (this.addSearch?.querySelector('input') ?? null);
    if (input) input.value = '';
    this.addResults.replaceChildren();
  }

  /** @param {string} userId */
  remove(userId) {
    return this.act(() => this.client.removeMember(this.id, userId));
  }

  async leave() {
    if (!window.confirm('Leave this group? You will stop receiving its messages.')) return;
    await this.act(async () => {
      await this.client.leave(this.id);
      this.close();
      this.onLeft();
    });
  }

  /** @param {() => Promise<any>} fn @param {string} [done] */
  async act(fn, done) {
    this.error.textContent = '';
    try {
      await fn();
      if (done) toast(done);
    } catch (err) {
      this.error.textContent = /** @type {any} */ (err)?.message || 'That did not work. Please try again.';
    }
  }
}
