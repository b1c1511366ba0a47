// Small shared UI pieces: avatars, presence dots, the connection banner, toasts.

import { h, icon } from './dom.js';
import { avatarColor, initials } from './format.js';

/**
 * An initials avatar with an optional presence dot.
 * @param {string} id   colour seed
 * @param {string} name
 * @param {{size?: 'sm'|'md'|'lg', presence?: string|null, group?: boolean}} [opts]
 */
export function avatar(id, name, { size = 'md', presence = null, group = false } = {}) {
  const el = h('span', { class: `avatar avatar-${size}${group ? ' avatar-group' : ''}`, 'aria-hidden': 'true' });
  el.style.setProperty('--avatar-bg', avatarColor(id));
  el.append(group ? icon('users', { size: size === 'lg' ? 22 : 18 }) : document.createTextNode(initials(name)));
  if (presence) el.append(presenceDot(presence));
  return el;
}

/** @param {string} status */
export function presenceDot(status) {
  return h('span', { class: `presence-dot is-${status}` });
}

/** @param {string} status */
export function presenceLabel(status) {
  return status === 'online' ? 'Online' : status === 'away' ? 'Away' : status === 'unknown' ? 'Status unknown while offline' : 'Offline';
}

/**
 * The connection banner of seed 001 (AC-29..31): nothing while connected, "Reconnecting..." while
 * the connection is being re-established, the polling notice once it gave up; and the offline
 * notice while there is no network (the browser says so, or the link went silent).
 * @param {import('../sdk/chat-client.js').ChatClient} client
 * @param {string} [extraClass]
 * @returns {{el: HTMLElement, destroy: () => void}}
 */
export function connectionBanner(client, extraClass = '') {
  const text = h('span', { class: 'banner-text' });
  const spinner = h('span', { class: 'spinner', 'aria-hidden': 'true' });
  const wifi = icon('wifiOff', { size: 16 });
  const el = h('div', { class: `banner ${extraClass}`, role: 'status', hidden: true }, spinner, wifi, text);
  /** @param {string} name @param {string} message @param {{visible?: boolean, busy?: boolean}} [opts] */
  const show = (name, message, { visible = true, busy = false } = {}) => {
    el.hidden = !visible;
    el.dataset.state = name;
    text.textContent = message;
    spinner.hidden = !busy;
    wifi.style.display = busy ? 'none' : '';
  };
  const render = () => {
    const state = client.state;
    if (client.offline && state !== 'connected') return show('offline', 'You are offline. Messages will be sent when you are back.');
    if (state === 'connected') return show('connected', '', { visible: false });
    if (state === 'failed') return show('failed', 'Real-time updates unavailable. Messages may be delayed.');
    // connecting | disconnected: the very first connect of a page load is not a "reconnect".
    const reconnecting = state === 'disconnected' || client.everConnected || client.reconnectAttempt > 0;
    show(reconnecting ? 'reconnecting' : 'connecting', reconnecting ? 'Reconnecting...' : '', { visible: reconnecting, busy: true });
  };
  const offs = [client.on('state', render), client.on('offline', render)];
  render();
  return { el, destroy: () => offs.forEach((off) => off()) };
}

/** A short notice at the bottom of the screen. @param {string} message @param {'info'|'error'} [kind] */
export function toast(message, kind = 'info') {
  let host = document.querySelector('.toasts');
  if (!host) {
    host = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite', popover: 'manual' });
    document.body.append(host);
  }
  const el = h('div', { class: `toast toast-${kind}` }, message);
  host.append(el);
  // In the top layer, shown again so it comes above a dialog opened since: a toast about what
  // a dialog did is not dimmed behind it.
  if (typeof host.showPopover === 'function') {
    if (host.matches(':popover-open')) host.hidePopover();
    host.showPopover();
  }
  setTimeout(() => {
    el.classList.add('is-leaving');
    setTimeout(() => el.remove(), 300);
  }, 4000);
}
