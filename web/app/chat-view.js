// One open conversation: header with presence, the message history (infinite scroll upward),
// status ticks, the typing line, and the composer.

import { h, icon, reconcile } from './dom.js';
import { avatar, connectionBanner } from './components.js';
import { clockTime, dayKey, dayLabel, presenceText } from './format.js';
import { describeTyping } from '../sdk/typing.js';

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

export class ChatView {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {string} conversationId
   * @param {{onBack: () => void, onInfo: () => void}} opts
   */
  constructor(client, conversationId, { onBack, onInfo }) {
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
    this.sendButton = h('button', { class: 'send-btn', type: 'submit', 'aria-label': 'Send message', title: 'Send (Enter)', disabled: true }, icon('send'));
    this.composer = h(
      'form',
      { class: 'composer', 'on:submit': (/** @type {Event} */ e) => this.onSubmit(e) },
      h('label', { class: 'visually-hidden', for: `composer-${conversationId}` }, 'Message'),
      h('div', { class: 'composer-box' }, this.input, this.counter),
      this.sendButton,
    );

    this.el = h(
      'section',
      { class: 'chat', 'aria-labelledby': `chat-title-${conversationId}` },
      h('header', { class: 'chat-header' }, back, this.headerAvatar, h('div', { class: 'chat-heading' }, this.title, this.subtitle), this.infoButton),
      this.banner.el,
      h('div', { class: 'messages-wrap' }, this.scroller, this.newButton),
      this.typingLine,
      this.composer,
    );
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
    this.client.stopTyping(this.conversationId);
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

  render() {
    const c = this.client;
    const id = this.conversationId;
    const view = c.conversation(id);
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
      (r) => (r.kind === 'day' ? h('div', { class: 'day-sep', role: 'separator' }, h('span', {}, r.label)) : h('div', { class: 'msg-row' })),
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

  /**
   * @param {HTMLElement} el
   * @param {any} r
   * @param {boolean} isGroup
   * @param {boolean} isLastMine
   */
  updateRow(el, r, isGroup, isLastMine) {
    const c = this.client;
    const m = r.m;
    const receipt = r.mine ? c.receipt(m) : null;
    const showSender = isGroup && !r.mine && !r.grouped;
    const senderName = !r.mine ? c.displayName(m.sender_id) : '';
    const readLine = isGroup && r.mine && isLastMine && receipt && receipt.of > 0 && receipt.readBy > 0 ? `Read by ${receipt.readBy} of ${receipt.of}` : '';
    const sig = JSON.stringify([m.content, m.deleted_at, m.edited_at, receipt?.status, receipt?.readBy, receipt?.of, r.grouped, r.tail, showSender, senderName, readLine, m.created_at]);
    if (el.dataset.sig === sig) return;
    el.dataset.sig = sig;
    el.className = `msg-row${r.mine ? ' is-mine' : ''}${r.grouped ? ' is-grouped' : ''}${r.tail ? ' is-tail' : ''}${receipt?.status === 'failed' ? ' is-failed' : ''}`;
    el.dataset.status = receipt?.status ?? '';

    const text = m.deleted_at ? h('p', { class: 'msg-text is-deleted' }, 'This message was deleted') : h('p', { class: 'msg-text' }, String(m.content ?? ''));
    const meta = h('span', { class: 'msg-meta' }, m.edited_at ? h('span', { class: 'msg-edited' }, 'edited') : null, h('time', { datetime: m.created_at }, clockTime(m.created_at)), receipt ? this.ticks(receipt, isGroup) : null);
    const bubble = h('div', { class: 'bubble' }, showSender ? h('span', { class: 'msg-sender' }, senderName) : null, text, meta);
    const parts = [];
    if (isGroup && !r.mine) parts.push(r.tail ? avatar(m.sender_id, senderName, { size: 'sm' }) : h('span', { class: 'avatar-spacer' }));
    const column = h('div', { class: 'msg-col' }, bubble);
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
    this.sendButton.disabled = !value.trim() || over;
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
    if (!value.trim() || value.length > MAX_LENGTH) return;
    this.client.send(this.conversationId, value);
    this.input.value = '';
    this.onInput();
    this.input.focus();
    this.scrollToBottom(true);
  }
}

