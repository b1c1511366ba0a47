// Attachments in the UI (issue 14): the composer's tray of files being uploaded (preview,
// progress, cancel, retry, remove), a message's images and file cards, and the image viewer.
// Encrypted conversations: thumbnails, full images and downloads are decrypted here (blob:
// object URLs); the server's links only ever carry ciphertext.

import { h, icon } from './dom.js';
import { toast } from './components.js';
import { MAX_ATTACHMENTS, fileKind, humanSize, isInlineImage, makeThumbnail, uploadErrorText } from '../sdk/attachments.js';

/** Inline images fit this box (CSS pixels). */
const THUMB_BOX = 240;

/** @param {string} kind */
function kindIcon(kind) {
  return kind === 'image' ? 'image' : kind === 'video' ? 'video' : kind === 'audio' ? 'audio' : kind === 'pdf' || kind === 'doc' ? 'fileText' : 'file';
}

/** A short label of a file's type: "PDF", "DOCX", "PNG". @param {string} mime @param {string} name */
function typeLabel(mime, name) {
  const ext = String(name).includes('.') ? String(name).split('.').pop() : '';
  if (ext && ext.length <= 5) return ext.toUpperCase();
  const sub = String(mime || '').split('/')[1] ?? '';
  return sub && sub.length <= 8 ? sub.toUpperCase() : 'File';
}

/** Fit (w, h) into the thumbnail box. @param {number|null|undefined} w @param {number|null|undefined} hgt */
function fit(w, hgt) {
  if (!w || !hgt) return null;
  const scale = Math.min(1, THUMB_BOX / Math.max(w, hgt));
  return { width: Math.max(40, Math.round(w * scale)), height: Math.max(40, Math.round(hgt * scale)) };
}

/** A thumbnail of an image file as a data: URL; null when it cannot be decoded. @param {File} file @returns {Promise<string|null>} */
async function preview(file) {
  const thumb = await makeThumbnail(file).catch(() => null);
  if (!thumb) return null;
  return new Promise((resolve) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => resolve(null);
    r.readAsDataURL(thumb.blob);
  });
}

/** Save a URL under a name (a temporary link with `download`). @param {string} href @param {string} name */
function saveAs(href, name) {
  const a = h('a', { href, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------- composer

/**
 * @typedef {object} TrayItem
 * @property {string} key
 * @property {File} file
 * @property {'uploading'|'done'|'failed'} status
 * @property {number} loaded
 * @property {number} total
 * @property {string} [error]
 * @property {boolean} [refused]   a 4xx refusal: retrying cannot help
 * @property {any} [result]
 * @property {AbortController|null} controller
 * @property {string|null} preview  a small thumbnail of an image, a data: URL
 * @property {HTMLElement} el
 */

/** The files attached to the message being written, each uploaded as soon as it is added. */
export class ComposerTray {
  /**
   * @param {import('../sdk/chat-client.js').ChatClient} client
   * @param {string} conversationId
   * @param {() => void} onChange  what is ready changed (the Send button)
   */
  constructor(client, conversationId, onChange) {
    this.client = client;
    this.conversationId = conversationId;
    this.onChange = onChange;
    /** @type {TrayItem[]} */
    this.items = [];
    this.seq = 0;
    this.list = h('ul', { class: 'tray-list', 'aria-label': 'Attached files' });
    this.el = h('div', { class: 'composer-tray', hidden: true }, this.list);
  }

  /** Confirmed files, in the order added. */
  get ready() {
    return this.items.filter((i) => i.status === 'done');
  }

  get uploading() {
    return this.items.some((i) => i.status === 'uploading');
  }

  /** @param {Iterable<File>} files */
  add(files) {
    let skipped = 0;
    for (const file of files) {
      if (this.items.length >= MAX_ATTACHMENTS) {
        skipped++;
        continue;
      }
      /** @type {TrayItem} */
      const item = {
        key: `f${++this.seq}`,
        file,
        status: 'uploading',
        loaded: 0,
        total: file.size,
        controller: null,
        preview: null,
        el: h('li', { class: 'tray-item' }),
      };
      this.items.push(item);
      this.list.append(item.el);
      this.start(item);
      // A small preview of an image, as a data: URL (the page's policy allows no blob: images).
      if (isInlineImage(file.type)) {
        preview(file).then((url) => {
          if (!url || !this.items.includes(item)) return;
          item.preview = url;
          this.render(item);
        });
      }
    }
    if (skipped) toast(`At most ${MAX_ATTACHMENTS} files go with one message.`, 'error');
    this.el.hidden = this.items.length === 0;
    this.onChange();
  }

  /** @param {TrayItem} item */
  start(item) {
    item.status = 'uploading';
    item.error = undefined;
    item.refused = false;
    item.loaded = 0;
    const controller = new AbortController();
    item.controller = controller;
    this.render(item);
    this.client
      .uploadAttachment(this.conversationId, item.file, {
        signal: controller.signal,
        onProgress: (p) => {
          item.loaded = p.loaded;
          item.total = p.total || item.total;
          this.progress(item);
        },
      })
      .then(
        (result) => {
          if (item.controller !== controller) return;
          item.controller = null;
          item.status = 'done';
          item.result = result;
          this.render(item);
          this.onChange();
        },
        (err) => {
          if (item.controller !== controller) return;
          item.controller = null;
          if (err?.code === 'aborted') {
            this.remove(item);
            return;
          }
          item.status = 'failed';
          item.error = uploadErrorText(err);
          // 4xx: the server said no (too large, not allowed, not what it says): final.
          item.refused = typeof err?.status === 'number' && err.status >= 400 && err.status < 500 && err.status !== 429;
          this.render(item);
          this.onChange();
        },
      );
  }

  /** Cancel an upload in flight, or take a file out of the tray. @param {TrayItem} item */
  remove(item) {
    const at = this.items.indexOf(item);
    if (at < 0) return;
    const controller = item.controller;
    item.controller = null;
    controller?.abort();
    this.items.splice(at, 1);
    item.el.remove();
    this.el.hidden = this.items.length === 0;
    this.onChange();
  }

  /** Confirmed files leave with a message (the rest stay). @param {any[]} [results] which (default: every confirmed one) @returns {any[]} */
  take(results) {
    const ready = results ? this.ready.filter((i) => results.includes(i.result)) : this.ready;
    for (const item of ready) {
      this.items.splice(this.items.indexOf(item), 1);
      item.el.remove();
    }
    this.el.hidden = this.items.length === 0;
    this.onChange();
    return ready.map((i) => i.result);
  }

  destroy() {
    for (const item of [...this.items]) this.remove(item);
  }

  /** @param {TrayItem} item */
  progress(item) {
    const bar = /** @type {HTMLElement|null} */ (item.el.querySelector('.tray-bar > span'));
    const pct = item.total ? Math.min(100, Math.round((item.loaded / item.total) * 100)) : 0;
    if (bar) bar.style.width = `${pct}%`;
    const prog = item.el.querySelector('.tray-progress');
    prog?.setAttribute('aria-valuenow', String(pct));
    const label = item.el.querySelector('.tray-status');
    if (label && item.status === 'uploading') label.textContent = `${pct}%`;
  }

  /** @param {TrayItem} item */
  render(item) {
    const f = item.file;
    const kind = fileKind(f.type, f.name);
    item.el.className = `tray-item is-${item.status}${item.preview ? ' has-preview' : ''}`;
    item.el.dataset.name = f.name;
    item.el.dataset.status = item.status;
    const fallback = () => h('span', { class: `tray-icon kind-${kind}` }, icon(kindIcon(kind), { size: 22 }));
    const thumb = item.preview ? h('img', { class: 'tray-thumb', src: item.preview, alt: '' }) : fallback();
    // Not an image after all (a renamed file): its icon instead.
    if (item.preview) thumb.addEventListener('error', () => thumb.replaceWith(fallback()), { once: true });
    const removeLabel = item.status === 'uploading' ? `Cancel upload of ${f.name}` : `Remove ${f.name}`;
    const remove = h(
      'button',
      { class: `icon-btn tray-remove${item.status === 'uploading' ? ' tray-cancel' : ''}`, type: 'button', 'aria-label': removeLabel, title: item.status === 'uploading' ? 'Cancel upload' : 'Remove', 'on:click': () => this.remove(item) },
      icon('close', { size: 16 }),
    );
    /** @type {(HTMLElement|null)[]} */
    const lines = [h('span', { class: 'tray-name', title: f.name }, f.name)];
    if (item.status === 'uploading') {
      lines.push(
        h(
          'span',
          { class: 'tray-progress', role: 'progressbar', 'aria-label': `Uploading ${f.name}`, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0' },
          h('span', { class: 'tray-bar' }, h('span')),
          h('span', { class: 'tray-status' }, '0%'),
        ),
      );
    } else if (item.status === 'failed') {
      lines.push(
        h(
          'span',
          { class: 'tray-error', role: 'alert' },
          icon('alert', { size: 14 }),
          h('span', {}, item.error ?? 'The upload failed.'),
          item.refused ? null : h('button', { class: 'link-btn tray-retry', type: 'button', 'on:click': () => this.start(item) }, 'Retry'),
        ),
      );
    } else {
      lines.push(h('span', { class: 'tray-meta' }, `${typeLabel(f.type, f.name)} · ${humanSize(f.size)}`));
    }
    item.el.replaceChildren(thumb, h('span', { class: 'tray-main' }, ...lines), remove);
    if (item.status === 'uploading') this.progress(item);
  }
}

// ----------------------------------------------------------------- messages

/**
 * What a message shows of its files: images inline (they open in the viewer), other files as
 * cards with a download link. Null when it has none.
 * @param {import('../sdk/chat-client.js').ChatClient} client
 * @param {string} conversationId
 * @param {any} m
 * @returns {HTMLElement|null}
 */
export function renderAttachments(client, conversationId, m) {
  if (m.deleted_at) return null;
  const encrypted = m.content_type === 'encrypted';
  if (encrypted) {
    const files = m.e2ee?.state === 'ok' ? (m.e2ee.files ?? []) : [];
    if (!files.length) return null;
    return group(files.map((/** @type {any} */ f) => encryptedItem(client, conversationId, m, f)));
  }
  const list = Array.isArray(m.attachments) ? m.attachments : [];
  if (!list.length) return null;
  return group(list.map((/** @type {any} */ a) => plainItem(client, conversationId, m, a)));
}

/** Images side by side, then the file cards under them. @param {HTMLElement[]} items */
function group(items) {
  const images = items.filter((el) => el.classList.contains('att-image'));
  const files = items.filter((el) => !el.classList.contains('att-image'));
  return h('div', { class: 'msg-attachments' }, images.length ? h('div', { class: 'att-images' }, ...images) : null, files.length ? h('div', { class: 'att-files' }, ...files) : null);
}

/** The signature of what `renderAttachments` shows (a row re-renders when it changes). @param {any} m */
export function attachmentsSig(m) {
  if (m.content_type === 'encrypted') return (m.e2ee?.files ?? []).map((/** @type {any} */ f) => f.attachment_id).join(',');
  return (m.attachments ?? []).map((/** @type {any} */ a) => `${a.id}:${a.thumbnail_url ?? ''}:${a.url ?? ''}`).join(',');
}

/** @param {any} client @param {string} conversationId @param {any} m @param {any} a */
function plainItem(client, conversationId, m, a) {
  // The links are short-lived (and a cached message's may be old): a download or the viewer
  // asks for fresh ones first.
  const fresh = async () => (m.id ? ((await client.refreshAttachment(conversationId, m.id, a.id).catch(() => null)) ?? a) : a);
  if (isInlineImage(a.mime_type) && (a.thumbnail_url || a.url)) {
    const size = fit(a.width, a.height);
    const img = /** @type {HTMLImageElement} */ (h('img', { class: 'att-img', src: a.thumbnail_url || a.url, alt: a.filename, loading: 'lazy', decoding: 'async', ...(size ? { width: size.width, height: size.height } : {}) }));
    let retried = false;
    img.addEventListener('error', () => {
      // A signed link that expired (403): ask for fresh ones once; the row re-renders with them.
      if (retried || !m.id) return;
      retried = true;
      client.refreshAttachment(conversationId, m.id, a.id).catch(() => {});
    });
    return h(
      'button',
      {
        class: 'att-image',
        type: 'button',
        'aria-label': `Open image ${a.filename}`,
        title: a.filename,
        'on:click': async () => {
          const now = await fresh();
          openViewer({ src: now.url || now.thumbnail_url, name: a.filename, width: a.width, height: a.height, download: () => saveAs(now.url, a.filename) });
        },
      },
      img,
    );
  }
  const kind = fileKind(a.mime_type, a.filename);
  const link = /** @type {HTMLAnchorElement} */ (
    h(
      'a',
      { class: 'att-file', href: a.url ?? '#', download: a.filename, title: `Download ${a.filename}`, 'aria-label': `Download ${a.filename}, ${humanSize(a.size)}`, rel: 'noopener' },
      h('span', { class: `att-file-icon kind-${kind}` }, icon(kindIcon(kind), { size: 22 })),
      h('span', { class: 'att-file-main' }, h('span', { class: 'att-file-name' }, a.filename), h('span', { class: 'att-file-meta' }, `${typeLabel(a.mime_type, a.filename)} · ${humanSize(a.size)}`)),
      h('span', { class: 'att-file-dl' }, icon('download', { size: 18 })),
    )
  );
  link.addEventListener('click', async (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    const now = await fresh();
    if (now.url) saveAs(now.url, a.filename);
  });
  return link;
}

/** @param {any} client @param {string} conversationId @param {any} m @param {any} f */
function encryptedItem(client, conversationId, m, f) {
  const opts = { message: m };
  const download = () =>
    client.decryptedFileUrl(conversationId, m.id, f, opts).then(
      (/** @type {string} */ url) => saveAs(url, f.name),
      () => toast('The file could not be decrypted.', 'error'),
    );
  if (isInlineImage(f.type) && f.thumbnail_attachment_id) {
    const size = fit(f.width, f.height);
    const img = /** @type {HTMLImageElement} */ (h('img', { class: 'att-img is-loading', alt: f.name, ...(size ? { width: size.width, height: size.height } : {}) }));
    client.decryptedFileUrl(conversationId, m.id, f, { thumbnail: true, as: 'data', ...opts }).then(
      (/** @type {string} */ url) => {
        img.src = url;
        img.classList.remove('is-loading');
      },
      () => {
        img.classList.remove('is-loading');
        img.classList.add('is-broken');
        img.alt = `${f.name} (could not be decrypted)`;
      },
    );
    return h(
      'button',
      {
        class: 'att-image is-encrypted',
        type: 'button',
        'aria-label': `Open image ${f.name}`,
        title: f.name,
        'on:click': () => {
          const viewer = openViewer({ src: img.src || '', name: f.name, width: f.width, height: f.height, download: () => download() });
          client.decryptedFileUrl(conversationId, m.id, f, { ...opts, as: 'data' }).then(
            (/** @type {string} */ url) => viewer.setSrc(url),
            () => toast('The image could not be decrypted.', 'error'),
          );
        },
      },
      img,
    );
  }
  const kind = fileKind(f.type, f.name);
  const card = h(
    'button',
    { class: 'att-file is-encrypted', type: 'button', title: `Download ${f.name}`, 'aria-label': `Download ${f.name}, ${humanSize(f.size)}` },
    h('span', { class: `att-file-icon kind-${kind}` }, icon(kindIcon(kind), { size: 22 })),
    h('span', { class: 'att-file-main' }, h('span', { class: 'att-file-name' }, f.name), h('span', { class: 'att-file-meta' }, `${typeLabel(f.type, f.name)} · ${humanSize(f.size)}`)),
    h('span', { class: 'att-file-dl' }, icon('download', { size: 18 })),
  );
  card.addEventListener('click', async () => {
    card.classList.add('is-busy');
    await download();
    card.classList.remove('is-busy');
  });
  return card;
}

// ------------------------------------------------------------------- viewer

/**
 * The full image over the page (a modal dialog): Esc, the close button or a click outside
 * the image close it.
 * @param {{src: string, name: string, width?: number|null, height?: number|null, download: () => void}} opts
 * @returns {{el: HTMLDialogElement, setSrc: (src: string) => void, close: () => void}}
 */
export function openViewer({ src, name, width, height, download }) {
  const img = /** @type {HTMLImageElement} */ (h('img', { class: 'viewer-img', alt: name, ...(width && height ? { width, height } : {}) }));
  if (src) img.src = src;
  const close = () => {
    if (el.open) el.close();
  };
  const el = /** @type {HTMLDialogElement} */ (
    h(
      'dialog',
      { class: 'viewer', 'aria-label': `Image ${name}` },
      h(
        'div',
        { class: 'viewer-bar' },
        h('span', { class: 'viewer-name' }, name),
        h('button', { class: 'icon-btn viewer-download', type: 'button', 'aria-label': `Download ${name}`, title: 'Download', 'on:click': () => download() }, icon('download')),
        h('button', { class: 'icon-btn viewer-close', type: 'button', 'aria-label': 'Close', title: 'Close (Esc)', 'on:click': close }, icon('close')),
      ),
      h('div', { class: 'viewer-stage' }, img),
    )
  );
  el.addEventListener('click', (e) => {
    const t = /** @type {HTMLElement} */ (e.target);
    if (t === el || t.classList.contains('viewer-stage')) close();
  });
  el.addEventListener('close', () => el.remove());
  document.body.append(el);
  el.showModal();
  /** @type {HTMLElement} */ (el.querySelector('.viewer-close')).focus();
  return {
    el,
    setSrc: (s) => {
      img.src = s;
    },
    close,
  };
}

/** What the list says of a message that is only files: "Photo", "3 files", its name. @param {any} m */
export function filesPreview(m) {
  const files = m.content_type === 'encrypted' ? (m.e2ee?.files ?? []).map((/** @type {any} */ f) => ({ name: f.name, type: f.type })) : (m.attachments ?? []).map((/** @type {any} */ a) => ({ name: a.filename, type: a.mime_type }));
  if (!files.length) return '';
  if (files.length > 1) return files.every((/** @type {any} */ f) => String(f.type).startsWith('image/')) ? `${files.length} photos` : `${files.length} files`;
  return String(files[0].type).startsWith('image/') ? 'Photo' : files[0].name;
}
