// A scripted server for browser tests that need no chat server: the REST API is answered by the
// unit tests' in-memory backend (web/test/fakes.js) and the WebSocket is played here, so every
// frame is chosen by the test. What outage tests need too: the whole server can be taken down
// (every API call refused at the network level, every socket closed and refused) and brought
// back, pings can go unanswered, and the socket answers `sync` from the backend's history as
// the server does.

import { before, after } from 'node:test';
import { FakeBackend } from '../../test/fakes.js';
import { launchBrowser } from './harness.mjs';
import { startDevServer } from './dev-server.mjs';

/**
 * For a test file: a dev server for the client's static files and a browser, started before
 * its tests and closed after them. Returns `scripted(opts)`, which opens a scripted context.
 * @returns {(opts?: {viewport?: {width: number, height: number}, ack?: boolean, hasTouch?: boolean}) => ReturnType<typeof scriptedServer>}
 */
export function scriptedSuite() {
  /** @type {import('playwright-core').Browser|null} */
  let browser = null;
  /** @type {{url: string, close: () => Promise<void>}|null} */
  let web = null;
  before(async () => {
    // Static files only: every API call and the socket are intercepted.
    web = await startDevServer({ upstream: 'http://127.0.0.1:9' });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await web?.close();
  });
  return (opts) => {
    if (!browser || !web) throw new Error('scriptedSuite: used outside a test');
    return scriptedServer(browser, web.url, opts);
  };
}

/**
 * @param {import('playwright-core').Browser} browser
 * @param {string} baseUrl   where the web client is served (the dev server)
 * @param {{viewport?: {width: number, height: number}, ack?: boolean, hasTouch?: boolean}} [opts]  `hasTouch`: a phone (touch events, mobile viewport)
 */
export async function scriptedServer(browser, baseUrl, { viewport = { width: 1280, height: 800 }, ack = true, hasTouch = false } = {}) {
  const backend = new FakeBackend({ now: () => Date.now() });
  const ctx = await browser.newContext({ viewport, hasTouch, isMobile: hasTouch });
  /** Frames the page sent, in order. @type {any[]} */
  const sent = [];
  /** Open sockets. @type {Set<import('playwright-core').WebSocketRoute>} */
  const sockets = new Set();
  // What a REST change makes the server send: the frame reaches every session, ours included.
  backend.onChange = (frame) => {
    for (const ws of sockets) ws.send(JSON.stringify(frame));
  };
  /** `down`: the server is unreachable. `ack`: messages are acknowledged. Counters of what was refused. */
  const state = { ack, pong: true, down: false, refusedRequests: 0, refusedSockets: 0, /** @type {Promise<void>|null} */ holdUploads: null, uploads: 0 };

  await ctx.route('**/api/v1/**', async (route) => {
    if (state.down) {
      state.refusedRequests++;
      await route.abort('connectionrefused');
      return;
    }
    const req = route.request();
    // An attachment's bytes go up and come down as they are (binary), not as JSON.
    const content = /\/attachments\/[^/]+\/content$/.test(new URL(req.url()).pathname);
    if (content && req.method() === 'PUT') {
      state.uploads++;
      if (state.holdUploads) await state.holdUploads;
    }
    const headers = req.headers();
    const body = content && req.method() === 'PUT' ? new Uint8Array(req.postDataBuffer() ?? []) : (req.postData() ?? undefined);
    const res = await backend.fetch(req.url(), { method: req.method(), headers: { ...headers, ...(headers.authorization ? { Authorization: headers.authorization } : {}) }, body });
    await route.fulfill({ status: res.status, headers: { 'content-type': res.headers.get('content-type') || 'application/json' }, body: Buffer.from(await res.arrayBuffer()) }).catch(() => {});
  });

  await ctx.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    if (state.down) {
      state.refusedSockets++;
      ws.close({ code: 3000, reason: 'server down (test)' }).catch(() => {});
      return;
    }
    sockets.add(ws);
    ws.onClose(() => sockets.delete(ws));
    const send = (/** @type {any} */ frame) => ws.send(JSON.stringify(frame));
    ws.onMessage((data) => {
      const f = JSON.parse(String(data));
      sent.push(f);
      if (f.type === 'ping' && state.pong) send({ type: 'pong' });
      if (f.type === 'message' && state.ack) {
        // Stored once per temp_id, as the server does.
        const c = backend.convs.get(f.conversation_id);
        let m = c.messages.find((/** @type {any} */ x) => x.temp_id === f.temp_id);
        if (!m) {
          m = backend.addMessage(f.conversation_id, backend.me.id, f.content, f.temp_id, f.reply_to ?? null, f.attachment_ids ?? []);
          m.content_type = f.content_type ?? 'text';
        }
        send({ type: 'message_sent', conversation_id: m.conversation_id, message_id: m.id, temp_id: f.temp_id, seq: m.seq, created_at: m.created_at });
      }
      if (f.type === 'sync') {
        /** @type {Record<string, any>} */
        const done = {};
        for (const [id, cursor] of Object.entries(f.cursors ?? {})) {
          const c = backend.convs.get(id);
          if (!c) continue;
          for (const m of c.messages) if (m.seq > Number(cursor)) send({ type: 'message', message: backend.messageJson(id, m) });
          const after = f.changes?.[id];
          if (typeof after === 'number') for (const frame of backend.changesAfter(id, after)) send(frame);
          done[id] = { last_seq: c.conv.last_seq, has_more: false, ...(typeof after === 'number' ? { last_change: c.changeSeq } : {}), delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 };
        }
        send({ type: 'sync_done', conversations: done });
      }
    });
    send({
      type: 'hello',
      user: backend.me,
      session_id: 's',
      server_time: new Date().toISOString(),
      heartbeat_interval_ms: 30000,
      conversations: [...backend.convs.values()].map((c) => ({ conversation_id: c.conv.id, last_seq: c.conv.last_seq, last_change: c.changeSeq, unread_count: 0, delivered_seq: c.conv.last_seq, read_seq: c.conv.last_seq, peer_delivered_seq: 0, peer_read_seq: 0 })),
    });
  });

  const page = await ctx.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  return {
    backend,
    ctx,
    page,
    sent,
    state,
    errors,
    /** A frame to the page on its newest socket. @param {any} frame */
    push(frame) {
      const ws = [...sockets].at(-1);
      if (!ws) throw new Error('no socket is open');
      ws.send(JSON.stringify(frame));
    },
    /** The server closes the newest socket with `code`. @param {number} code @param {string} [reason] */
    async close(code, reason = '') {
      const ws = [...sockets].at(-1);
      if (!ws) throw new Error('no socket is open');
      await ws.close({ code, reason });
    },
    /** The server goes away: requests are refused and every socket is closed. */
    async goDown() {
      state.down = true;
      for (const ws of [...sockets]) await ws.close({ code: 3001, reason: 'network lost (test)' }).catch(() => {});
      sockets.clear();
    },
    /** The server is back (the page reconnects on its own schedule, or when told to). */
    comeBack() {
      state.down = false;
    },
    async signIn() {
      await page.goto(`${baseUrl}/`);
      await page.getByLabel('Email').fill('me@example.com');
      await page.getByLabel('Password').fill('secret-password');
      await page.locator('form.auth-form button[type=submit]').click();
      await page.waitForFunction(() => /** @type {any} */ (window).chatClient?.state === 'connected');
    },
  };
}
