// End-to-end encryption as the ChatClient uses it (issue 13, docs/security.md): this device's
// identity and registration, the conversation keys it holds (memory, backed by the IndexedDB key
// store), getting keys (fetch, request, answer requests), making them (version 1, rotation after
// a member was removed), sharing them with new member devices, encrypting and decrypting
// messages, and the passphrase-protected key backup.
//
// The cryptography is web/sdk/crypto.js; this module is the protocol around it (the routes of
// docs/api.md). It never sends plaintext anywhere: `encrypt` fails when no key is held.

import {
  DecryptError,
  decryptBackup,
  decryptMessage,
  encryptBackup,
  encryptMessage,
  exportConversationKey,
  fingerprint,
  generateConversationKey,
  generateDeviceKeys,
  importConversationKey,
  parseEnvelope,
  safetyNumber,
  unwrapKey,
  wrapKey,
} from './crypto.js';
import { openKeyStore, keyStoreDatabaseName } from './keystore.js';
import { ApiError } from './rest.js';

/** At most one key request per conversation in this long. */
export const KEY_REQUEST_INTERVAL_MS = 30_000;
/** Attempts at making a key version when the server refuses (a race) before giving up until the next change. */
const MAKE_ATTEMPTS = 3;
/**
 * Members who did not cause a key change (create, turn on, remove) wait this long, plus up to
 * as much again at random, before making the new version themselves: the one who caused it
 * usually has, and two members making the same version at once is what the server cannot
 * untangle (the second PUT is taken as sharing the first's version, with another key).
 */
export const MAKE_DELAY_MS = 1500;
/** How long IndexedDB may take to open the key store. */
const OPEN_TIMEOUT_MS = 3000;

/** The send was refused locally: no key for the conversation (never sent as plaintext). */
export class NoKeyError extends Error {
  /** @param {string} message */
  constructor(message = 'The key of this encrypted conversation is not on this device yet: the message was not sent.') {
    super(message);
    this.name = 'NoKeyError';
    this.code = 'no_key';
  }
}

/**
 * What decrypting a message gave.
 * @typedef {{state: 'ok', text: string} | {state: 'waiting', kid: number} | {state: 'failed', code: string}} Decrypted
 *
 * A conversation as this module needs it (a ConversationDto).
 * @typedef {{id: string, encrypted?: boolean, key_version?: number, rotation_needed?: boolean, participants?: {user_id: string}[]}} EncConversation
 */

/** A name for this device: "Chrome on Linux". @param {string} [ua] */
export function deviceName(ua = /** @type {any} */ (globalThis).navigator?.userAgent ?? '') {
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : 'an unknown system';
  return `${browser} on ${os}`;
}

export class E2EE {
  /**
   * @param {object} opts
   * @param {import('./rest.js').RestClient} opts.rest
   * @param {IDBFactory|any} opts.indexedDB
   * @param {string} opts.userId
   * @param {import('./clock.js').Clock} opts.clock
   * @param {Pick<Console,'warn'|'debug'>} [opts.logger]
   * @param {string} [opts.deviceName]
   * @param {(conversationId: string) => void} [opts.onKeys]  new keys for a conversation arrived
   * @param {(conversationId: string) => Promise<EncConversation|null>} [opts.refetch]  the conversation as the server has it now
   */
  constructor({ rest, indexedDB, userId, clock, logger = console, deviceName: name, onKeys = () => {}, refetch = async () => null }) {
    this.rest = rest;
    this._idb = indexedDB;
    this.userId = userId;
    this._clock = clock;
    this._log = logger;
    this._name = name ?? deviceName();
    this._onKeys = onKeys;
    this._refetch = refetch;
    /** @type {import('./keystore.js').KeyStore|null} */
    this.store = null;
    /** @type {import('./keystore.js').DeviceRecord|null} */
    this.device = null;
    /** conversation -> version -> key. @type {Map<string, Map<number, CryptoKey>>} */
    this._keys = new Map();
    /** conversation -> when we last asked for its key. @type {Map<string, number>} */
    this._asked = new Map();
    /** `conv:device:version` answered -> when. @type {Map<string, number>} */
    this._answered = new Map();
    /** conversation -> its work chain (one thing at a time per conversation). @type {Map<string, Promise<void>>} */
    this._chains = new Map();
    /** conversations being synced, with "run again" flags. @type {Map<string, {again: boolean, conv: EncConversation}>} */
    this._syncing = new Map();
    /** conversation -> the key version that a make failed for (do not retry it hot). @type {Map<string, number>} */
    this._gaveUp = new Map();
    /** Conversations whose next key version this client caused (created, turned on, removed a member). @type {Set<string>} */
    this._initiated = new Set();
    this._closed = false;
    this._settled = false;
    this.ready = this._init();
    // Failure is reported to whoever awaits `ready`; nobody awaiting must not be an unhandled rejection.
    this.ready.then(
      () => (this._settled = true),
      () => (this._settled = true),
    );
  }

  /** The key store, or an error when IndexedDB does not answer in time. */
  _open() {
    return new Promise((resolve, reject) => {
      const timer = this._clock.setTimeout(() => reject(new Error('the key store did not open in time')), OPEN_TIMEOUT_MS);
      openKeyStore({ indexedDB: this._idb, userId: this.userId }).then(
        (store) => {
          this._clock.clearTimeout(timer);
          if (this._closed) store.close();
          resolve(store);
        },
        (err) => {
          this._clock.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  async _init() {
    this.store = await this._open();
    let device = await this.store.getDevice();
    if (device) {
      // Still live on the server? (revoked from another device, or the server lost it)
      const live = await this.rest.userDevices(this.userId).catch((err) => {
        if (err instanceof ApiError && err.status === 0) return null; // offline: trust what we have
        throw err;
      });
      if (Array.isArray(live) && !live.some((d) => d.id === device?.id)) {
        const answer = await this.rest.registerDevice({ public_key: device.publicRaw, name: this._name });
        device = { ...device, id: answer.id };
        await this.store.putDevice(device);
      }
    } else {
      const keys = await generateDeviceKeys();
      const answer = await this.rest.registerDevice({ public_key: keys.publicRaw, name: this._name });
      device = { id: answer.id, ...keys };
      await this.store.putDevice(device);
    }
    this.device = device;
    for (const { conversationId, version, key } of await this.store.allConversationKeys()) this._remember(conversationId, version, key);
  }

  /**
   * This client caused the conversation's next key version (it created the conversation, turned
   * encryption on or removed a member): it makes that version at once, others wait first.
   * @param {string} conversationId
   */
  initiated(conversationId) {
    this._initiated.add(conversationId);
  }

  /** @param {number} ms */
  _sleep(ms) {
    return new Promise((resolve) => this._clock.setTimeout(resolve, ms));
  }

  /** Stop using this store (another user signed in); nothing is deleted. */
  close() {
    this._closed = true;
    if (this._settled) this.ready.then(() => this.store?.close(), () => {});
    this._keys.clear();
  }

  /** Sign-out: the key store is deleted (its keys are gone from this browser). */
  async destroy() {
    this._closed = true;
    // Still opening (IndexedDB hanging): do not wait for it; delete what is there.
    if (this._settled) await this.ready.catch(() => {});
    try {
      await this.store?.clear();
    } catch (err) {
      this._log.warn?.('chat sdk: could not clear the key store', err);
    }
    this.store?.close();
    this.store = null;
    this._keys.clear();
    await new Promise((resolve) => {
      try {
        const req = this._idb.deleteDatabase(keyStoreDatabaseName(this.userId));
        req.onsuccess = req.onerror = req.onblocked = () => resolve(undefined);
      } catch {
        resolve(undefined);
      }
    });
  }

  // ------------------------------------------------------------------ keys held

  /** @param {string} conversationId @param {number} version @param {CryptoKey} key */
  _remember(conversationId, version, key) {
    let m = this._keys.get(conversationId);
    if (!m) this._keys.set(conversationId, (m = new Map()));
    const isNew = !m.has(version);
    m.set(version, key);
    return isNew;
  }

  /** The highest key version held for a conversation (0: none). @param {string} conversationId */
  heldVersion(conversationId) {
    const m = this._keys.get(conversationId);
    return m && m.size ? Math.max(...m.keys()) : 0;
  }

  /** @param {string} conversationId @param {number} version */
  hasKey(conversationId, version) {
    return !!this._keys.get(conversationId)?.has(version);
  }

  /** Key versions held, per conversation. @returns {Record<string, number[]>} */
  heldVersions() {
    /** @type {Record<string, number[]>} */
    const out = {};
    for (const [id, m] of this._keys) out[id] = [...m.keys()].sort((a, b) => a - b);
    return out;
  }

  /** @param {string} conversationId @param {number} version @param {CryptoKey} key */
  async _store(conversationId, version, key) {
    const isNew = this._remember(conversationId, version, key);
    if (isNew) await this.store?.putConversationKey(conversationId, version, key);
    return isNew;
  }

  // ------------------------------------------------------------ messages

  /**
   * Encrypt a message's text with the highest key version held.
   * @param {string} conversationId @param {string} plaintext
   * @returns {Promise<string>} the envelope
   * @throws {NoKeyError}
   */
  async encrypt(conversationId, plaintext) {
    await this.ready;
    const version = this.heldVersion(conversationId);
    const key = version ? this._keys.get(conversationId)?.get(version) : null;
    if (!key) throw new NoKeyError();
    return encryptMessage({ key, version, plaintext, conversationId });
  }

  /**
   * @param {string} conversationId @param {string} envelope
   * @returns {Promise<Decrypted>}
   */
  async decrypt(conversationId, envelope) {
    let kid;
    try {
      kid = parseEnvelope(envelope).kid;
    } catch (err) {
      return { state: 'failed', code: err instanceof DecryptError ? err.code : 'malformed' };
    }
    try {
      await this.ready;
    } catch {
      return { state: 'waiting', kid };
    }
    const key = this._keys.get(conversationId)?.get(kid);
    if (!key) return { state: 'waiting', kid };
    try {
      return { state: 'ok', text: await decryptMessage({ key, envelope, conversationId }) };
    } catch (err) {
      return { state: 'failed', code: err instanceof DecryptError ? err.code : 'tampered' };
    }
  }

  // ------------------------------------------------------- getting keys

  /**
   * Run `fn` after whatever this conversation is already doing.
   * @template T @param {string} id @param {() => Promise<T>} fn @returns {Promise<T>}
   */
  _serial(id, fn) {
    const prev = this._chains.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(() => undefined, () => undefined);
    this._chains.set(id, tail);
    tail.then(() => {
      if (this._chains.get(id) === tail) this._chains.delete(id);
    });
    return run;
  }

  /**
   * Bring a conversation's keys up to date with what the server says of it: fetch what is
   * wrapped for us, make version 1 when there is none, rotate when a member was removed, ask
   * for the key when we still lack the current one. Coalesced: a call while one runs runs once more.
   * @param {EncConversation} conv
   */
  sync(conv) {
    if (!conv?.encrypted || this._closed) return Promise.resolve();
    const running = this._syncing.get(conv.id);
    if (running) {
      running.again = true;
      running.conv = conv;
      return this._chains.get(conv.id) ?? Promise.resolve();
    }
    const slot = { again: false, conv };
    this._syncing.set(conv.id, slot);
    const loop = async () => {
      try {
        do {
          slot.again = false;
          await this._syncOnce(slot.conv);
        } while (slot.again && !this._closed);
      } finally {
        this._syncing.delete(conv.id);
      }
    };
    return this._serial(conv.id, loop).catch((err) => this._log.warn?.('chat sdk: keys of an encrypted conversation', err));
  }

  /** @param {EncConversation} conv */
  async _syncOnce(conv) {
    await this.ready;
    const id = conv.id;
    let version = conv.key_version ?? 0;
    let rotation = !!conv.rotation_needed;
    if (version > this.heldVersion(id) || version === 0) {
      const state = await this.fetchKeys(id);
      if (state) {
        version = state.key_version;
        rotation = state.rotation_needed;
      }
    }
    if (version === 0 || rotation) {
      if (this._gaveUp.get(id) === version) return;
      if (!this._initiated.delete(id)) {
        // Someone else caused it and is probably making it now: give them the chance.
        await this._sleep(MAKE_DELAY_MS + Math.floor(Math.random() * MAKE_DELAY_MS));
        const state = await this.fetchKeys(id);
        if (state) {
          version = state.key_version;
          rotation = state.rotation_needed;
        }
        if (version > 0 && !rotation) {
          if (!this.hasKey(id, version)) await this.askForKey(id);
          return;
        }
      }
      const made = await this._make(id, version, rotation);
      if (made === 'gave_up') this._gaveUp.set(id, version);
      return;
    }
    if (!this.hasKey(id, version)) await this.askForKey(id);
  }

  /**
   * Fetch and unwrap every key version wrapped for this device. Returns the server's state.
   * @param {string} id
   * @returns {Promise<{key_version: number, rotation_needed: boolean}|null>}
   */
  async fetchKeys(id) {
    await this.ready;
    const device = /** @type {import('./keystore.js').DeviceRecord} */ (this.device);
    let answer;
    try {
      answer = await this.rest.conversationKeys(id, device.id);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 403 || err.status === 404 || err.status === 409)) return null;
      throw err;
    }
    let added = false;
    for (const k of answer?.keys ?? []) {
      if (this.hasKey(id, k.version)) continue;
      try {
        const key = await unwrapKey({ wrapped: k.wrapped_key, conversationId: id, version: k.version, toPrivateKey: device.privateKey, fromPublicRaw: k.from_public_key });
        if (await this._store(id, k.version, key)) added = true;
      } catch (err) {
        this._log.warn?.(`chat sdk: key version ${k.version} of ${id} did not unwrap`, err);
      }
    }
    if (added) this._onKeys(id);
    return { key_version: Number(answer?.key_version ?? 0), rotation_needed: !!answer?.rotation_needed };
  }

  /**
   * Ask the members' clients for the current key (at most once per conversation per
   * KEY_REQUEST_INTERVAL_MS).
   * @param {string} id
   */
  async askForKey(id) {
    await this.ready;
    const now = this._clock.now();
    const last = this._asked.get(id);
    if (last !== undefined && now - last < KEY_REQUEST_INTERVAL_MS) return false;
    this._asked.set(id, now);
    try {
      await this.rest.requestKey(id, /** @type {any} */ (this.device).id);
      return true;
    } catch (err) {
      this._log.debug?.('chat sdk: key request refused', err);
      return false;
    }
  }

  /**
   * Make a new key version (`current + 1`): the first one, or a rotation that shuts out removed
   * members. Wrapped for every live device of the current members, ours included. A refusal
   * (409: another member made this version first; 422: a device went away) refetches the state and tries
   * again a few times, then stops until the conversation changes.
   * @param {string} id @param {number} current @param {boolean} rotation
   * @returns {Promise<'made'|'not_needed'|'gave_up'>}
   */
  async _make(id, current, rotation) {
    for (let attempt = 1; attempt <= MAKE_ATTEMPTS; attempt++) {
      if (this._closed) return 'gave_up';
      const version = current + 1;
      let devices;
      try {
        devices = rotation || current > 0 ? await this._memberDevices(id) : (await this.rest.missingKeys(id))?.devices ?? [];
      } catch (err) {
        this._log.warn?.('chat sdk: could not list the devices to wrap a key for', err);
        return 'gave_up';
      }
      const key = await generateConversationKey();
      try {
        await this._putWrapped(id, version, key, devices, true);
        await this._store(id, version, key);
        this._onKeys(id);
        return 'made';
      } catch (err) {
        if (!(err instanceof ApiError) || !(err.status === 422 || err.status === 409)) throw err;
        // A race: someone else made this version (409 key_version_exists: the server makes a
        // version once), or the member list moved under us (422).
        const state = await this.fetchKeys(id);
        if (!state) return 'gave_up';
        if (state.key_version > current && !state.rotation_needed) {
          if (!this.hasKey(id, state.key_version)) await this.askForKey(id);
          return 'not_needed';
        }
        current = state.key_version;
        rotation = state.rotation_needed;
        if (current > 0 && !rotation) return 'not_needed';
      }
    }
    return 'gave_up';
  }

  /** Every live device of the conversation's current members (fetched now). @param {string} id */
  async _memberDevices(id) {
    const conv = await this._refetch(id);
    const members = (conv?.participants ?? []).map((p) => p.user_id);
    if (!members.includes(this.userId)) members.push(this.userId);
    const lists = await Promise.all(members.map((u) => this.rest.userDevices(u)));
    return lists.flat().filter((d) => d && d.id && d.public_key);
  }

  /**
   * @param {string} id @param {number} version @param {CryptoKey} key
   * @param {{id: string, public_key: string}[]} devices
   * @param {boolean} [newVersion]  a new version, which the server makes once (a racing upload
   *   is refused with 409 `key_version_exists`); also wrapped for this device, which must read it
   */
  async _putWrapped(id, version, key, devices, newVersion = false) {
    const device = /** @type {import('./keystore.js').DeviceRecord} */ (this.device);
    const seen = new Set();
    const wrapped = [];
    for (const d of devices) {
      if (seen.has(d.id)) continue;
      seen.add(d.id);
      try {
        wrapped.push({ device_id: d.id, wrapped_key: await wrapKey({ conversationKey: key, conversationId: id, version, fromPrivateKey: device.privateKey, toPublicRaw: d.public_key }) });
      } catch (err) {
        this._log.warn?.(`chat sdk: device ${d.id} has an unusable public key`, err);
      }
    }
    if (newVersion && !seen.has(device.id)) {
      wrapped.push({ device_id: device.id, wrapped_key: await wrapKey({ conversationKey: key, conversationId: id, version, fromPrivateKey: device.privateKey, toPublicRaw: device.publicRaw }) });
    }
    if (!wrapped.length) return null;
    return this.rest.putKeys(id, version, newVersion ? { from_device_id: device.id, wrapped, new_version: true } : { from_device_id: device.id, wrapped });
  }

  /**
   * Share the current key with the live devices of current members that lack it (a member was
   * added, or one got a new device). Only when we hold the current version.
   * @param {string} id
   */
  shareMissing(id) {
    return this._serial(id, async () => {
      await this.ready;
      const missing = await this.rest.missingKeys(id);
      const version = Number(missing?.key_version ?? 0);
      const devices = (missing?.devices ?? []).filter((/** @type {any} */ d) => d.id !== this.device?.id);
      const key = this._keys.get(id)?.get(version);
      if (!version || !key || !devices.length || missing?.rotation_needed) return false;
      try {
        await this._putWrapped(id, version, key, devices);
        return true;
      } catch (err) {
        this._log.debug?.('chat sdk: sharing the key failed', err);
        return false;
      }
    }).catch((err) => {
      this._log.debug?.('chat sdk: sharing the key failed', err);
      return false;
    });
  }

  /**
   * A `key_request` frame: a member device lacks version `key_version`. Answered when we hold
   * it (once per device and version per KEY_REQUEST_INTERVAL_MS), wrapped for that device only.
   * @param {{conversation_id: string, user_id: string, device_id: string, key_version: number}} f
   */
  async onKeyRequest(f) {
    await this.ready;
    if (!f || f.device_id === this.device?.id) return false;
    const key = this._keys.get(f.conversation_id)?.get(f.key_version);
    if (!key) return false;
    const tag = `${f.conversation_id}:${f.device_id}:${f.key_version}`;
    const now = this._clock.now();
    const last = this._answered.get(tag);
    if (last !== undefined && now - last < KEY_REQUEST_INTERVAL_MS) return false;
    this._answered.set(tag, now);
    return this._serial(f.conversation_id, async () => {
      const devices = await this.rest.userDevices(f.user_id);
      const target = (devices ?? []).find((/** @type {any} */ d) => d.id === f.device_id);
      if (!target) return false;
      await this._putWrapped(f.conversation_id, f.key_version, key, [target]);
      return true;
    }).catch((err) => {
      this._log.debug?.('chat sdk: answering a key request failed', err);
      return false;
    });
  }

  /**
   * A `key_shared` frame: fetch the keys when one was wrapped for this device.
   * @param {{conversation_id: string, device_ids?: string[]}} f
   */
  async onKeyShared(f) {
    await this.ready;
    if (!Array.isArray(f?.device_ids) || !f.device_ids.includes(/** @type {any} */ (this.device).id)) return false;
    await this._serial(f.conversation_id, () => this.fetchKeys(f.conversation_id)).catch((err) => this._log.debug?.('chat sdk: fetching shared keys failed', err));
    return true;
  }

  // ------------------------------------------------------------ verification

  /** This device's fingerprint. */
  async myFingerprint() {
    await this.ready;
    return fingerprint(/** @type {any} */ (this.device).publicRaw);
  }

  /**
   * A user's live devices, each with its fingerprint as this client computes it (not the
   * server's word) and, for others' devices, the safety number with this device.
   * @param {string} userId
   */
  async devicesOf(userId) {
    await this.ready;
    const list = (await this.rest.userDevices(userId)) ?? [];
    const mine = /** @type {any} */ (this.device).publicRaw;
    return Promise.all(
      list.map(async (/** @type {any} */ d) => ({
        ...d,
        fingerprint: await fingerprint(d.public_key),
        this_device: d.id === this.device?.id,
        safety_number: userId === this.userId ? null : await safetyNumber(mine, d.public_key),
      })),
    );
  }

  // ------------------------------------------------------------------ backup

  /** The server holds a key backup for us. */
  async hasBackup() {
    try {
      await this.rest.getKeyBackup();
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return false;
      throw err;
    }
  }

  /**
   * Back up every key this device holds under a passphrase (replacing the stored backup).
   * @param {string} passphrase @param {{iterations?: number}} [opts]
   * @returns {Promise<number>} how many keys went in
   */
  async createBackup(passphrase, opts = {}) {
    await this.ready;
    /** @type {Record<string, Record<string, string>>} */
    const conversations = {};
    let n = 0;
    for (const [id, versions] of this._keys) {
      for (const [version, key] of versions) {
        (conversations[id] ??= {})[String(version)] = await exportConversationKey(key);
        n++;
      }
    }
    const backup = await encryptBackup({ passphrase, keys: { conversations }, ...(opts.iterations ? { iterations: opts.iterations } : {}) });
    await this.rest.putKeyBackup(backup);
    return n;
  }

  /**
   * Open the stored backup with the passphrase and import its keys.
   * @param {string} passphrase
   * @returns {Promise<{imported: number, conversations: string[]}>}
   * @throws {DecryptError} `bad_passphrase` (wrong passphrase); ApiError 404 when there is no backup
   */
  async restoreBackup(passphrase) {
    await this.ready;
    const backup = await this.rest.getKeyBackup();
    const opened = await decryptBackup({ passphrase, backup });
    let imported = 0;
    const touched = [];
    for (const [id, versions] of Object.entries(opened?.conversations ?? {})) {
      let added = false;
      for (const [v, raw] of Object.entries(/** @type {Record<string, string>} */ (versions ?? {}))) {
        const version = Number(v);
        if (!Number.isSafeInteger(version) || version < 1 || typeof raw !== 'string') continue;
        try {
          if (await this._store(id, version, await importConversationKey(raw))) {
            imported++;
            added = true;
          }
        } catch (err) {
          this._log.warn?.('chat sdk: a backed-up key did not import', err);
        }
      }
      if (added) {
        touched.push(id);
        this._onKeys(id);
      }
    }
    return { imported, conversations: touched };
  }
}
