// Attachments (issue 14) through the SDK: the upload flow (announce, PUT without the access
// token, confirm) with progress, cancel, retries and refusals; sending with attachment_ids
// (the outbox keeps them across resends, the REST fallback and a reload); files of encrypted
// conversations encrypted and decrypted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../sdk/chat-client.js';
import { Outbox } from '../sdk/outbox.js';
import { decryptFile, encryptFile, fileKind, humanSize, messagePlaintext, parsePlaintext, typeOf, uploadErrorText } from '../sdk/attachments.js';
import { decryptMessage, encryptMessage, generateConversationKey, generateDeviceKeys } from '../sdk/crypto.js';
import { FakeBackend, FakeClock, FakeDocument, MemoryStorage, makeFakeWebSocket, makeFakeXHR, settle } from './fakes.js';
import { FakeIndexedDB } from './fake-indexeddb.js';
import { e2eeServer } from './fake-e2ee.js';

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 64, 0, 0, 0, 48, 8, 6, 0, 0, 0]);
const EXE = new Uint8Array([0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff]);
const PDF = new TextEncoder().encode('%PDF-1.4\n%fake pdf body\n');

/** A File-like blob (Node's File). */
const file = (bytes, name, type) => new File([bytes], name, { type });

async function until(fn, what = 'condition', ms = 8000) {
  const end = Date.now() + ms;
  for (;;) {
    await settle();
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function setup({ xhr = 'manual', storage = new MemoryStorage(), clock = new FakeClock(), backend, idb = null } = {}) {
  backend = backend ?? new FakeBackend(clock);
  backend.origin = 'http://chat.test';
  if (!backend.convs.size) backend.addConversation('c1');
  const WS = makeFakeWebSocket(clock);
  const XHR = makeFakeXHR(xhr === 'auto' ? { backend } : {});
  let n = 0;
  const client = new ChatClient({
    baseUrl: 'http://chat.test',
    fetch: backend.fetch,
    WebSocket: WS,
    XMLHttpRequest: XHR,
    storage,
    indexedDB: idb,
    clock,
    document: new FakeDocument(),
    window: new FakeDocument(),
    locks: null,
    randomUUID: () => `tmp-${++n}`,
    logger: { warn() {}, debug() {}, error() {} },
  });
  await client.login({ email: 'me@example.com', password: 'pw' });
  return { clock, backend, WS, XHR, client, storage };
}

async function connect(ctx) {
  ctx.client.start();
  await settle();
  const ws = ctx.WS.last();
  ws.autoPong = true;
  ws.hello({ conversations: [...ctx.backend.convs.values()].map((c) => ({ conversation_id: c.conv.id, last_seq: c.conv.last_seq, unread_count: 0, delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 })) });
  await settle();
  return ws;
}

/** The PUT of the upload in flight, once it was made. */
async function nextPut(ctx, index = 0) {
  await until(() => ctx.XHR.instances.length > index, 'the PUT');
  return ctx.XHR.instances[index];
}

test('upload: upload-url with the file facts, PUT of the bytes without Authorization with progress, confirm, the AttachmentDto', async () => {
  const ctx = await setup();
  await connect(ctx);
  const progress = [];
  const run = ctx.client.uploadAttachment('c1', file(PNG, 'cat.png', 'image/png'), { onProgress: (p) => progress.push(`${p.loaded}/${p.total}`) });
  const xhr = await nextPut(ctx);
  const announce = ctx.backend.callsTo('POST', '/attachments/upload-url');
  assert.equal(announce.length, 1);
  assert.deepEqual(announce[0].body, { conversation_id: 'c1', filename: 'cat.png', mime_type: 'image/png', size: PNG.length });
  assert.match(announce[0].auth, /^Bearer /);
  assert.equal(xhr.method, 'PUT');
  const id = [...ctx.backend.attachments.keys()][0];
  // A server path is made absolute on the API's origin.
  assert.equal(xhr.url, `http://chat.test/api/v1/attachments/${id}/content?upload=1&sig=u${id.slice(-4)}`);
  assert.equal(xhr.headers.Authorization, undefined, 'never the access token on the PUT');
  assert.equal(xhr.headers['Content-Type'], 'image/png');
  xhr.progress(10, PNG.length);
  xhr.progress(20, PNG.length);
  // The fake server takes the bytes, then the client confirms.
  await ctx.backend.fetch(xhr.url, { method: 'PUT', body: await xhr.body.arrayBuffer().then((b) => new Uint8Array(b)) });
  xhr.respond(204);
  const dto = await run;
  assert.deepEqual(progress, [`0/${PNG.length}`, `10/${PNG.length}`, `20/${PNG.length}`, `${PNG.length}/${PNG.length}`]);
  assert.equal(ctx.backend.callsTo('POST', `/attachments/${id}/confirm`).length, 1);
  assert.equal(dto.id, id);
  assert.equal(dto.filename, 'cat.png');
  assert.equal(dto.width, 64);
  assert.equal(dto.height, 48);
  assert.ok(dto.thumbnail_url && dto.url);
  ctx.client.stop();
});

test('upload: an absolute (presigned) upload_url is used as it is', async () => {
  const ctx = await setup();
  await connect(ctx);
  ctx.backend.override = (method, path) =>
    method === 'POST' && path === '/attachments/upload-url' ? { status: 201, body: { attachment_id: 'a-s3', upload_url: 'https://bucket.s3.example/a-s3?X-Amz-Signature=abc', upload_method: 'PUT', expires_at: 'x' } } : null;
  const run = ctx.client.uploadAttachment('c1', file(PDF, 'doc.pdf', 'application/pdf'));
  const xhr = await nextPut(ctx);
  assert.equal(xhr.url, 'https://bucket.s3.example/a-s3?X-Amz-Signature=abc');
  ctx.backend.override = (method, path) => (path === '/attachments/a-s3/confirm' ? { body: { id: 'a-s3', filename: 'doc.pdf', mime_type: 'application/pdf', size: PDF.length, width: null, height: null, thumbnail_url: null, url: 'https://bucket/x' } } : null);
  xhr.respond(200);
  assert.equal((await run).id, 'a-s3');
  ctx.client.stop();
});

test('upload: cancelling aborts the PUT, rejects with code "aborted" and never confirms', async () => {
  const ctx = await setup();
  await connect(ctx);
  const controller = new AbortController();
  const run = ctx.client.uploadAttachment('c1', file(PNG, 'cat.png', 'image/png'), { signal: controller.signal });
  const xhr = await nextPut(ctx);
  xhr.progress(5, PNG.length);
  controller.abort();
  await assert.rejects(run, (err) => err.code === 'aborted');
  assert.equal(xhr.aborted, true);
  assert.equal(ctx.backend.callsTo('POST', '/attachments/').filter((c) => c.path.endsWith('/confirm')).length, 0);
  assert.equal(uploadErrorText({ code: 'aborted' }), 'Cancelled.');
  ctx.client.stop();
});

test('upload: a network error or 5xx on the PUT is retried with backoff (1 s, 2 s), then it succeeds', async () => {
  const ctx = await setup();
  await connect(ctx);
  const run = ctx.client.uploadAttachment('c1', file(PNG, 'cat.png', 'image/png'));
  const first = await nextPut(ctx, 0);
  first.fail();
  await settle();
  assert.equal(ctx.XHR.instances.length, 1, 'not retried before the backoff');
  await ctx.clock.advance(1000);
  const second = await nextPut(ctx, 1);
  assert.equal(second.url, first.url, 'the same upload URL');
  second.respond(503, { error: { code: 'unavailable', message: 'blob store down' } });
  await ctx.clock.advance(1999);
  assert.equal(ctx.XHR.instances.length, 2);
  await ctx.clock.advance(1);
  const third = await nextPut(ctx, 2);
  await ctx.backend.fetch(third.url, { method: 'PUT', body: PNG });
  third.respond(204);
  const dto = await run;
  assert.ok(dto.id);
  assert.equal(ctx.backend.callsTo('POST', '/attachments/upload-url').length, 1, 'announced once');
  ctx.client.stop();
});

test('upload: 429 at upload-url waits Retry-After, then goes on', async () => {
  const ctx = await setup({ xhr: 'auto' });
  await connect(ctx);
  let refused = 0;
  ctx.backend.override = (method, path) => {
    if (method === 'POST' && path === '/attachments/upload-url' && refused++ === 0) return { status: 429, body: { error: { code: 'rate_limited', message: 'slow down' } } };
    return null;
  };
  // Retry-After is read from headers: the fake answers without; the backoff (1 s) applies.
  const run = ctx.client.uploadAttachment('c1', file(PNG, 'cat.png', 'image/png'));
  await settle();
  assert.equal(ctx.backend.callsTo('POST', '/attachments/upload-url').length, 1);
  await ctx.clock.advance(1000);
  const dto = await run;
  assert.ok(dto.id);
  assert.equal(ctx.backend.callsTo('POST', '/attachments/upload-url').length, 2);
  ctx.client.stop();
});

test('upload: retries stop after three; the last error is the one reported', async () => {
  const ctx = await setup();
  await connect(ctx);
  const run = ctx.client.uploadAttachment('c1', file(PNG, 'cat.png', 'image/png'));
  const outcome = run.then(() => null, (e) => e);
  for (let i = 0; i < 4; i++) {
    const x = await nextPut(ctx, i);
    x.fail();
    await ctx.clock.advance(5000);
  }
  const err = await outcome;
  assert.equal(err.code, 'network');
  assert.equal(ctx.XHR.instances.length, 4, 'one try and three retries');
  ctx.client.stop();
});

test('upload: refusals are not retried (415 content_mismatch at confirm, 413 too_large, 415 type_not_allowed at upload-url)', async () => {
  const ctx = await setup({ xhr: 'auto' });
  await connect(ctx);
  // A renamed .exe declared as a PNG: the bytes go up, the confirm refuses them.
  await assert.rejects(ctx.client.uploadAttachment('c1', file(EXE, 'holiday.png', 'image/png')), (err) => err.status === 415 && err.code === 'content_mismatch');
  const confirms = ctx.backend.calls.filter((c) => c.path.endsWith('/confirm'));
  assert.equal(confirms.length, 1, 'confirmed once, not retried');
  await ctx.clock.advance(10_000);
  assert.equal(ctx.backend.calls.filter((c) => c.path.endsWith('/confirm')).length, 1);
  assert.match(uploadErrorText({ code: 'content_mismatch' }), /not what its name or type says/);

  ctx.backend.maxAttachmentBytes = 4;
  await assert.rejects(ctx.client.uploadAttachment('c1', file(PNG, 'big.png', 'image/png')), (err) => err.status === 413 && err.code === 'too_large');
  ctx.backend.maxAttachmentBytes = 1e9;
  await assert.rejects(ctx.client.uploadAttachment('c1', file(EXE, 'tool.exe', 'application/x-msdownload')), (err) => err.status === 415 && err.code === 'type_not_allowed');
  assert.equal(ctx.backend.callsTo('POST', '/attachments/upload-url').length, 3, 'each refusal asked once');
  ctx.client.stop();
});

test('send with attachments: the frame carries attachment_ids, the text may be empty, the pending copy shows the files', async () => {
  const ctx = await setup({ xhr: 'auto' });
  const ws = await connect(ctx);
  await ctx.client.openConversation('c1');
  const img = await ctx.client.uploadAttachment('c1', file(PNG, 'cat.png', 'image/png'));
  const pdf = await ctx.client.uploadAttachment('c1', file(PDF, 'notes.pdf', 'application/pdf'));
  assert.throws(() => ctx.client.send('c1', '   '), RangeError);
  const local = ctx.client.send('c1', '', { attachments: [img, pdf] });
  assert.deepEqual(local.attachments.map((a) => a.filename), ['cat.png', 'notes.pdf']);
  const frame = ws.framesOfType('message').at(-1);
  assert.deepEqual(frame, { type: 'message', conversation_id: 'c1', content: '', content_type: 'text', temp_id: local.temp_id, attachment_ids: [img.id, pdf.id] });
  // The ack (message_sent) keeps the files on the message.
  ws.receive({ type: 'message_sent', conversation_id: 'c1', message_id: 'm-1', temp_id: local.temp_id, seq: 1, created_at: new Date(ctx.clock.now()).toISOString() });
  await settle();
  const sent = ctx.client.messages('c1').at(-1);
  assert.equal(sent.id, 'm-1');
  assert.deepEqual(sent.attachments.map((a) => a.id), [img.id, pdf.id]);
  ctx.client.stop();
});

test('outbox: attachment_ids survive resends, a reload and the REST fallback (same temp_id)', async () => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const frames = [];
  const posts = [];
  const transport = {
    current: 'ws',
    mode: () => transport.current,
    sendFrame: (f) => transport.current === 'ws' && frames.push(f) > 0,
    post: async (conversationId, body) => {
      posts.push(body);
      return { id: 'srv-1', conversation_id: conversationId, seq: 1, sender_id: 'me', content: body.content, content_type: 'text', temp_id: body.temp_id, created_at: 'x', attachments: [] };
    },
  };
  const outbox = new Outbox({ transport, storage, clock, randomUUID: () => 'uuid-1', onChange: () => {} });
  const dto = { id: 'a-1', filename: 'cat.png', mime_type: 'image/png', size: 10, width: 4, height: 3, thumbnail_url: 't', url: 'u' };
  outbox.send('c1', '', 'text', null, undefined, { attachmentIds: ['a-1', 'a-2'], attachments: [dto] });
  await clock.advance(3500);
  assert.equal(frames.length, 3);
  assert.ok(frames.every((f) => f.temp_id === 'uuid-1' && JSON.stringify(f.attachment_ids) === '["a-1","a-2"]' && f.content === ''));
  outbox.stop();
  // A reload: the stored entry brings them back.
  const stored = JSON.parse(storage.getItem('chat.outbox.v1'));
  assert.deepEqual(stored[0].attachment_ids, ['a-1', 'a-2']);
  const again = new Outbox({ transport, storage, clock, randomUUID: () => 'uuid-x', onChange: () => {} });
  const [entry] = again.load();
  assert.deepEqual(entry.attachment_ids, ['a-1', 'a-2']);
  assert.deepEqual(entry.attachments, [dto]);
  // Polling mode: REST, same temp_id, same attachments.
  transport.current = 'rest';
  again.flush();
  await settle();
  assert.deepEqual(posts, [{ content: '', content_type: 'text', temp_id: 'uuid-1', attachment_ids: ['a-1', 'a-2'] }]);
  assert.equal(again.entries.size, 0);
  // Text-only entries stay as they were (no attachment_ids key).
  frames.length = 0;
  const plain = new Outbox({ transport: { mode: () => 'ws', sendFrame: (f) => frames.push(f) > 0, post: transport.post }, storage: new MemoryStorage(), clock, randomUUID: () => 'uuid-2', onChange: () => {} });
  plain.send('c1', 'hi');
  assert.deepEqual(frames[0], { type: 'message', conversation_id: 'c1', content: 'hi', content_type: 'text', temp_id: 'uuid-2' });
  plain.stop();
});

test('a refused send (attachment_unavailable) fails for good', async () => {
  const clock = new FakeClock();
  const changes = [];
  const transport = { mode: () => 'ws', sendFrame: () => true, post: async () => ({}) };
  const outbox = new Outbox({ transport, clock, randomUUID: () => 'u1', onChange: (e, c) => changes.push(`${c}:${e.status}`) });
  const e = outbox.send('c1', '', 'text', null, undefined, { attachmentIds: ['a-1'] });
  outbox.rejected('u1', 'attachment_unavailable', 'not an attachment of yours');
  assert.equal(e.status, 'failed');
  outbox.stop();
});

test('history and live messages carry their attachments; refreshAttachment puts fresh links in', async () => {
  const ctx = await setup();
  const a = ctx.backend.addAttachment('c1', 'u-b', { filename: 'sunset.png', mime_type: 'image/png', bytes: PNG, width: 64, height: 48 });
  ctx.backend.addMessage('c1', 'u-b', 'look', null, null, [a.id]);
  const ws = await connect(ctx);
  await ctx.client.openConversation('c1');
  const m = ctx.client.messages('c1')[0];
  assert.equal(m.attachments[0].filename, 'sunset.png');
  assert.equal(m.attachments[0].width, 64);
  const b = ctx.backend.addAttachment('c1', 'u-b', { filename: 'report.pdf', mime_type: 'application/pdf', bytes: PDF });
  const live = ctx.backend.addMessage('c1', 'u-b', '', null, null, [b.id]);
  ws.receive({ type: 'message', message: ctx.backend.messageJson('c1', live) });
  await settle();
  assert.equal(ctx.client.messages('c1').at(-1).attachments[0].mime_type, 'application/pdf');
  const before = m.attachments[0].url;
  ctx.backend.attachmentSeq++; // the server signs anew
  const fresh = await ctx.client.refreshAttachment('c1', m.id, a.id);
  assert.notEqual(fresh.url, before);
  assert.equal(ctx.client.messages('c1')[0].attachments[0].url, fresh.url);
  ctx.client.stop();
});

test('file encryption: round trip, a fresh key and IV each time, tampering and the wrong key fail', async () => {
  const data = new TextEncoder().encode('the bytes of a file '.repeat(100));
  const a = await encryptFile(data);
  const b = await encryptFile(data);
  assert.notEqual(a.rawKey, b.rawKey);
  assert.notEqual(a.iv, b.iv);
  assert.equal(a.ciphertext.length, data.length + 16);
  assert.deepEqual(await decryptFile(a.ciphertext, { key: a.rawKey, iv: a.iv }), data);
  // A thumbnail: the same key, another IV.
  const t = await encryptFile(new Uint8Array([1, 2, 3]), { key: a.key });
  assert.equal(t.rawKey, a.rawKey);
  assert.notEqual(t.iv, a.iv);
  assert.deepEqual(await decryptFile(t.ciphertext, { key: a.rawKey, iv: t.iv }), new Uint8Array([1, 2, 3]));
  const bad = a.ciphertext.slice();
  bad[5] ^= 1;
  await assert.rejects(decryptFile(bad, { key: a.rawKey, iv: a.iv }), (e) => e.code === 'tampered');
  await assert.rejects(decryptFile(a.ciphertext, { key: b.rawKey, iv: a.iv }), (e) => e.code === 'tampered');
  await assert.rejects(decryptFile(a.ciphertext, { key: 'short', iv: a.iv }), (e) => e.code === 'malformed');
});

test('encrypted plaintext: text alone stays text (old messages); with files a versioned JSON read back only when the message has attachments', () => {
  assert.equal(messagePlaintext('hello', []), 'hello');
  const files = [{ attachment_id: 'a1', thumbnail_attachment_id: 'a2', key: 'k', iv: 'i', thumb_iv: 'j', name: 'cat.png', type: 'image/png', size: 3, width: 4, height: 5 }];
  const p = messagePlaintext('look', files);
  assert.deepEqual(parsePlaintext(p, true), { text: 'look', files });
  // Without attachments on the message (or not our JSON), it is text as written.
  assert.deepEqual(parsePlaintext(p, false), { text: p, files: [] });
  assert.deepEqual(parsePlaintext('{"not":"ours"}', true), { text: '{"not":"ours"}', files: [] });
  assert.deepEqual(parsePlaintext('{broken', true), { text: '{broken', files: [] });
  assert.equal(humanSize(999), '999 B');
  assert.equal(humanSize(1234), '1.2 kB');
  assert.equal(humanSize(5_300_000), '5.3 MB');
  assert.equal(fileKind('application/pdf'), 'pdf');
  assert.equal(fileKind('application/vnd.openxmlformats-officedocument.wordprocessingml.document'), 'doc');
  assert.equal(fileKind('image/png'), 'image');
  assert.equal(fileKind('application/zip'), 'file');
  assert.equal(typeOf({ name: 'Report.DOCX', type: '' }), 'application/vnd.openxmlformats-officedocument.wordprocessingml.document');
  assert.equal(typeOf({ name: 'x.png', type: 'image/png' }), 'image/png');
  assert.equal(typeOf({ name: 'archive.tar', type: '' }), 'application/octet-stream');
});

test('encrypted conversation: the file is encrypted before upload (encrypted.bin, octet-stream), the envelope carries its key, the reader decrypts it', async () => {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  const conv = backend.addConversation('c1', { members: ['u-me', 'u-b'] });
  Object.assign(conv, { encrypted: true, key_version: 0, rotation_needed: false });
  const server = e2eeServer(backend);
  const bobKeys = await generateDeviceKeys();
  const bob = { ...server.addDevice('u-b', bobKeys.publicRaw, 'Bob phone'), ...bobKeys };
  const key = await generateConversationKey();
  await server.storeKey('c1', 1, key, bob, [bob]);
  server.grants.push({ convId: 'c1', version: 1, key, from: bob });
  // The text envelope of before: still decrypts.
  const old = backend.addMessage('c1', 'u-b', await encryptMessage({ key, version: 1, plaintext: 'an old message', conversationId: 'c1' }));
  old.content_type = 'encrypted';

  const ctx = await setup({ clock, backend, xhr: 'auto', idb: new FakeIndexedDB() });
  ctx.client.start();
  await until(() => ctx.client.e2ee?.device, 'the device registered');
  const ws = ctx.WS.last();
  ws.autoPong = true;
  ws.hello({ conversations: [{ conversation_id: 'c1', last_seq: 1, unread_count: 0, delivered_seq: 1, read_seq: 1, peer_delivered_seq: 0, peer_read_seq: 0 }] });
  await settle();
  await ctx.client.openConversation('c1');
  await until(() => ctx.client.messages('c1')[0]?.e2ee?.state === 'ok', 'the old message decrypted');
  assert.equal(ctx.client.messages('c1')[0].content, 'an old message');
  assert.equal(ctx.client.messages('c1')[0].e2ee.files, undefined);

  const secret = new TextEncoder().encode('%PDF-1.4 a confidential report');
  const up = await ctx.client.uploadAttachment('c1', file(secret, 'salaries.pdf', 'application/pdf'));
  const announce = backend.callsTo('POST', '/attachments/upload-url').at(-1);
  assert.deepEqual(announce.body, { conversation_id: 'c1', filename: 'encrypted.bin', mime_type: 'application/octet-stream', size: secret.length + 16 });
  const stored = backend.attachments.get(up.file.attachment_id);
  assert.equal(stored.filename, 'encrypted.bin');
  assert.ok(!Buffer.from(stored.bytes).toString('latin1').includes('confidential'), 'the server holds ciphertext');
  assert.equal(up.filename, 'salaries.pdf');
  assert.deepEqual(up.attachment_ids, [up.file.attachment_id], 'no thumbnail for a PDF (and none without a canvas)');

  const local = ctx.client.send('c1', 'the report', { attachments: [up] });
  assert.equal(local.content, 'the report');
  await until(() => ws.framesOfType('message').length === 1, 'the encrypted send');
  const frame = ws.framesOfType('message')[0];
  assert.equal(frame.content_type, 'encrypted');
  assert.deepEqual(frame.attachment_ids, [up.file.attachment_id]);
  assert.ok(!JSON.stringify(frame).includes('salaries'), 'the real name is inside the ciphertext only');
  const plain = JSON.parse(await decryptMessage({ key, envelope: frame.content, conversationId: 'c1' }));
  assert.equal(plain.text, 'the report');
  assert.equal(plain.files[0].name, 'salaries.pdf');
  assert.equal(plain.files[0].type, 'application/pdf');
  assert.equal(plain.files[0].size, secret.length);
  // Our own pending copy shows the text and knows the file.
  const pending = ctx.client.messages('c1').at(-1);
  assert.equal(pending.content, 'the report');
  assert.equal(pending.e2ee.files[0].name, 'salaries.pdf');

  // Bob sends one back the same way (his client played here): the reader decrypts text and file.
  const bobFile = await encryptFile(new TextEncoder().encode('bob secret bytes'));
  const att = backend.addAttachment('c1', 'u-b', { filename: 'encrypted.bin', mime_type: 'application/octet-stream', bytes: bobFile.ciphertext });
  const files = [{ attachment_id: att.id, key: bobFile.rawKey, iv: bobFile.iv, name: 'plan.txt', type: 'text/plain', size: 16 }];
  const m = backend.addMessage('c1', 'u-b', await encryptMessage({ key, version: 1, plaintext: messagePlaintext('', files), conversationId: 'c1' }), null, null, [att.id]);
  m.content_type = 'encrypted';
  ws.receive({ type: 'message', message: backend.messageJson('c1', m) });
  await until(() => ctx.client.message('c1', m.id)?.e2ee?.state === 'ok', 'decrypted');
  const held = ctx.client.message('c1', m.id);
  assert.equal(held.content, '');
  assert.equal(held.e2ee.files[0].name, 'plan.txt');
  const url = await ctx.client.decryptedFileUrl('c1', m.id, held.e2ee.files[0]);
  assert.match(url, /^blob:/);
  const blob = await (await fetch(url)).blob().catch(async () => null);
  if (blob) assert.equal(await blob.text(), 'bob secret bytes');
  ctx.client.stop();
});

test('upload without XMLHttpRequest: the PUT goes by fetch (no Authorization), progress at the start and the end', async () => {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  backend.origin = 'http://chat.test';
  backend.addConversation('c1');
  const client = new ChatClient({ baseUrl: 'http://chat.test', fetch: backend.fetch, WebSocket: null, XMLHttpRequest: null, storage: new MemoryStorage(), indexedDB: null, clock, document: new FakeDocument(), window: new FakeDocument(), locks: null, logger: { warn() {}, debug() {}, error() {} } });
  await client.login({ email: 'me@example.com', password: 'pw' });
  await client.start();
  const progress = [];
  const dto = await client.uploadAttachment('c1', file(PDF, 'notes.pdf', 'application/pdf'), { onProgress: (p) => progress.push(p.loaded) });
  assert.equal(dto.filename, 'notes.pdf');
  const put = backend.calls.find((c) => c.method === 'PUT');
  assert.equal(put.auth, null);
  assert.deepEqual(progress, [0, PDF.length]);
  assert.deepEqual(backend.attachments.get(dto.id).bytes, PDF);
  client.stop();
});
