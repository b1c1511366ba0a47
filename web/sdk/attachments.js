// Attachments (issue 14): uploading a file (announce, PUT the bytes, confirm), with progress,
// cancel and retries; files of end-to-end encrypted conversations encrypted here first; what
// messages carry about their files.
//
//   POST /api/v1/attachments/upload-url {conversation_id, filename, mime_type, size}
//        -> 201 {attachment_id, upload_url, upload_method: "PUT", expires_at}
//   PUT  <upload_url>  the bytes, no Authorization header (an S3 presigned URL, or the server's
//        own signed `/api/v1/attachments/{id}/content?...`) -> 204
//   POST /api/v1/attachments/{id}/confirm -> 200 AttachmentDto
//
// Network errors, 5xx and 429 are retried with backoff a few times; 4xx refusals are final.
//
// Encrypted conversations: each file gets a fresh AES-256-GCM key (WebCrypto) and IV, its
// ciphertext is uploaded as `encrypted.bin`, `application/octet-stream` (the server never sees
// the real name or type); an image's thumbnail (made here, 320 px on the long side, JPEG) is
// encrypted with the same key under another IV and uploaded as a second attachment. The
// message's encrypted plaintext then carries, per file, what a reader needs to decrypt it
// (`FileKey`, see `messagePlaintext`).

import { ApiError } from './rest.js';
import { AES, IV_BYTES, KEY_BYTES, fromBase64Url, subtle, toBase64Url } from './crypto.js';

/** Files one message may carry (`limits.max_attachments_per_message`). */
export const MAX_ATTACHMENTS = 10;
/** Long side of a thumbnail made here (encrypted conversations). */
export const THUMBNAIL_PX = 320;
/** Waits before the retries of a failed upload step (network, 5xx, 429). */
export const UPLOAD_RETRY_MS = [1000, 2000, 4000];
/** What an encrypted file is called and typed as on the server. */
export const ENCRYPTED_NAME = 'encrypted.bin';
export const ENCRYPTED_TYPE = 'application/octet-stream';
/** Version of the plaintext of an encrypted message that has files. */
export const FILES_PLAINTEXT_VERSION = 1;
/** Additional data of a file's encryption. */
const FILE_AAD = 'chat attachment v1';

/**
 * @typedef {object} AttachmentDto
 * @property {string} id
 * @property {string} filename
 * @property {string} mime_type
 * @property {number} size
 * @property {number|null} [width]
 * @property {number|null} [height]
 * @property {string|null} [thumbnail_url]
 * @property {string|null} [url]
 *
 * What an encrypted message says about one of its files (inside the ciphertext).
 * @typedef {object} FileKey
 * @property {string} attachment_id
 * @property {string} [thumbnail_attachment_id]
 * @property {string} key      base64url, 32 bytes (AES-256-GCM)
 * @property {string} iv       base64url, 12 bytes
 * @property {string} [thumb_iv]
 * @property {string} name
 * @property {string} type
 * @property {number} size
 * @property {number} [width]
 * @property {number} [height]
 *
 * An upload's result, as `send` takes it: the confirmed attachment (plain), or for an
 * encrypted conversation the file's key record with the ids of everything uploaded for it.
 * @typedef {AttachmentDto & {attachment_ids?: string[], file?: FileKey, attachments?: AttachmentDto[]}} UploadResult
 */

/** The upload was cancelled (its signal aborted). */
export class UploadCancelled extends Error {
  constructor() {
    super('The upload was cancelled.');
    this.name = 'AbortError';
    this.code = 'aborted';
  }
}

// ------------------------------------------------------------------ encryption

/**
 * Encrypt a file's bytes under a fresh AES-256-GCM key and IV.
 * @param {ArrayBuffer|Uint8Array} bytes
 * @param {{key?: CryptoKey}} [opts]  the key (a thumbnail uses its file's)
 * @returns {Promise<{ciphertext: Uint8Array, key: CryptoKey, rawKey: string, iv: string}>}
 */
export async function encryptFile(bytes, { key } = {}) {
  const k = key ?? /** @type {CryptoKey} */ (await subtle().generateKey(AES, true, ['encrypt', 'decrypt']));
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(FILE_AAD) }, k, bytes);
  return { ciphertext: new Uint8Array(ct), key: k, rawKey: toBase64Url(await subtle().exportKey('raw', k)), iv: toBase64Url(iv) };
}

/**
 * Decrypt what `encryptFile` made.
 * @param {ArrayBuffer|Uint8Array} ciphertext
 * @param {{key: string, iv: string}} k  base64url raw key and IV (a FileKey's `key`, and its `iv` or `thumb_iv`)
 * @returns {Promise<Uint8Array>}
 * @throws {Error} `code` 'malformed' (key or IV of the wrong shape) or 'tampered'
 */
export async function decryptFile(ciphertext, { key, iv }) {
  let raw, ivBytes;
  try {
    raw = fromBase64Url(key);
    ivBytes = fromBase64Url(iv);
  } catch {
    throw Object.assign(new Error('file key: not base64url'), { code: 'malformed' });
  }
  if (raw.length !== KEY_BYTES || ivBytes.length !== IV_BYTES) throw Object.assign(new Error('file key or IV of the wrong size'), { code: 'malformed' });
  const k = await subtle().importKey('raw', raw, { name: 'AES-GCM' }, false, ['decrypt']);
  try {
    return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: ivBytes, additionalData: new TextEncoder().encode(FILE_AAD) }, k, ciphertext));
  } catch {
    throw Object.assign(new Error('the file failed authentication'), { code: 'tampered' });
  }
}

/**
 * The plaintext of an encrypted message with files: JSON `{"v":1,"text":..,"files":[..]}`.
 * A message without files keeps the plain text plaintext of before.
 * @param {string} text @param {FileKey[]} files
 */
export function messagePlaintext(text, files) {
  if (!files.length) return text;
  return JSON.stringify({ v: FILES_PLAINTEXT_VERSION, text, files });
}

/**
 * Read a decrypted message's plaintext: with files only when the message has attachments and
 * the plaintext is that JSON (anything else is text, as before).
 * @param {string} plaintext @param {boolean} hasAttachments
 * @returns {{text: string, files: FileKey[]}}
 */
export function parsePlaintext(plaintext, hasAttachments) {
  if (!hasAttachments || !plaintext.startsWith('{')) return { text: plaintext, files: [] };
  try {
    const o = JSON.parse(plaintext);
    if (o && o.v === FILES_PLAINTEXT_VERSION && typeof o.text === 'string' && Array.isArray(o.files)) {
      const files = o.files.filter((/** @type {any} */ f) => f && typeof f.attachment_id === 'string' && typeof f.key === 'string' && typeof f.iv === 'string').map((/** @type {any} */ f) => ({
        attachment_id: f.attachment_id,
        ...(typeof f.thumbnail_attachment_id === 'string' ? { thumbnail_attachment_id: f.thumbnail_attachment_id } : {}),
        key: f.key,
        iv: f.iv,
        ...(typeof f.thumb_iv === 'string' ? { thumb_iv: f.thumb_iv } : {}),
        name: typeof f.name === 'string' && f.name ? f.name : 'file',
        type: typeof f.type === 'string' && f.type ? f.type : ENCRYPTED_TYPE,
        size: Number(f.size) || 0,
        ...(Number(f.width) > 0 ? { width: Number(f.width) } : {}),
        ...(Number(f.height) > 0 ? { height: Number(f.height) } : {}),
      }));
      return { text: o.text, files };
    }
  } catch {
    /* text that looks like JSON */
  }
  return { text: plaintext, files: [] };
}

// -------------------------------------------------------------------- helpers

/** "1.2 MB". @param {number} bytes */
export function humanSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v >= 100 ? Math.round(v) : v.toFixed(1).replace(/\.0$/, '')} ${units[i]}`;
}

/** What kind of file a type is, for its icon. @param {string} mime @param {string} [name] */
export function fileKind(mime, name = '') {
  const t = String(mime || '').toLowerCase();
  const ext = String(name).toLowerCase().split('.').pop() ?? '';
  if (t.startsWith('image/')) return 'image';
  if (t.startsWith('video/')) return 'video';
  if (t.startsWith('audio/')) return 'audio';
  if (t === 'application/pdf' || ext === 'pdf') return 'pdf';
  if (t.includes('word') || t === 'application/msword' || ext === 'doc' || ext === 'docx') return 'doc';
  return 'file';
}

const BY_EXTENSION = /** @type {Record<string, string>} */ ({
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  mp4: 'video/mp4',
  mp3: 'audio/mpeg',
  pdf: 'application/pdf',
  doc: 'application/msword',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
});

/**
 * A file's type: what the browser says, else what its extension says (some systems give no
 * type for a .docx), else `application/octet-stream`.
 * @param {{type?: string, name?: string}} file
 */
export function typeOf(file) {
  if (file.type) return file.type;
  const ext = String(file.name ?? '').toLowerCase().split('.').pop() ?? '';
  return BY_EXTENSION[ext] ?? 'application/octet-stream';
}

/** Images the browser shows inline. @param {string} mime */
export function isInlineImage(mime) {
  return /^image\/(jpeg|png|gif|webp)$/i.test(String(mime || ''));
}

/** What the user is told about a failed upload. @param {any} err */
export function uploadErrorText(err) {
  switch (err?.code) {
    case 'too_large':
      return 'This file is too large.';
    case 'type_not_allowed':
      return 'This type of file cannot be sent.';
    case 'content_mismatch':
      return 'This file is not what its name or type says: it was refused.';
    case 'malformed_filename':
      return 'The file name is not accepted.';
    case 'malformed_mime_type':
      return 'The type of this file is not understood.';
    case 'payload_too_large':
      return 'The upload is larger than announced.';
    case 'attachment_unavailable':
    case 'attachment_already_sent':
      return 'This file can no longer be sent: attach it again.';
    case 'empty_file':
      return 'The file is empty.';
    case 'too_many_pixels':
      return 'This image is too large (too many pixels).';
    case 'unreadable_image':
      return 'This image could not be read.';
    case 'upload_missing':
      return 'The upload did not arrive. Try again.';
    case 'rate_limited':
      return 'Too many uploads: try again in a moment.';
    case 'not_participant':
      return 'You are no longer in this conversation.';
    case 'aborted':
      return 'Cancelled.';
    case 'network':
      return 'Cannot reach the server.';
    default:
      return err?.message || 'The upload failed.';
  }
}

/**
 * A thumbnail of an image, made here (canvas): JPEG, at most `THUMBNAIL_PX` on the long side.
 * Null when this environment cannot decode it (no createImageBitmap / canvas, or not an image).
 * @param {Blob} file
 * @returns {Promise<{blob: Blob, width: number, height: number}|null>}
 */
export async function makeThumbnail(file) {
  const g = /** @type {any} */ (globalThis);
  if (typeof g.createImageBitmap !== 'function') return null;
  let bitmap;
  try {
    bitmap = await g.createImageBitmap(file);
  } catch {
    return null;
  }
  const { width, height } = bitmap;
  const scale = Math.min(1, THUMBNAIL_PX / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const hgt = Math.max(1, Math.round(height * scale));
  try {
    /** @type {any} */
    let canvas;
    if (typeof g.OffscreenCanvas === 'function') canvas = new g.OffscreenCanvas(w, hgt);
    else if (g.document) {
      canvas = g.document.createElement('canvas');
      canvas.width = w;
      canvas.height = hgt;
    } else return null;
    const ctx = canvas.getContext('2d');
    // JPEG has no transparency: a white ground under a transparent PNG.
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, w, hgt);
    ctx.drawImage(bitmap, 0, 0, w, hgt);
    const blob = canvas.convertToBlob
      ? await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.82 })
      : await new Promise((res) => canvas.toBlob(res, 'image/jpeg', 0.82));
    return blob ? { blob, width, height } : null;
  } finally {
    bitmap.close?.();
  }
}

// ---------------------------------------------------------------------- upload

/**
 * Uploads files for a RestClient.
 */
export class Uploader {
  /**
   * @param {object} opts
   * @param {import('./rest.js').RestClient} opts.rest
   * @param {import('./clock.js').Clock} opts.clock
   * @param {any} [opts.XMLHttpRequest]  constructor (progress events); default the global one, else fetch
   * @param {typeof fetch} [opts.fetch]
   * @param {number[]} [opts.retryMs]
   * @param {number} [opts.timeoutMs]  a PUT with no progress for this long is a network error
   */
  constructor({ rest, clock, XMLHttpRequest: XHR, fetch, retryMs = UPLOAD_RETRY_MS, timeoutMs = 60_000 }) {
    this.rest = rest;
    this._clock = clock;
    this._XHR = XHR !== undefined ? XHR : /** @type {any} */ (globalThis).XMLHttpRequest;
    this._fetch = fetch;
    this._retry = retryMs;
    this._timeoutMs = timeoutMs;
  }

  /**
   * Upload one plain file (or encrypted bytes): announce, PUT, confirm.
   * @param {string} conversationId
   * @param {Blob|Uint8Array} body
   * @param {{filename: string, mime_type: string, size: number}} meta
   * @param {{onProgress?: (p: {loaded: number, total: number}) => void, signal?: AbortSignal}} [opts]
   * @returns {Promise<AttachmentDto>}
   */
  async upload(conversationId, body, meta, { onProgress, signal } = {}) {
    const check = () => {
      if (signal?.aborted) throw new UploadCancelled();
    };
    check();
    const ticket = await this._withRetry(() => this.rest.requestUpload({ conversation_id: conversationId, ...meta }), signal);
    check();
    const url = this._absolute(ticket.upload_url);
    await this._withRetry(() => this._put(url, body, meta.mime_type, ticket.upload_method || 'PUT', meta.size, onProgress, signal), signal);
    check();
    const dto = await this._withRetry(() => this.rest.confirmAttachment(ticket.attachment_id), signal);
    return dto;
  }

  /** @param {string} u */
  _absolute(u) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(u)) return u;
    return `${this.rest.origin}${u.startsWith('/') ? '' : '/'}${u}`;
  }

  /**
   * Run a step, again after a transient failure (network, 5xx, 429: Retry-After honoured).
   * @template T @param {() => Promise<T>} step @param {AbortSignal} [signal] @returns {Promise<T>}
   */
  async _withRetry(step, signal) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await step();
      } catch (err) {
        if (signal?.aborted || /** @type {any} */ (err)?.code === 'aborted') throw new UploadCancelled();
        const e = /** @type {any} */ (err);
        if (!(e instanceof ApiError) || !e.transient || attempt >= this._retry.length) throw err;
        await this._sleep(Math.max(this._retry[attempt], e.retryAfterMs || 0), signal);
      }
    }
  }

  /** @param {number} ms @param {AbortSignal} [signal] */
  _sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this._clock.clearTimeout(t);
        reject(new UploadCancelled());
      };
      const t = this._clock.setTimeout(() => {
        signal?.removeEventListener?.('abort', onAbort);
        resolve(undefined);
      }, ms);
      signal?.addEventListener?.('abort', onAbort, { once: true });
    });
  }

  /**
   * PUT the bytes, without the access token.
   * @param {string} url @param {Blob|Uint8Array} body @param {string} type @param {string} method @param {number} size
   * @param {((p: {loaded: number, total: number}) => void)|undefined} onProgress @param {AbortSignal|undefined} signal
   * @returns {Promise<void>}
   */
  _put(url, body, type, method, size, onProgress, signal) {
    if (!this._XHR) return this._putFetch(url, body, type, method, size, onProgress, signal);
    return new Promise((resolve, reject) => {
      const xhr = new this._XHR();
      let done = false;
      /** @type {any} */
      let idle = null;
      const finish = (/** @type {Error|null} */ err) => {
        if (done) return;
        done = true;
        if (idle !== null) this._clock.clearTimeout(idle);
        signal?.removeEventListener?.('abort', onAbort);
        if (err) reject(err);
        else resolve(undefined);
      };
      const arm = () => {
        if (idle !== null) this._clock.clearTimeout(idle);
        idle = this._clock.setTimeout(() => {
          xhr.abort();
          finish(new ApiError(0, 'network', 'The upload stalled.'));
        }, this._timeoutMs);
      };
      const onAbort = () => {
        xhr.abort();
        finish(new UploadCancelled());
      };
      xhr.open(method, url);
      if (type) xhr.setRequestHeader('Content-Type', type);
      if (xhr.upload) {
        xhr.upload.onprogress = (/** @type {ProgressEvent} */ e) => {
          arm();
          onProgress?.({ loaded: e.loaded, total: e.lengthComputable ? e.total : size });
        };
      }
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress?.({ loaded: size, total: size });
          finish(null);
          return;
        }
        let data = null;
        try {
          data = JSON.parse(xhr.responseText || 'null');
        } catch {
          data = null;
        }
        const retryAfter = Number(xhr.getResponseHeader?.('Retry-After'));
        finish(
          new ApiError(xhr.status, data?.error?.code || `http_${xhr.status}`, data?.error?.message || `The upload was answered ${xhr.status}.`, {
            retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
          }),
        );
      };
      xhr.onerror = () => finish(new ApiError(0, 'network', 'Cannot reach the server.'));
      xhr.onabort = () => finish(signal?.aborted ? new UploadCancelled() : new ApiError(0, 'network', 'The upload was interrupted.'));
      signal?.addEventListener?.('abort', onAbort, { once: true });
      arm();
      onProgress?.({ loaded: 0, total: size });
      xhr.send(body);
    });
  }

  /** The same without XMLHttpRequest (no progress until it is done). */
  async _putFetch(/** @type {string} */ url, /** @type {any} */ body, /** @type {string} */ type, /** @type {string} */ method, /** @type {number} */ size, /** @type {any} */ onProgress, /** @type {AbortSignal|undefined} */ signal) {
    const f = this._fetch ?? globalThis.fetch;
    onProgress?.({ loaded: 0, total: size });
    let res;
    try {
      res = await f(url, { method, body, headers: type ? { 'Content-Type': type } : {}, signal });
    } catch (err) {
      if (signal?.aborted) throw new UploadCancelled();
      throw new ApiError(0, 'network', 'Cannot reach the server.');
    }
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      const retryAfter = Number(res.headers?.get?.('Retry-After'));
      throw new ApiError(res.status, data?.error?.code || `http_${res.status}`, data?.error?.message || `The upload was answered ${res.status}.`, {
        retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
      });
    }
    onProgress?.({ loaded: size, total: size });
  }
}

/** A Blob's (or a File's) bytes. @param {Blob|ArrayBuffer|Uint8Array} b @returns {Promise<Uint8Array>} */
export async function bytesOf(b) {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(await /** @type {Blob} */ (b).arrayBuffer());
}
