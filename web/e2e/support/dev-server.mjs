// Development and test helper: serves web/ the way the chat server does (web/app/index.html at
// `/`, every file of web/ under its path) and forwards the API, health checks and WebSocket
// upgrades to a running chat server. Use it while the server binary does not embed web/ yet,
// or to work on the client without rebuilding the server:
//
//   node e2e/support/dev-server.mjs --upstream http://127.0.0.1:8080 --port 5173
//
// Host and Origin are rewritten to the upstream's, so the server's same-origin checks pass.

import http from 'node:http';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};
const FORWARDED = /^\/(api\/|ws(\/|\?|$)|healthz|readyz|metrics)/;
/** The chat server's Content-Security-Policy (crates/server/src/web.rs), so pages served here obey the same rules. */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/**
 * @param {{upstream: string, port?: number, host?: string}} opts
 * @returns {Promise<{url: string, close: () => Promise<void>}>}
 */
export async function startDevServer({ upstream, port = 0, host = '127.0.0.1' }) {
  const target = new URL(upstream);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (FORWARDED.test(url.pathname)) return forward(req, res, target);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    const rel = url.pathname === '/' ? 'app/index.html' : decodeURIComponent(url.pathname).replace(/^\/+/, '');
    const file = normalize(join(WEB_ROOT, rel));
    if (!file.startsWith(WEB_ROOT + sep) || rel.startsWith('node_modules') || rel.startsWith('e2e') || rel.startsWith('test')) {
      res.writeHead(404).end('not found');
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-cache', ...(extname(file) === '.html' ? { 'Content-Security-Policy': CONTENT_SECURITY_POLICY } : {}) });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  server.on('upgrade', (req, socket, head) => {
    const upstreamSocket = net.connect(Number(target.port || 80), target.hostname, () => {
      const headers = { ...req.headers, host: target.host };
      if (headers.origin) headers.origin = target.origin;
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (const [k, v] of Object.entries(headers)) for (const value of [].concat(v)) raw += `${k}: ${value}\r\n`;
      upstreamSocket.write(`${raw}\r\n`);
      if (head?.length) upstreamSocket.write(head);
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    const end = () => {
      socket.destroy();
      upstreamSocket.destroy();
    };
    upstreamSocket.on('error', end);
    socket.on('error', end);
    socket.on('close', end);
    upstreamSocket.on('close', end);
  });
  await new Promise((r) => server.listen(port, host, r));
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {URL} target */
function forward(req, res, target) {
  const headers = { ...req.headers, host: target.host };
  if (headers.origin) headers.origin = target.origin;
  const out = http.request({ host: target.hostname, port: target.port || 80, method: req.method, path: req.url, headers }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
  });
  out.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'bad_gateway', message: 'the chat server is not answering' } }));
  });
  req.pipe(out);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const { url } = await startDevServer({ upstream: arg('upstream', 'http://127.0.0.1:8080'), port: Number(arg('port', '5173')) });
  console.log(`web client on ${url} (API and WebSocket forwarded to ${arg('upstream', 'http://127.0.0.1:8080')})`);
}
