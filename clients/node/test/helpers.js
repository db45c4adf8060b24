// Test servers for the client's unit tests: no floodgate needed.
import http from 'node:http';
import net from 'node:net';

/** An http server on a free loopback port (or on socketPath); handler(req, body) returns [status, json, headers]. */
export async function fakeServer(handler, { socketPath, port = 0, create = http.createServer, options = {} } = {}) {
  const seen = [];
  const st = { connections: 0 };
  const srv = create(options, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString();
      const body = raw ? JSON.parse(raw) : undefined;
      seen.push({ method: req.method, url: req.url, body, headers: req.headers });
      const [status, json, headers = {}] = await handler(req, body);
      const out = json === undefined ? '' : typeof json === 'string' ? json : JSON.stringify(json);
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(out);
    });
  });
  srv.on(create === http.createServer ? 'connection' : 'secureConnection', () => st.connections++);
  await new Promise((resolve) => (socketPath ? srv.listen(socketPath, resolve) : srv.listen(port, '127.0.0.1', resolve)));
  const scheme = create === http.createServer ? 'http' : 'https';
  return {
    url: socketPath ? `unix://${socketPath}` : `${scheme}://127.0.0.1:${srv.address().port}`,
    port: socketPath ? undefined : srv.address().port,
    seen,
    st,
    close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(r); }),
  };
}

/**
 * A raw HTTP/1.1 server counting the requests it read and the connections
 * it accepted. mode "reset-second": the second request read on a
 * connection is dropped unanswered (the server read it, then the connection
 * died); mode "close-idle": each connection is closed closeMs after its
 * answer (an idle timeout).
 */
export async function rawServer(mode, { closeMs = 50, onChange = () => {} } = {}) {
  const st = { requests: 0, connections: 0 };
  const socks = new Set();
  const srv = net.createServer((sock) => {
    st.connections++;
    onChange(st);
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    let n = 0;
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      for (;;) {
        const h = buf.indexOf('\r\n\r\n');
        if (h < 0) return;
        const m = /content-length: (\d+)/i.exec(buf.slice(0, h));
        const end = h + 4 + (m ? Number(m[1]) : 0);
        if (buf.length < end) return;
        buf = buf.slice(end);
        st.requests++;
        onChange(st);
        n++;
        if (mode === 'reset-second' && n === 2) {
          sock.destroy();
          return;
        }
        const body = '{"allowed":true,"reason":"none","remaining":1,"retry_after_ms":0,"reset_after_ms":1000,"degraded":false,"cached":false}';
        sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        if (mode === 'close-idle') setTimeout(() => sock.end(), closeMs);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    st,
    close: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(r); }),
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Blocks the event loop (as a busy handler would), so nothing arriving meanwhile is read. */
export function block(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

export const DECISION = { allowed: true, reason: 'none', remaining: 19, retry_after_ms: 0, reset_after_ms: 3600000, degraded: false, cached: false };

/** rawServer in a child process; st follows its counts. */
export async function rawServerProcess(mode, { closeMs = 50 } = {}) {
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  const child = spawn(process.execPath, [new URL('../testdata/raw-server-child.js', import.meta.url).pathname, mode, String(closeMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const st = { requests: 0, connections: 0 };
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`raw server exited: ${code}`)));
    lines.on('line', (l) => (l.startsWith('http') ? resolve(l) : Object.assign(st, JSON.parse(l))));
  });
  return {
    url,
    st,
    // settled waits until the child's counts have stopped changing.
    settled: () => new Promise((r) => setTimeout(r, 200)),
    close: () => new Promise((r) => { child.once('exit', r); child.kill(); }),
  };
}
