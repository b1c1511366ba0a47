// One open conversation: header with presence, the message history (infinite scroll upward),
// status ticks, the typing line, and the composer.

import { h, icon, reconcile } from './dom.js';
import { avatar, connectionBanner, toast } from './components.js';
import { clockTime, dayKey, dayLabel, presenceText } from './format.js';
import { confirmDialog } from './dialogs.js';
import { RestoreDialog } from './security.js';
import { describeTyping } from '../sdk/typing.js';
import { QUICK_REACTIONS } from '../sdk/chat-client.js';
import { ComposerTray, attachmentsSig, filesPreview, renderAttachments } from './attachments-view.js';
import { MAX_ATTACHMENTS } from '../sdk/attachments.js';

/** Within this distance of the bottom the view follows new messages (AC-14). */
const NEAR_BOTTOM_PX = 120;
/** Start loading older history this close to the top. */
const NEAR_TOP_PX = 200;
/** Consecutive messages of one sender within this time are grouped. */
const GROUP_MS = 5 * 60_000;
const MAX_LENGTH = 4000;
/** At most this many of the newest messages are in the page while following the bottom... */
const WINDOW = 300;
/** ...and scrolling up puts this many more back (then pages older history from the server). */
const REVEAL = 200;
/** A touch held this long opens a message's menu. */
const LONG_PRESS_MS = 500;
/** The reaction picker, after the quick six. */
const PICKER = ['😀', '😁', '😅', '🤣', '😊', '😍', '😘', '😎', '🤔', '🙄', '😴', '😭', '😡', '🤯', '🥳', '👏', '🙌', '💪', '👀', '🔥', '✨', '🎉', '💯', '✅'];
const PICKER_COLUMNS = 6;

export class ChatView {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {string} conversationId
   * @param {{onBack: () => void, onInfo: () => void, onSecurity?: () => void}} opts
   */
  constructor(client, conversationId, { onBack, onInfo, onSecurity }) {
    this.client = client;
    this.conversationId = conversationId;
    /** @type {Array<() => void>} */
    this.cleanups = [];
    this.loadingOlder = false;
    this.newCount = 0;
    this.lastKey = '';
    this.firstKey = '';
    /** Follow new messages: the reader is at the bottom (set by their scrolling, not by ours). */
    this.stick = true;
    /** A smooth scroll of ours is under way: the positions it passes through are not the reader's. */
    this.autoScrolling = false;
    /** Key of the oldest message in the page (a long history is not all in the page). */
    this.windowKey = '';
    /** Older messages to put back in the page on the next render. */
    this.reveal = 0;

    this.headerAvatar = h('span', { class: 'chat-avatar' });
    this.title = h('h2', { class: 'chat-title', id: `chat-title-${conversationId}` });
    this.subtitle = h('p', { class: 'chat-subtitle' });
    this.infoButton = h('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Conversation details', title: 'Details', 'on:click': onInfo }, icon('info'));
    this.lock = h('button', { class: 'e2ee-badge', type: 'button', hidden: true, title: 'End-to-end encrypted: security details', 'aria-label': 'End-to-end encrypted. Security details', 'on:click': () => onSecurity?.() }, icon('lock', { size: 14 }), h('span', {}, 'Encrypted'));
    /** Messages wait for keys and a backup exists: offer the restore. */
    this.keyBanner = h('div', { class: 'key-banner', hidden: true, role: 'status' });
    /** Does the server hold a key backup of ours (asked once per view). @type {Promise<boolean>|null} */
    this.backupKnown = null;
    const back = h('button', { class: 'icon-btn back-btn', type: 'button', 'aria-label': 'Back to conversations', 'on:click': onBack }, icon('back'));
    this.banner = connectionBanner(client);
    this.cleanups.push(this.banner.destroy);

    this.historyStatus = h('div', { class: 'history-status' });
    this.messages = h('div', { class: 'messages-inner' });
    this.scroller = h(
      'div',
      { class: 'messages', role: 'log', 'aria-label': 'Messages', 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: '0', 'on:scroll': () => this.onScroll(), 'on:scrollend': () => this.onScrollEnd() },
      this.historyStatus,
      this.messages,
    );
    this.newButton = h('button', { class: 'new-messages-btn', type: 'button', hidden: true, 'on:click': () => this.scrollToBottom(true) }, icon('down', { size: 16 }), h('span', {}, 'New messages'));
    this.typingText = h('span', { class: 'typing-text' });
    this.typingLine = h('div', { class: 'typing-line', 'aria-live': 'polite', 'aria-atomic': 'true' }, h('span', { class: 'typing-dots', 'aria-hidden': 'true' }, h('span'), h('span'), h('span')), this.typingText);

    this.input = /** @type {HTMLTextAreaElement} */ (
      h('textarea', {
        class: 'composer-input',
        id: `composer-${conversationId}`,
        rows: '1',
        placeholder: 'Write a message...',
        maxlength: String(MAX_LENGTH + 500),
        autocomplete: 'off',
        'on:keydown': (/** @type {KeyboardEvent} */ e) => this.onKeyDown(e),
        'on:input': () => this.onInput(),
      })
    );
    this.counter = h('span', { class: 'composer-counter', 'aria-live': 'polite' });
    /** Replying to or editing a message: `{kind, id, draft}`. @type {{kind: 'reply'|'edit', id: string, draft: string}|null} */
    this.mode = null;
    this.contextIcon = h('span', { class: 'ctx-icon' });
    this.contextTitle = h('span', { class: 'ctx-title' });
    this.contextText = h('span', { class: 'ctx-text' });
    this.contextCancel = h('button', { class: 'icon-btn ctx-cancel', type: 'button', 'on:click': () => this.cancelMode() }, icon('close', { size: 18 }));
    this.contextBar = h('div', { class: 'composer-context', hidden: true }, this.contextIcon, h('div', { class: 'ctx-main' }, this.contextTitle, this.contextText), this.contextCancel);
    /** The open message menu. @type {{el: HTMLElement, messageId: string, trigger: HTMLElement|null, row: HTMLElement|null}|null} */
    this.menu = null;
    this.onDocPointer = (/** @type {Event} */ e) => {
      if (this.menu && !this.menu.el.contains(/** @type {Node} */ (e.target))) this.closeMenu(false);
    };
    // A menu opened by a long press has no focus inside it: Escape still closes it.
    this.onDocKey = (/** @type {KeyboardEvent} */ e) => {
      if (e.key === 'Escape' && this.menu && !this.menu.el.contains(/** @type {Node} */ (document.activeElement))) {
        e.preventDefault();
        this.closeMenu(true);
      }
    };
    this.onResize = () => this.closeMenu(false);
    this.sendButton = h('button', { class: 'send-btn', type: 'submit', 'aria-label': 'Send message', title: 'Send (Enter)', disabled: true }, icon('send'));
    // Attachments: the paperclip's file picker, a drop onto the conversation, a pasted image.
    this.tray = new ComposerTray(client, conversationId, () => {
      this.updateSend();
      // The tray took (or gave back) room: a reader at the bottom stays there.
      if (this.stick) requestAnimationFrame(() => !this.destroyed && this.stick && this.scrollToBottom(false));
    });
    this.fileInput = /** @type {HTMLInputElement} */ (
      h('input', {
        class: 'visually-hidden file-input',
        type: 'file',
        multiple: true,
        tabindex: '-1',
        'aria-hidden': 'true',
        'on:change': () => {
          const files = [...(this.fileInput.files ?? [])];
          this.fileInput.value = '';
          if (files.length) this.attach(files);
        },
      })
    );
    this.attachButton = h('button', { class: 'icon-btn attach-btn', type: 'button', 'aria-label': 'Attach files', title: 'Attach files', 'on:click': () => this.fileInput.click() }, icon('clip', { size: 22 }));
    this.input.addEventListener('paste', (e) => this.onPaste(/** @type {ClipboardEvent} */ (e)));
    this.composer = h(
      'form',
      { class: 'composer', 'on:submit': (/** @type {Event} */ e) => this.onSubmit(e) },
      h('label', { class: 'visually-hidden', for: `composer-${conversationId}` }, 'Message'),
      this.fileInput,
      // After the text in the tab order: Shift+Tab from the text still reaches the messages.
      h('div', { class: 'composer-box' }, this.input, this.attachButton, this.counter),
      this.sendButton,
    );
    this.dropZone = h('div', { class: 'drop-overlay', hidden: true, 'aria-hidden': 'true' }, h('div', { class: 'drop-card' }, icon('upload', { size: 28 }), h('span', {}, 'Drop files to attach them')));
    this.dragDepth = 0;

    this.el = h(
      'section',
      { class: 'chat', 'aria-labelledby': `chat-title-${conversationId}` },
      h('header', { class: 'chat-header' }, back, this.headerAvatar, h('div', { class: 'chat-heading' }, h('div', { class: 'chat-title-row' }, this.title, this.lock), this.subtitle), this.infoButton),
      this.banner.el,
      this.keyBanner,
      h('div', { class: 'messages-wrap' }, this.scroller, this.newButton),
      this.typingLine,
      this.contextBar,
      this.tray.el,
      this.composer,
      this.dropZone,
    );
    const hasFiles = (/** @type {DragEvent} */ e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
    this.el.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      this.dragDepth++;
      this.dropZone.hidden = false;
    });
    this.el.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    });
    this.el.addEventListener('dragleave', (e) => {
      if (!hasFiles(e)) return;
      this.dragDepth = Math.max(0, this.dragDepth - 1);
      if (!this.dragDepth) this.dropZone.hidden = true;
    });
    this.el.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      this.dragDepth = 0;
      this.dropZone.hidden = true;
      const files = [...(e.dataTransfer?.files ?? [])];
      if (files.length) this.attach(files);
    });
  }

  /** Files to send with the next message: uploaded now, shown in the tray. @param {File[]} files */
  attach(files) {
    this.tray.add(files);
    this.input.focus({ preventScroll: true });
  }

  /** A pasted image (or file) is attached; pasted text stays text. @param {ClipboardEvent} e */
  onPaste(e) {
    const files = [...(e.clipboardData?.files ?? [])];
    if (!files.length) return;
    // Text copied with a picture (a web page) is pasted as text too.
    if (!e.clipboardData?.getData('text/plain')) e.preventDefault();
    // Screenshots come as "image.png": a name that says when.
    const named = files.map((f) => (f.name && f.name !== 'image.png' ? f : new File([f], `pasted-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.${(f.type.split('/')[1] || 'png').replace('jpeg', 'jpg')}`, { type: f.type })));
    this.attach(named);
  }

  /** Send when there is text, or at least one confirmed file (not while editing). */
  updateSend() {
    const value = this.input.value;
    const over = value.length > MAX_LENGTH;
    const files = this.mode?.kind !== 'edit' && this.tray.ready.length > 0;
    this.sendButton.disabled = over || (!value.trim() && !files);
  }

  mount() {
    const c = this.client;
    const id = this.conversationId;
    this.cleanups.push(
      c.on('messages', ({ conversationId }) => conversationId === id && this.scheduleRender()),
      c.on('typing', ({ conversationId }) => conversationId === id && this.renderTyping()),
      c.on('presence', () => this.renderHeader()),
      c.on('conversations', () => this.renderHeader()),
      // Presence is only known while connected.
      c.on('state', () => this.renderHeader()),
    );
    const tick = setInterval(() => this.renderHeader(), 30_000);
    this.cleanups.push(() => clearInterval(tick));
    this.renderHeader();
    this.renderTyping();
    const held = c.isLoaded(id);
    if (!held) this.historyStatus.replaceChildren(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading messages...'));
    this.render();
    this.scrollToBottom(false);
    c.openConversation(id)
      .then(() => {
        if (this.destroyed) return;
        this.render();
        this.scrollToBottom(false);
        this.fillViewport();
      })
      .catch(() => {
        if (this.destroyed) return;
        this.historyStatus.replaceChildren(
          h('div', { class: 'history-error' }, 'Could not load messages. ', h('button', { class: 'link-btn', type: 'button', 'on:click': () => this.retryOpen() }, 'Try again')),
        );
      });
    if (window.matchMedia('(min-width: 760px)').matches) this.input.focus({ preventScroll: true });
  }

  retryOpen() {
    this.historyStatus.replaceChildren(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading messages...'));
    this.client.openConversation(this.conversationId).then(
      () => {
        this.render();
        this.scrollToBottom(false);
      },
      () => this.historyStatus.replaceChildren(h('div', { class: 'history-error' }, 'Still cannot load messages.')),
    );
  }

  destroy() {
    this.destroyed = true;
    this.closeMenu(false);
    this.client.stopTyping(this.conversationId);
    this.tray.destroy();
    for (const fn of this.cleanups.splice(0)) fn();
    if (this._raf) cancelAnimationFrame(this._raf);
  }

  scheduleRender() {
    if (this._raf) return;
    this._raf = requestAnimationFrame(() => {
      this._raf = 0;
      if (!this.destroyed) this.render();
    });
  }

  // ---------------------------------------------------------------- header

  renderHeader() {
    const c = this.client;
    const v = c.conversation(this.conversationId);
    if (!v) return;
    const other = v.type === 'direct' ? v.others[0] : null;
    const presence = other ? c.presence(other.user_id) : null;
    this.title.textContent = v.name;
    this.lock.hidden = !v.encrypted;
    const placeholder = v.encrypted ? 'Write an encrypted message...' : 'Write a message...';
    if (this.input.placeholder !== placeholder) this.input.placeholder = placeholder;
    this.headerAvatar.replaceChildren(avatar(v.type === 'group' ? v.id : (other?.user_id ?? v.id), v.name, { presence: presence?.status ?? null, group: v.type === 'group' }));
    if (other && presence) {
      this.subtitle.textContent = presenceText(presence);
      this.subtitle.dataset.status = presence.status;
    } else {
      const online = v.others.filter((p) => c.presence(p.user_id).status === 'online').length;
      this.subtitle.textContent = `${v.participants.length} members${online ? `, ${online} online` : ''}`;
      this.subtitle.dataset.status = '';
    }
    this.infoButton.hidden = false;
  }

  renderTyping() {
    const c = this.client;
    const names = c.typingUsers(this.conversationId).map((u) => c.displayName(u));
    const text = describeTyping(names);
    this.typingText.textContent = text;
    this.typingLine.classList.toggle('is-active', !!text);
  }

  // -------------------------------------------------------------- messages

  /** Messages wait for keys: say so, and offer the key backup when there is one. */
  renderKeyBanner() {
    const c = this.client;
    const waiting = c.waitingForKeys(this.conversationId);
    if (!waiting) {
      this.keyBanner.hidden = true;
      return;
    }
    this.backupKnown ??= c.hasKeyBackup().catch(() => false);
    this.backupKnown.then((exists) => {
      if (this.destroyed) return;
      const n = c.waitingForKeys(this.conversationId);
      this.keyBanner.hidden = n === 0;
      if (!n) return;
      const sig = `${n}:${exists}`;
      if (this.keyBanner.dataset.sig === sig) return;
      this.keyBanner.dataset.sig = sig;
      const parts = [
        icon('lock', { size: 16 }),
        h('span', { class: 'key-banner-text' }, `${n === 1 ? 'A message waits' : `${n} messages wait`} for a key this browser does not have yet. It was asked for from the members' devices.`),
      ];
      if (exists) parts.push(h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'on:click': () => new RestoreDialog(c, { onDone: () => this.scheduleRender() }).show() }, 'Restore keys from backup'));
      this.keyBanner.replaceChildren(...parts);
    });
  }

  render() {
    const c = this.client;
    const id = this.conversationId;
    const view = c.conversation(id);
    this.renderKeyBanner();
    const me = c.user?.id;
    const all = c.messages(id);
    const scroller = this.scroller;
    const wasNearBottom = this.stick;
    const prevHeight = scroller.scrollHeight;
    const prevTop = scroller.scrollTop;

    // Build rows: day separators, then messages grouped by sender.
    /** @type {any[]} */
    const rows = [];
    let prev = null;
    let prevDay = '';
    const isGroup = view?.type === 'group';
    let lastMineAcked = null;
    // Only a window of a long history is in the page: the newest WINDOW while following the
    // bottom, from the oldest one shown (plus what scrolling up revealed) while reading back.
    let start = Math.max(0, all.length - WINDOW);
    if (!this.stick && this.windowKey) {
      const at = all.findIndex((m) => m.key === this.windowKey);
      if (at >= 0) start = Math.min(start, at);
    }
    start = Math.max(0, start - this.reveal);
    this.reveal = 0;
    this.windowKey = all[start]?.key ?? '';
    this.hiddenAbove = start;
    const list = start ? all.slice(start) : all;
    for (const m of list) {
      const day = dayKey(m.created_at);
      if (day !== prevDay) {
        rows.push({ kind: 'day', key: `d:${day}`, label: dayLabel(m.created_at) });
        prevDay = day;
        prev = null;
      }
      const grouped = !!prev && prev.sender_id === m.sender_id && Date.parse(m.created_at) - Date.parse(prev.created_at) < GROUP_MS;
      const row = { kind: 'msg', key: m.key, m, mine: m.sender_id === me, grouped, tail: true };
      if (grouped) rows[rows.length - 1].tail = false;
      rows.push(row);
      if (row.mine && !m.local) lastMineAcked = m.key;
      prev = m;
    }

    reconcile(
      this.messages,
      rows,
      (r) => r.key,
      (r) => (r.kind === 'day' ? h('div', { class: 'day-sep', role: 'separator' }, h('span', {}, r.label)) : this.createRow()),
      (el, r) => {
        if (r.kind === 'day') return;
        this.updateRow(el, r, isGroup, r.key === lastMineAcked);
      },
    );

    // History status at the top.
    if (c.isLoaded(id)) {
      if (this.hiddenAbove > 0) this.historyStatus.replaceChildren();
      else if (this.loadingOlder) this.historyStatus.replaceChildren(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading earlier messages...'));
      else if (!c.hasOlder(id))
        this.historyStatus.replaceChildren(
          list.length
            ? h('div', { class: 'history-start' }, 'This is the beginning of your conversation.')
            : h('div', { class: 'history-empty' }, h('p', { class: 'history-empty-title' }, 'No messages yet'), h('p', {}, `Say hello to ${view?.name ?? 'them'}.`)),
        );
      else this.historyStatus.replaceChildren();
    }

    // Scrolling: keep the reading position when history is prepended, follow new messages only
    // when the reader is near the bottom (or it is their own), otherwise offer a button.
    const msgRows = rows.filter((r) => r.kind === 'msg');
    const firstKey = msgRows[0]?.key ?? '';
    const lastKey = msgRows[msgRows.length - 1]?.key ?? '';
    const prepended = this.firstKey && firstKey !== this.firstKey && lastKey === this.lastKey;
    const appended = lastKey && lastKey !== this.lastKey;
    if (prepended) {
      scroller.scrollTop = prevTop + (scroller.scrollHeight - prevHeight);
    } else if (appended && this.lastKey) {
      const newest = msgRows[msgRows.length - 1];
      if (wasNearBottom || newest.mine) this.scrollToBottom(true);
      else {
        const idx = msgRows.findIndex((r) => r.key === this.lastKey);
        this.newCount += idx >= 0 ? msgRows.length - 1 - idx : 1;
        this.showNewButton();
      }
    } else if (wasNearBottom && (!this.firstKey || scroller.scrollHeight !== prevHeight)) {
      // At the bottom and a row grew (a failed send's retry line, a read line): stay there.
      this.scrollToBottom(false);
    }
    this.firstKey = firstKey;
    this.lastKey = lastKey;
  }

  /** A message row: its menu opens on a long press (touch); a right click keeps the browser's menu. */
  createRow() {
    const el = h('div', { class: 'msg-row' });
    /** @type {any} */
    let press = null;
    let touch = false;
    const cancelPress = () => {
      if (press) clearTimeout(press.timer);
      press = null;
    };
    el.addEventListener('pointerdown', (e) => {
      touch = e.pointerType === 'touch';
      if (e.pointerType !== 'touch' || !(/** @type {Element} */ (e.target).closest('.bubble'))) return;
      cancelPress();
      press = {
        x: e.clientX,
        y: e.clientY,
        timer: setTimeout(() => {
          press = null;
          const m = /** @type {any} */ (el).msg;
          if (m && this.actionable(m)) this.openMenu(m, el, /** @type {HTMLElement|null} */ (el.querySelector('.msg-actions-btn')), { focusFirst: false });
        }, LONG_PRESS_MS),
      };
    });
    el.addEventListener('pointermove', (e) => {
      if (press && Math.hypot(e.clientX - press.x, e.clientY - press.y) > 10) cancelPress();
    });
    el.addEventListener('pointerup', cancelPress);
    el.addEventListener('pointercancel', cancelPress);
    el.addEventListener('contextmenu', (e) => {
      // A long press on touch screens (Android says so with a context menu): ours instead.
      const m = /** @type {any} */ (el).msg;
      if (!touch || !m || !this.actionable(m) || !(/** @type {Element} */ (e.target).closest('.bubble'))) return;
      e.preventDefault();
      if (this.menu?.messageId === m.id) return;
      this.openMenu(m, el, /** @type {HTMLElement|null} */ (el.querySelector('.msg-actions-btn')), { focusFirst: false });
    });
    return el;
  }

  /** A message the menu is for: sent and not deleted. @param {any} m */
  actionable(m) {
    return !!m.id && !m.local && !m.deleted_at;
  }

  /**
   * @param {HTMLElement} el
   * @param {any} r
   * @param {boolean} isGroup
   * @param {boolean} isLastMine
   */
  updateRow(el, r, isGroup, isLastMine) {
    const c = this.client;
    const m = r.m;
    /** @type {any} */ (el).msg = m;
    el.dataset.id = m.id || '';
    const receipt = r.mine ? c.receipt(m) : null;
    const showSender = isGroup && !r.mine && !r.grouped;
    const senderName = !r.mine ? c.displayName(m.sender_id) : '';
    const readLine = isGroup && r.mine && isLastMine && receipt && receipt.of > 0 && receipt.readBy > 0 ? `Read by ${receipt.readBy} of ${receipt.of}` : '';
    const quote = m.reply_to ? this.quoteOf(m) : null;
    const reactions = m.deleted_at ? [] : (m.reactions ?? []).map((/** @type {any} */ x) => [x.emoji, x.count, !!x.me, this.reactorsText(x)]);
    const e2ee = m.content_type === 'encrypted' && !m.deleted_at ? (m.e2ee?.state ?? 'pending') : null;
    const files = attachmentsSig(m);
    const sig = JSON.stringify([e2ee, m.content, m.deleted_at, m.edited_at, receipt?.status, receipt?.readBy, receipt?.of, r.grouped, r.tail, showSender, senderName, readLine, m.created_at, m.local, quote, reactions, files]);
    if (el.dataset.sig === sig) return;
    el.dataset.sig = sig;
    const open = this.menu?.messageId === m.id && !!m.id;
    el.className = `msg-row${r.mine ? ' is-mine' : ''}${r.grouped ? ' is-grouped' : ''}${r.tail ? ' is-tail' : ''}${receipt?.status === 'failed' ? ' is-failed' : ''}${m.deleted_at ? ' is-deleted' : ''}${open ? ' is-menu-open' : ''}`;
    el.dataset.status = receipt?.status ?? '';

    // Content is text, always (edited content and quotes too).
    // An encrypted message not decrypted is a state, never text: waiting for its key, or failed.
    let text;
    if (m.deleted_at) text = h('p', { class: 'msg-text is-deleted' }, 'This message was deleted');
    else if (e2ee === 'waiting' || e2ee === 'pending')
      text = h('p', { class: 'msg-text is-e2ee is-waiting', 'data-e2ee': e2ee }, icon('lock', { size: 14 }), h('span', {}, e2ee === 'waiting' ? "Waiting for this message's key" : 'Decrypting...'));
    else if (e2ee === 'failed') text = h('p', { class: 'msg-text is-e2ee is-undecryptable', 'data-e2ee': 'failed' }, icon('alert', { size: 14 }), h('span', {}, 'This message could not be decrypted'));
    else if (!String(m.content ?? '') && files) text = null;
    else text = h('p', { class: 'msg-text' }, String(m.content ?? ''));
    const attachments = files && !m.deleted_at && (e2ee === null || e2ee === 'ok') ? renderAttachments(this.client, this.conversationId, m) : null;
    const edited = m.edited_at && !m.deleted_at ? h('span', { class: 'msg-edited', title: `Edited ${clockTime(m.edited_at)}` }, '(edited)') : null;
    const meta = h('span', { class: 'msg-meta' }, edited, h('time', { datetime: m.created_at }, clockTime(m.created_at)), receipt ? this.ticks(receipt, isGroup) : null);
    const quoteEl = quote
      ? h(
          'button',
          { class: `msg-quote${quote.deleted ? ' is-deleted' : ''}`, type: 'button', title: 'Show the original message', 'aria-label': `Reply to ${quote.name}: ${quote.text}. Show the original message`, 'on:click': () => this.jumpTo(m.reply_to) },
          h('span', { class: 'msg-quote-name' }, quote.name),
          h('span', { class: 'msg-quote-text' }, quote.text),
        )
      : null;
    const bubble = h('div', { class: `bubble${attachments ? ' has-attachments' : ''}${attachments && !text ? ' is-media-only' : ''}` }, showSender ? h('span', { class: 'msg-sender' }, senderName) : null, quoteEl, attachments, text, meta);
    const parts = [];
    if (isGroup && !r.mine) parts.push(r.tail ? avatar(m.sender_id, senderName, { size: 'sm' }) : h('span', { class: 'avatar-spacer' }));
    const line = h('div', { class: 'msg-line' }, bubble);
    if (this.actionable(m)) {
      const trigger = h(
        'button',
        { class: 'msg-actions-btn', type: 'button', 'aria-label': 'Message actions', 'aria-haspopup': 'menu', 'aria-expanded': String(open), title: 'Reply, react, edit, delete' },
        icon('more', { size: 18 }),
      );
      trigger.addEventListener('click', () => {
        if (this.menu?.messageId === m.id) this.closeMenu(true);
        else this.openMenu(m, el, trigger, { focusFirst: true });
      });
      line.append(trigger);
    }
    const column = h('div', { class: 'msg-col' }, line);
    if (reactions.length) {
      column.append(
        h(
          'div',
          { class: 'reactions', role: 'group', 'aria-label': 'Reactions' },
          ...(m.reactions ?? []).map((/** @type {any} */ x) => {
            const who = this.reactorsText(x);
            return h(
              'button',
              {
                class: `reaction-chip${x.me ? ' is-mine' : ''}`,
                type: 'button',
                'aria-pressed': String(!!x.me),
                title: `${who} reacted with ${x.emoji}`,
                'aria-label': `${x.emoji} ${x.count}, ${who}. ${x.me ? 'Remove your reaction' : 'React too'}`,
                'data-emoji': x.emoji,
                'on:click': () => this.react(m, x.emoji),
              },
              h('span', { class: 'reaction-emoji' }, x.emoji),
              h('span', { class: 'reaction-count' }, String(x.count)),
            );
          }),
        ),
      );
    }
    if (receipt?.status === 'failed') {
      column.append(
        h(
          'button',
          { class: 'retry-btn', type: 'button', title: m.error || 'Not sent', 'on:click': () => this.client.retry(m.temp_id) },
          icon('alert', { size: 14 }),
          h('span', {}, 'Not sent. Tap to retry.'),
        ),
      );
    }
    if (readLine) column.append(h('span', { class: 'read-line' }, readLine));
    parts.push(column);
    el.replaceChildren(...parts);
  }

  /** What a reply's quote shows. @param {any} m @returns {{name: string, text: string, deleted: boolean}} */
  quoteOf(m) {
    const c = this.client;
    const p = m.reply_preview;
    const original = c.message(this.conversationId, m.reply_to);
    const senderId = p?.sender_id ?? original?.sender_id ?? '';
    const name = !senderId ? 'Message' : senderId === c.user?.id ? 'You' : c.displayName(senderId);
    const deleted = !!(p?.deleted || original?.deleted_at);
    if (deleted) return { name, text: 'Original message was deleted', deleted: true };
    // An encrypted original: our own decryption when we have it, the server's "Encrypted message" otherwise.
    const decrypted = original?.content_type === 'encrypted' && original.e2ee?.state === 'ok' ? original.content : null;
    const text = String(decrypted ?? p?.content ?? original?.content ?? '').replace(/\s+/g, ' ').trim();
    return { name, text: text || (original ? filesPreview(original) : '') || 'Original message', deleted: false };
  }

  /** "Ann, Ben and 3 more". @param {{user_ids: string[], count: number}} r */
  reactorsText(r) {
    const c = this.client;
    const names = (r.user_ids ?? []).map((u) => (u === c.user?.id ? 'You' : c.displayName(u)));
    const more = r.count - names.length;
    if (more > 0) return `${names.join(', ')} and ${more} more`;
    if (names.length > 1) return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
    return names[0] ?? '';
  }

  // ------------------------------------------------------------ actions

  /** @param {any} m @param {string} emoji */
  react(m, emoji) {
    this.client.react(this.conversationId, m.id, emoji).catch((err) => toast(changeError(err, 'reaction'), 'error'));
  }

  /** @param {any} m */
  async confirmDelete(m) {
    const mine = m.sender_id === this.client.user?.id;
    const ok = await confirmDialog({
      title: 'Delete message?',
      message: mine ? 'It will be deleted for everyone in this conversation.' : `This message from ${this.client.displayName(m.sender_id)} will be deleted for everyone.`,
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!ok || this.destroyed) return;
    if (this.mode?.id === m.id) this.cancelMode();
    this.client.delete(this.conversationId, m.id).catch((err) => toast(changeError(err, 'delete'), 'error'));
  }

  /**
   * Show a message, loading the history around it when it is not held; it is scrolled to and
   * highlighted.
   * @param {string} messageId
   */
  async jumpTo(messageId) {
    const c = this.client;
    let m = c.message(this.conversationId, messageId);
    if (!m) {
      try {
        m = await c.loadAround(this.conversationId, messageId);
      } catch {
        toast('Could not load the original message.', 'error');
        return;
      }
      if (this.destroyed) return;
      if (!m) {
        toast('The original message is not available.', 'error');
        return;
      }
    }
    // Reading back: the window of rows starts at it (or earlier).
    const all = c.messages(this.conversationId);
    const at = all.findIndex((x) => x.id === messageId);
    const currentStart = all.findIndex((x) => x.key === this.windowKey);
    this.stick = false;
    if (at >= 0 && (currentStart < 0 || at < currentStart)) this.windowKey = all[Math.max(0, at - 20)].key;
    this.render();
    const row = /** @type {HTMLElement|null} */ (this.messages.querySelector(`.msg-row[data-id="${CSS.escape(messageId)}"]`));
    if (!row) return;
    this.autoScrolling = true;
    row.scrollIntoView({ block: 'center', behavior: 'auto' });
    this.autoScrolling = false;
    this.stick = this.nearBottom();
    row.classList.remove('is-highlighted');
    void row.offsetWidth;
    row.classList.add('is-highlighted');
    setTimeout(() => row.classList.remove('is-highlighted'), 2000);
  }

  // ----------------------------------------------------------------- menu

  /**
   * @param {any} m
   * @param {HTMLElement} row
   * @param {HTMLElement|null} trigger
   * @param {{focusFirst: boolean}} opts
   */
  openMenu(m, row, trigger, { focusFirst }) {
    this.closeMenu(false);
    const c = this.client;
    const el = h('div', { class: 'msg-menu', role: 'menu', 'aria-label': 'Message actions', 'on:keydown': (/** @type {KeyboardEvent} */ e) => this.onMenuKey(e) });
    this.menu = { el, messageId: m.id, trigger, row };
    const item = (/** @type {string} */ label, /** @type {any} */ ic, /** @type {() => void} */ action, cls = '') =>
      h('button', { class: `menu-item ${cls}`, type: 'button', role: 'menuitem', tabindex: '-1', 'on:click': action }, icon(ic, { size: 18 }), h('span', {}, label));
    const mine = (/** @type {string} */ emoji) => !!(m.reactions ?? []).find((/** @type {any} */ r) => r.emoji === emoji)?.me;
    const emojiButton = (/** @type {string} */ emoji) =>
      h(
        'button',
        { class: `menu-emoji${mine(emoji) ? ' is-mine' : ''}`, type: 'button', role: 'menuitem', tabindex: '-1', 'aria-label': `React with ${emoji}`, title: emoji, 'on:click': () => {
          this.closeMenu(true);
          this.react(m, emoji);
        } },
        emoji,
      );
    const showPicker = () => {
      el.classList.add('is-picker');
      el.replaceChildren(
        h('div', { class: 'picker-title' }, 'Pick a reaction'),
        h('div', { class: 'picker-grid', role: 'group', 'aria-label': 'More reactions' }, ...[...QUICK_REACTIONS, ...PICKER].map(emojiButton)),
      );
      this.placeMenu();
      this.menuItems()[0]?.focus();
    };
    const quick = h(
      'div',
      { class: 'menu-reactions', role: 'group', 'aria-label': 'React' },
      ...QUICK_REACTIONS.map(emojiButton),
      h('button', { class: 'menu-emoji menu-more', type: 'button', role: 'menuitem', tabindex: '-1', 'aria-label': 'More reactions', title: 'More reactions', 'on:click': showPicker }, icon('plus', { size: 18 })),
    );
    const items = [
      item('Reply', 'reply', () => {
        this.closeMenu(false);
        this.startReply(m);
      }),
    ];
    if (c.canEdit(m)) {
      items.push(
        item('Edit', 'edit', () => {
          this.closeMenu(false);
          this.startEdit(m);
        }),
      );
    }
    if (c.canDelete(m)) {
      items.push(
        item(
          'Delete',
          'trash',
          () => {
            this.closeMenu(true);
            this.confirmDelete(m);
          },
          'is-danger',
        ),
      );
    }
    el.append(quick, h('div', { class: 'menu-list' }, ...items));
    // A phone shows the menu as a sheet over a dimmed page (CSS); a tap outside closes it.
    this.menuBackdrop = h('div', { class: 'menu-backdrop', 'aria-hidden': 'true' });
    document.body.append(this.menuBackdrop, el);
    row.classList.add('is-menu-open');
    trigger?.setAttribute('aria-expanded', 'true');
    this.placeMenu();
    document.addEventListener('pointerdown', this.onDocPointer, true);
    document.addEventListener('keydown', this.onDocKey);
    window.addEventListener('resize', this.onResize);
    this.scroller.addEventListener('scroll', this.onMenuScroll);
    if (focusFirst) this.menuItems()[0]?.focus();
    else el.focus?.();
  }

  onMenuScroll = () => {
    // A scroll of the reader's moves the message away from its menu.
    if (this.menu && !this.autoScrolling) this.closeMenu(false);
  };

  /** Next to the message on a wide screen; a sheet at the bottom on a phone (CSS). */
  placeMenu() {
    const menu = this.menu;
    if (!menu || !menu.row) return;
    const el = menu.el;
    if (!window.matchMedia('(min-width: 760px)').matches) {
      el.style.left = '';
      el.style.top = '';
      return;
    }
    const bubble = /** @type {HTMLElement} */ (menu.row.querySelector('.bubble') ?? menu.row);
    const b = bubble.getBoundingClientRect();
    const w = el.offsetWidth;
    const hgt = el.offsetHeight;
    const mine = menu.row.classList.contains('is-mine');
    let left = mine ? b.right - w : b.left;
    left = Math.max(8, Math.min(left, window.innerWidth - w - 8));
    let top = b.bottom + 6;
    if (top + hgt > window.innerHeight - 8) top = b.top - hgt - 6;
    top = Math.max(8, top);
    el.style.left = `${Math.round(left)}px`;
    el.style.top = `${Math.round(top)}px`;
  }

  menuItems() {
    return /** @type {HTMLElement[]} */ ([...(this.menu?.el.querySelectorAll('[role="menuitem"]') ?? [])]);
  }

  /** @param {KeyboardEvent} e */
  onMenuKey(e) {
    const items = this.menuItems();
    const i = items.indexOf(/** @type {HTMLElement} */ (document.activeElement));
    const grid = this.menu?.el.classList.contains('is-picker');
    const go = (/** @type {number} */ n) => {
      e.preventDefault();
      items[(n + items.length) % items.length]?.focus();
    };
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      this.closeMenu(true);
    } else if (e.key === 'ArrowDown') go(i < 0 ? 0 : i + (grid ? PICKER_COLUMNS : 1));
    else if (e.key === 'ArrowUp') go(i < 0 ? items.length - 1 : i - (grid ? PICKER_COLUMNS : 1));
    else if (e.key === 'ArrowRight') go(i + 1);
    else if (e.key === 'ArrowLeft') go(i - 1);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(items.length - 1);
    else if (e.key === 'Tab') this.closeMenu(true);
  }

  /** @param {boolean} refocus  give the focus back to the message's actions button */
  closeMenu(refocus) {
    const menu = this.menu;
    if (!menu) return;
    this.menu = null;
    document.removeEventListener('pointerdown', this.onDocPointer, true);
    document.removeEventListener('keydown', this.onDocKey);
    window.removeEventListener('resize', this.onResize);
    this.scroller.removeEventListener('scroll', this.onMenuScroll);
    menu.el.remove();
    this.menuBackdrop?.remove();
    this.menuBackdrop = null;
    menu.row?.classList.remove('is-menu-open');
    menu.trigger?.setAttribute('aria-expanded', 'false');
    const trigger = menu.trigger?.isConnected ? menu.trigger : /** @type {HTMLElement|null} */ (menu.row?.querySelector('.msg-actions-btn') ?? null);
    trigger?.setAttribute('aria-expanded', 'false');
    if (refocus) trigger?.focus({ preventScroll: true });
  }

  // ------------------------------------------------------- reply and edit

  /** @param {any} m */
  startReply(m) {
    if (this.mode?.kind === 'edit') this.cancelMode();
    this.mode = { kind: 'reply', id: m.id, draft: '' };
    const c = this.client;
    const name = m.sender_id === c.user?.id ? 'yourself' : c.displayName(m.sender_id);
    this.showContext('reply', `Replying to ${name}`, String(m.content ?? '').replace(/\s+/g, ' ').trim() || filesPreview(m), 'Cancel reply');
    this.input.focus();
  }

  /** @param {any} m */
  startEdit(m) {
    const draft = this.mode ? (this.mode.draft ?? '') : this.input.value;
    this.mode = { kind: 'edit', id: m.id, draft };
    this.showContext('edit', 'Editing message', String(m.content ?? '').replace(/\s+/g, ' '), 'Cancel edit');
    this.input.value = m.content ?? '';
    this.onInput();
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  /** @param {'reply'|'edit'} kind @param {string} title @param {string} text @param {string} cancelLabel */
  showContext(kind, title, text, cancelLabel) {
    this.contextBar.hidden = false;
    this.contextBar.dataset.kind = kind;
    this.contextIcon.replaceChildren(icon(kind === 'edit' ? 'edit' : 'reply', { size: 18 }));
    this.contextTitle.textContent = title;
    this.contextText.textContent = text;
    this.contextCancel.setAttribute('aria-label', cancelLabel);
    this.contextCancel.title = `${cancelLabel} (Esc)`;
    this.sendButton.setAttribute('aria-label', kind === 'edit' ? 'Save edit' : 'Send reply');
    this.input.placeholder = kind === 'edit' ? 'Edit your message...' : 'Write a reply...';
  }

  /** Leave reply or edit mode; an edit gives the composer back what was in it. */
  cancelMode() {
    const mode = this.mode;
    this.mode = null;
    this.contextBar.hidden = true;
    this.sendButton.setAttribute('aria-label', 'Send message');
    this.input.placeholder = 'Write a message...';
    if (mode?.kind === 'edit') {
      this.input.value = mode.draft ?? '';
      this.onInput();
    }
    this.input.focus();
  }

  /** The newest message of ours that can still be edited. */
  lastEditable() {
    const all = this.client.messages(this.conversationId);
    for (let i = all.length - 1; i >= 0; i--) if (this.client.canEdit(all[i])) return all[i];
    return null;
  }

  /** @param {import('../sdk/chat-client.js').Receipt} r @param {boolean} isGroup */
  ticks(r, isGroup) {
    const label =
      r.status === 'sending'
        ? 'Sending'
        : r.status === 'failed'
          ? 'Not sent'
          : r.status === 'sent'
            ? 'Sent'
            : r.status === 'delivered'
              ? 'Delivered'
              : 'Read';
    const title = isGroup && r.of > 0 && r.status !== 'sending' && r.status !== 'failed' ? `${label}. Read by ${r.readBy} of ${r.of}` : label;
    const name = r.status === 'sending' ? 'clock' : r.status === 'failed' ? 'alert' : r.status === 'sent' ? 'check' : 'checks';
    return h('span', { class: `ticks is-${r.status}`, title }, icon(name, { size: 16, label: title }));
  }

  // ------------------------------------------------------------- scrolling

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  onScroll() {
    const s = this.scroller;
    const near = this.nearBottom();
    // Our own smooth scroll passes through positions the reader did not choose.
    if (!this.autoScrolling) this.stick = near;
    if (near) this.hideNewButton();
    if (s.scrollTop < NEAR_TOP_PX && !this.autoScrolling) this.showOlder();
  }

  onScrollEnd() {
    this.autoScrolling = false;
    this.stick = this.nearBottom();
    if (this.stick) this.hideNewButton();
    // The reader may have taken over from our scroll and be at the top by now: no further
    // scroll event would come to say so.
    if (this.scroller.scrollTop < NEAR_TOP_PX) this.showOlder();
  }

  /** Scrolled to the top: put back older messages held in memory, else page them in. */
  showOlder() {
    if (this.hiddenAbove > 0) {
      this.stick = false;
      this.reveal = REVEAL;
      this.render();
      return;
    }
    this.loadOlder();
  }

  async loadOlder() {
    const c = this.client;
    if (this.loadingOlder || !c.isLoaded(this.conversationId) || !c.hasOlder(this.conversationId)) return;
    this.loadingOlder = true;
    this.render();
    const before = c.messages(this.conversationId).length;
    try {
      await c.loadOlder(this.conversationId);
      // What came in goes into the page too (the window starts at the oldest one shown).
      this.reveal = Math.max(0, c.messages(this.conversationId).length - before);
    } catch {
      /* try again on the next scroll */
    } finally {
      this.loadingOlder = false;
      if (!this.destroyed) {
        this.render();
        this.fillViewport();
      }
    }
  }

  /** Too little history to scroll? Load more until the view is full or history ends. */
  fillViewport() {
    const s = this.scroller;
    if (s.scrollHeight <= s.clientHeight + NEAR_TOP_PX && (this.hiddenAbove > 0 || this.client.hasOlder(this.conversationId))) this.showOlder();
  }

  /**
   * Follow the bottom. Smooth when asked, unless a smooth scroll of ours is still under way
   * (a burst): then straight there, so no arrival rate can outrun the view.
   * @param {boolean} smooth
   */
  scrollToBottom(smooth) {
    const s = this.scroller;
    const reduced = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    const animate = smooth && !reduced && !this.autoScrolling && s.scrollHeight - s.scrollTop - s.clientHeight > 1;
    this.stick = true;
    this.autoScrolling = animate;
    s.scrollTo({ top: s.scrollHeight, behavior: animate ? 'smooth' : 'auto' });
    this.hideNewButton();
  }

  showNewButton() {
    const label = /** @type {HTMLElement} */ (this.newButton.lastElementChild);
    label.textContent = this.newCount === 1 ? '1 new message' : `${this.newCount} new messages`;
    this.newButton.hidden = false;
  }

  hideNewButton() {
    this.newCount = 0;
    this.newButton.hidden = true;
  }

  // -------------------------------------------------------------- composer

  /** @param {KeyboardEvent} e */
  onKeyDown(e) {
    if (e.key === 'Escape' && this.mode && !e.isComposing) {
      e.preventDefault();
      this.cancelMode();
      return;
    }
    // Up in an empty composer edits our last message.
    if (e.key === 'ArrowUp' && !this.mode && !this.input.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      const m = this.lastEditable();
      if (m) {
        e.preventDefault();
        this.startEdit(m);
        return;
      }
    }
    // Enter sends, Shift+Enter is a new line; never while an IME is composing.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      this.composer.requestSubmit();
    }
  }

  onInput() {
    const value = this.input.value;
    if (value.length) this.client.typing(this.conversationId);
    else this.client.stopTyping(this.conversationId);
    this.autosize();
    const over = value.length > MAX_LENGTH;
    this.counter.textContent = value.length > MAX_LENGTH - 500 ? `${value.length} / ${MAX_LENGTH}` : '';
    this.counter.classList.toggle('is-over', over);
    this.updateSend();
  }

  autosize() {
    const el = this.input;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 160)}px`;
  }

  /** @param {Event} e */
  onSubmit(e) {
    e.preventDefault();
    const value = this.input.value;
    const mode = this.mode;
    const withFiles = mode?.kind !== 'edit' && this.tray.ready.length > 0;
    if ((!value.trim() && !withFiles) || value.length > MAX_LENGTH) return;
    if (mode?.kind === 'edit') {
      if (!value.trim()) return;
      const m = this.client.message(this.conversationId, mode.id);
      this.input.value = mode.draft ?? '';
      this.cancelMode();
      if (m && value !== m.content) this.client.edit(this.conversationId, mode.id, value).catch((err) => toast(changeError(err, 'edit'), 'error'));
      return;
    }
    if (mode?.kind === 'reply') {
      this.mode = null;
      this.cancelMode();
    }
    const attachments = withFiles ? this.tray.ready.slice(0, MAX_ATTACHMENTS).map((i) => i.result) : [];
    try {
      this.client.send(this.conversationId, value, { replyTo: mode?.kind === 'reply' ? mode.id : null, attachments });
    } catch (err) {
      toast(/** @type {Error} */ (err).message || 'The message was not sent.', 'error');
      return;
    }
    // They went with it (the rest stay for the next one).
    if (attachments.length) this.tray.take(attachments);
    this.input.value = '';
    this.onInput();
    this.input.focus();
    this.scrollToBottom(true);
  }
}


/**
 * Why a change was refused, for the user (the change itself was rolled back).
 * @param {any} err @param {'edit'|'delete'|'reaction'} kind
 */
export function changeError(err, kind) {
  const what = kind === 'edit' ? 'Your edit was not saved' : kind === 'delete' ? 'The message was not deleted' : 'Your reaction was not saved';
  switch (err?.code) {
    case 'edit_window_closed':
      return `${what}: messages can only be edited for 48 hours.`;
    case 'message_deleted':
      return `${what}: the message was deleted.`;
    case 'not_sender':
      return `${what}: only its sender can do that.`;
    case 'not_participant':
      return `${what}: you are no longer in this conversation.`;
    case 'not_found':
      return `${what}: the message no longer exists.`;
    case 'rate_limited':
      return `${what}: too many changes, try again in a moment.`;
    case 'validation_failed':
      return `${what}: ${err.message || 'it was not valid.'}`;
    case 'network':
      return `${what}: cannot reach the server.`;
    default:
      return `${what}.`;
  }
}
