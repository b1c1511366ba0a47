// The signed-in app: the conversation list (sidebar) and the open conversation, side by side on
// a wide screen, one at a time on a phone. The open conversation lives in the URL hash
// (#/c/<id>), so a reload or the back button does what one expects.

import { h, icon, reconcile } from './dom.js';
import { avatar, connectionBanner, presenceLabel, toast } from './components.js';
import { relativeTime } from './format.js';
import { ChatView } from './chat-view.js';
import { GroupInfoDialog, NewConversationDialog } from './dialogs.js';
import { SecurityDialog, turnOnEncryption } from './security.js';
import { filesPreview } from './attachments-view.js';

export class ChatApp {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {{onSignedOut: () => void}} opts
   */
  constructor(client, { onSignedOut }) {
    this.client = client;
    this.onSignedOut = onSignedOut;
    /** @type {Array<() => void>} */
    this.cleanups = [];
    /** @type {ChatView|null} */
    this.view = null;
    this.filter = '';
    this.listLoaded = false;

    const me = client.user;
    this.meAvatar = h('span', { class: 'me-avatar' });
    this.meName = h('span', { class: 'me-name' }, me?.display_name ?? '');
    this.newButton = h('button', { class: 'btn btn-primary btn-sm', type: 'button', 'aria-label': 'New chat', title: 'New chat', 'on:click': () => this.openNewConversation() }, icon('plus', { size: 18 }), h('span', {}, 'New chat'));
    this.logoutButton = h('button', { class: 'icon-btn', type: 'button', title: 'Sign out', 'aria-label': 'Sign out', 'on:click': () => this.signOut() }, icon('logout'));

    this.search = /** @type {HTMLInputElement} */ (
      h('input', { class: 'input input-search', type: 'search', placeholder: 'Search conversations', 'aria-label': 'Search conversations', 'on:input': () => {
        this.filter = this.search.value.trim().toLowerCase();
        this.renderList();
      } })
    );
    this.list = h('ul', { class: 'conv-list', 'aria-label': 'Conversations', 'on:keydown': (/** @type {KeyboardEvent} */ e) => this.onListKey(e) });
    this.listEmpty = h('div', { class: 'list-empty', hidden: true });
    const sidebarBanner = connectionBanner(client, 'banner-sidebar');
    this.cleanups.push(sidebarBanner.destroy);

    this.sidebar = h(
      'aside',
      { class: 'sidebar', 'aria-label': 'Conversations' },
      h('header', { class: 'sidebar-header' }, h('div', { class: 'me' }, this.meAvatar, this.meName), h('div', { class: 'sidebar-actions' }, this.newButton, this.logoutButton)),
      sidebarBanner.el,
      h('div', { class: 'sidebar-search' }, icon('search', { size: 16, class: 'search-icon' }), this.search),
      this.list,
      this.listEmpty,
    );
    this.pane = h('main', { class: 'chat-pane' });
    this.el = h('div', { class: 'app', 'data-view': 'list' }, this.sidebar, this.pane);
    this.renderMe();
  }

  start() {
    const c = this.client;
    const schedule = () => this.scheduleRender();
    this.cleanups.push(
      c.on('conversations', schedule),
      c.on('presence', schedule),
      c.on('state', schedule),
      c.on('typing', schedule),
      c.on('unread', () => this.renderTitle()),
      c.on('removed', ({ conversationId }) => {
        if (this.view?.conversationId === conversationId) {
          toast('You are no longer a member of that conversation.');
          this.navigate(null);
        }
      }),
    );
    const onHash = () => this.route();
    window.addEventListener('hashchange', onHash);
    this.cleanups.push(() => window.removeEventListener('hashchange', onHash));
    // Relative times ("5m") age: refresh them now and then.
    const tick = setInterval(() => this.renderList(), 30_000);
    this.cleanups.push(() => clearInterval(tick));

    // start() first: it knows the user synchronously, which the chat view needs.
    const started = c.start();
    this.route();
    started
      .then(() => {
        this.listLoaded = true;
        this.renderMe();
        this.renderList();
        this.route();
      })
      .catch((err) => {
        this.listLoaded = true;
        this.renderList();
        if (!err?.sessionExpired) toast('Could not load your conversations. Retrying in the background.', 'error');
      });
  }

  destroy() {
    for (const fn of this.cleanups.splice(0)) fn();
    this.view?.destroy();
    this.view = null;
    this.emptyBanner?.destroy();
    document.title = 'Chat';
    this.client.stop();
  }

  async signOut() {
    this.logoutButton.disabled = true;
    this.destroy();
    await this.client.logout();
    history.replaceState(null, '', location.pathname + location.search);
    this.onSignedOut();
  }

  /** @param {string|null} id */
  navigate(id) {
    const hash = id ? `#/c/${encodeURIComponent(id)}` : '';
    if (location.hash !== hash) {
      if (id) location.hash = hash;
      else history.pushState(null, '', location.pathname + location.search);
    }
    this.route();
  }

  route() {
    const m = location.hash.match(/^#\/c\/(.+)$/);
    const id = m ? decodeURIComponent(m[1]) : null;
    if (id && this.listLoaded && !this.client.conversation(id)) {
      // Not (or no longer) ours.
      history.replaceState(null, '', location.pathname + location.search);
      this.showConversation(null);
      return;
    }
    this.showConversation(id);
  }

  /** @param {string|null} id */
  showConversation(id) {
    if (this.view && this.view.conversationId === id) return;
    if (!this.view && !id && this.pane.firstChild) return;
    this.emptyBanner?.destroy();
    this.emptyBanner = null;
    this.view?.destroy();
    this.view = null;
    if (id) {
      this.view = new ChatView(this.client, id, {
        onBack: () => this.navigate(null),
        onInfo: () => this.openGroupInfo(id),
        onSecurity: () => this.openSecurity(id),
      });
      this.pane.replaceChildren(this.view.el);
      this.view.mount();
      this.el.dataset.view = 'chat';
    } else {
      this.client.closeConversation();
      this.pane.replaceChildren(this.emptyState());
      this.el.dataset.view = 'list';
    }
    this.renderList();
  }

  emptyState() {
    const banner = connectionBanner(this.client);
    this.emptyBanner = banner;
    return h(
      'section',
      { class: 'empty-chat' },
      banner.el,
      h(
        'div',
        { class: 'empty-chat-inner' },
        h('div', { class: 'empty-illustration', 'aria-hidden': 'true' }, icon('chat', { size: 40 })),
        h('h2', {}, 'Your messages'),
        h('p', {}, 'Pick a conversation on the left, or start a new one.'),
        h('button', { class: 'btn btn-primary', type: 'button', 'on:click': () => this.openNewConversation() }, icon('plus', { size: 18 }), h('span', {}, 'New chat')),
      ),
    );
  }

  renderMe() {
    const me = this.client.user;
    if (!me) return;
    this.meAvatar.replaceChildren(avatar(me.id, me.display_name, { size: 'sm' }));
    this.meName.textContent = me.display_name;
  }

  renderTitle() {
    const total = this.client.unreadTotal();
    document.title = total > 0 ? `(${total}) Chat` : 'Chat';
  }

  scheduleRender() {
    if (this._raf) return;
    this._raf = requestAnimationFrame(() => {
      this._raf = 0;
      this.renderList();
      this.renderTitle();
    });
  }

  renderList() {
    const c = this.client;
    const activeId = this.view?.conversationId ?? null;
    const all = c.conversations();
    const items = this.filter ? all.filter((v) => v.name.toLowerCase().includes(this.filter)) : all;
    reconcile(
      this.list,
      items,
      (v) => v.id,
      (v) => {
        const button = h('button', { type: 'button', class: 'conv-item', 'on:click': () => this.navigate(v.id) });
        return h('li', { class: 'conv-li' }, button);
      },
      (li, v) => this.updateItem(/** @type {HTMLElement} */ (li.firstElementChild), v, v.id === activeId),
    );
    this.listEmpty.hidden = items.length > 0 || !this.listLoaded;
    this.listEmpty.replaceChildren(
      ...(all.length === 0
        ? [h('p', { class: 'list-empty-title' }, 'No conversations yet'), h('p', {}, 'Start one with '), h('button', { class: 'link-btn', type: 'button', 'on:click': () => this.openNewConversation() }, 'New chat')]
        : [h('p', {}, `Nothing matches "${this.search.value.trim()}".`)]),
    );
    this.renderTitle();
  }

  /**
   * @param {HTMLElement} button
   * @param {import('../sdk/chat-client.js').ConversationView} v
   * @param {boolean} active
   */
  updateItem(button, v, active) {
    const c = this.client;
    const me = c.user;
    const other = v.type === 'direct' ? v.others[0] : null;
    const presence = other ? c.presence(other.user_id).status : null;
    const typing = c.typingUsers(v.id).filter((u) => u !== me?.id);
    const last = /** @type {any} */ (v.last_message);
    let preview = '';
    let previewClass = 'conv-preview';
    if (typing.length) {
      preview = v.type === 'group' ? `${c.displayName(typing[0])} is typing...` : 'typing...';
      previewClass += ' is-typing';
    } else if (last) {
      const mine = last.sender_id === me?.id;
      const who = mine ? 'You: ' : v.type === 'group' ? `${c.displayName(last.sender_id).split(' ')[0]}: ` : '';
      const opaque = last.content_type === 'encrypted' && !last.deleted_at && last.e2ee?.state !== 'ok';
      const written = String(last.content ?? '').replace(/\s+/g, ' ').trim();
      const text = opaque ? (last.e2ee?.state === 'failed' ? 'Message could not be decrypted' : 'Encrypted message') : written || filesPreview(last);
      preview = last.deleted_at ? 'Message deleted' : who + text;
      if (opaque) previewClass += ' is-opaque';
      if (last.status === 'failed' && last.local) {
        preview = `Not sent: ${String(last.content ?? '').replace(/\s+/g, ' ')}`;
        previewClass += ' is-failed';
      }
    } else preview = v.type === 'group' ? `${v.participants.length} members` : 'Say hello';
    const sig = JSON.stringify([v.name, presence, preview, previewClass, v.unread_count, relativeTime(v.last_activity_at), active, v.type, v.encrypted]);
    if (button.dataset.sig === sig) return;
    button.dataset.sig = sig;
    button.classList.toggle('is-active', active);
    button.classList.toggle('has-unread', v.unread_count > 0);
    if (active) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
    const label = [v.name, v.encrypted ? 'end-to-end encrypted' : null, presence ? presenceLabel(presence) : null, v.unread_count ? `${v.unread_count} unread` : null, preview].filter(Boolean).join(', ');
    button.setAttribute('aria-label', label);
    button.replaceChildren(
      avatar(v.type === 'group' ? v.id : (other?.user_id ?? v.id), v.name, { presence, group: v.type === 'group' }),
      h(
        'span',
        { class: 'conv-main' },
        h('span', { class: 'conv-top' }, h('span', { class: 'conv-name' }, v.encrypted ? icon('lock', { size: 13, class: 'conv-lock', label: 'End-to-end encrypted' }) : null, h('span', { class: 'conv-name-text' }, v.name)), h('time', { class: 'conv-time', datetime: v.last_activity_at ?? '' }, relativeTime(v.last_activity_at))),
        h('span', { class: 'conv-bottom' }, h('span', { class: previewClass }, preview), v.unread_count > 0 ? h('span', { class: 'badge' }, v.unread_count > 99 ? '99+' : String(v.unread_count)) : null),
      ),
    );
  }

  /** Arrow keys move between conversations. @param {KeyboardEvent} e */
  onListKey(e) {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const buttons = [...this.list.querySelectorAll('button.conv-item')];
    const i = buttons.indexOf(/** @type {any} */ (document.activeElement));
    if (i < 0) return;
    e.preventDefault();
    const next = buttons[Math.max(0, Math.min(buttons.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)))];
    /** @type {HTMLElement} */ (next).focus();
  }

  openNewConversation() {
    const dialog = new NewConversationDialog(this.client, { onOpen: (id) => this.navigate(id) });
    dialog.show();
  }

  /** @param {string} id */
  openGroupInfo(id) {
    const dialog = new GroupInfoDialog(this.client, id, {
      onLeft: () => this.navigate(null),
      onSecurity: () => {
        dialog.close();
        this.openSecurity(id);
      },
      onEncrypt: () => turnOnEncryption(this.client, id),
    });
    dialog.show();
  }

  /** The security panel of a conversation. @param {string} id */
  openSecurity(id) {
    new SecurityDialog(this.client, id).show();
  }
}

