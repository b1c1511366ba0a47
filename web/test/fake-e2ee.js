// The key routes of the chat server (devices, wrapped keys, key requests, key backups, turning
// encryption on), played over the in-memory FakeBackend of fakes.js through its `override` hook.
// Shared by the SDK unit tests and the scripted browser tests.
import { wrapKey } from '../sdk/crypto.js';

/**
 * The key routes of the server, played over FakeBackend (its `override` hook).
 * @param {FakeBackend} backend
 */
export function e2eeServer(backend) {
  const s = {
    /** @type {Map<string, {id: string, user_id: string, public_key: string, name: string}>} */
    devices: new Map(),
    /** conv -> version -> device -> stored key. @type {Map<string, Map<number, Map<string, any>>>} */
    keys: new Map(),
    backup: null,
    requests: [],
    puts: [],
    /** Keys wrapped for each device of mine when it registers (the other member's client at work). @type {{convId: string, version: number, key: CryptoKey, from: any}[]} */
    grants: [],
    /** Answer the next PUT of keys with this status once (a race). */
    failNextPut: 0,
    n: 0,
    addDevice(userId, publicRaw, name = 'Test device') {
      const d = { id: `d-${++s.n}`, user_id: userId, public_key: publicRaw, name, fingerprint: 'x', created_at: new Date(backend.clock.now()).toISOString() };
      s.devices.set(d.id, d);
      return d;
    },
    members(convId) {
      return backend.convs.get(convId).conv.participants.map((p) => p.user_id);
    },
    /** Store version `v` wrapped by `from` (a device record with privateKey) for devices. */
    async storeKey(convId, version, key, from, toDevices) {
      const conv = backend.convs.get(convId).conv;
      const byVersion = s.keys.get(convId) ?? new Map();
      s.keys.set(convId, byVersion);
      const slot = byVersion.get(version) ?? new Map();
      byVersion.set(version, slot);
      for (const d of toDevices) {
        slot.set(d.id, { version, wrapped_key: await wrapKey({ conversationKey: key, conversationId: convId, version, fromPrivateKey: from.privateKey, toPublicRaw: d.public_key }), from_device_id: from.id, from_user_id: from.user_id, from_public_key: from.publicRaw, created_at: new Date(backend.clock.now()).toISOString() });
      }
      if (version > conv.key_version) {
        conv.key_version = version;
        conv.rotation_needed = false;
      }
    },
  };
  const fail = (status, code) => ({ status, body: { error: { code, message: code } } });
  backend.override = async (method, path, body) => {
    const [route, query = ''] = path.split('?');
    const q = new URLSearchParams(query);
    let m;
    if (method === 'POST' && route === '/devices') {
      const d = s.addDevice(backend.me.id, body.public_key, body.name);
      for (const g of s.grants) await s.storeKey(g.convId, g.version, g.key, g.from, [d]);
      return { status: 201, body: d };
    }
    if (method === 'GET' && (m = route.match(/^\/users\/([^/]+)\/devices$/))) return { body: [...s.devices.values()].filter((d) => d.user_id === m[1]) };
    if (route === '/users/me/key_backup') {
      if (method === 'PUT') {
        s.backup = body;
        return { status: 204, body: null };
      }
      if (method === 'GET') return s.backup ? { body: s.backup } : fail(404, 'not_found');
    }
    if ((m = route.match(/^\/conversations\/([^/]+)\/(keys.*|encryption)$/))) {
      const convId = m[1];
      const c = backend.convs.get(convId);
      if (!c) return fail(403, 'not_participant');
      const conv = c.conv;
      const sub = m[2];
      if (method === 'POST' && sub === 'encryption') {
        conv.encrypted = true;
        return { body: backend._conversationJson(c) };
      }
      const byVersion = s.keys.get(convId) ?? new Map();
      if (method === 'GET' && sub === 'keys') {
        const device = q.get('device_id');
        const keys = [...byVersion.values()].map((slot) => slot.get(device)).filter(Boolean);
        return { body: { key_version: conv.key_version, rotation_needed: conv.rotation_needed, keys } };
      }
      if (method === 'GET' && sub === 'keys/missing') {
        const live = [...s.devices.values()].filter((d) => s.members(convId).includes(d.user_id));
        const have = byVersion.get(conv.key_version) ?? new Map();
        return { body: { key_version: conv.key_version, rotation_needed: conv.rotation_needed, devices: live.filter((d) => conv.key_version === 0 || !have.has(d.id)) } };
      }
      if (method === 'POST' && sub === 'keys/requests') {
        s.requests.push({ convId, device_id: body.device_id, at: backend.clock.now() });
        return { status: 202, body: null };
      }
      if (method === 'PUT' && (m = sub.match(/^keys\/(\d+)$/))) {
        const version = Number(m[1]);
        s.puts.push({ convId, version, body });
        if (s.failNextPut) {
          const status = s.failNextPut;
          s.failNextPut = 0;
          return fail(status, 'validation_failed');
        }
        // As the server: `new_version` makes the next version once (a racing one is told it
        // exists); without it only the current version is shared.
        if (body.new_version && version >= 1 && version <= conv.key_version) return fail(409, 'key_version_exists');
        if (body.new_version ? version !== conv.key_version + 1 : version < 1 || version !== conv.key_version) return fail(422, 'validation_failed');
        for (const w of body.wrapped) {
          const d = s.devices.get(w.device_id);
          if (!d || !s.members(convId).includes(d.user_id)) return fail(422, 'validation_failed');
        }
        const from = s.devices.get(body.from_device_id);
        const slot = byVersion.get(version) ?? new Map();
        // A device's wrapped key of a version, once stored, stays (as the server keeps the first).
        for (const w of body.wrapped) if (!slot.has(w.device_id)) slot.set(w.device_id, { version, wrapped_key: w.wrapped_key, from_device_id: from.id, from_user_id: from.user_id, from_public_key: from.public_key, created_at: new Date(backend.clock.now()).toISOString() });
        byVersion.set(version, slot);
        s.keys.set(convId, byVersion);
        const rotated = version === conv.key_version + 1;
        if (rotated) {
          conv.key_version = version;
          conv.rotation_needed = false;
        }
        return { body: { key_version: conv.key_version, rotated } };
      }
    }
    return null;
  };
  return s;
}

