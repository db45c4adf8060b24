#!/usr/bin/env node
// What a unix socket saves against TCP loopback, for this client: p50 of
// allow over each, in one run, alternating rounds.
//
//   node bench-transport.js --url http://127.0.0.1:8080 --url unix:///run/floodgate.sock [calls per side]
//
// (or FLOODGATE_URL_TCP and FLOODGATE_URL_UNIX): the first URL TCP, the
// second the unix socket, of two servers on one Redis.
//
// Without the two URLs it measures against a stub server (a child Node
// process answering a fixed decision on both), which isolates the
// transport: the server's own work is the same on both sides.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from './index.js';

const args = process.argv.slice(2);
const urls = args.flatMap((a, i) => (args[i - 1] === '--url' ? [a] : []));
const n = Number(args.find((a, i) => a !== '--url' && args[i - 1] !== '--url') || 4000);
const rounds = 20;
let tcp = urls[0] || process.env.FLOODGATE_URL_TCP;
let unix = urls[1] || process.env.FLOODGATE_URL_UNIX;
let child = null;
let dir = null;
if (!tcp || !unix) {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-bench-'));
  const sock = path.join(dir, 'stub.sock');
  const stub = `
    const http = require('node:http');
    const body = '{"allowed":true,"reason":"none","remaining":19,"retry_after_ms":0,"reset_after_ms":3600000,"degraded":false,"cached":false}\\n';
    const h = (q, s) => { q.resume(); q.on('end', () => { s.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length }); s.end(body); }); };
    const a = http.createServer(h), b = http.createServer(h);
    a.listen(0, '127.0.0.1', () => b.listen(${JSON.stringify(sock)}, () => console.log(a.address().port)));`;
  child = spawn(process.execPath, ['-e', stub], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())));
  tcp = `http://127.0.0.1:${port}`;
  unix = `unix://${sock}`;
}
const token = process.env.FLOODGATE_HTTP_TOKEN || undefined;
const clients = { tcp: new Client({ baseUrl: tcp, token }), unix: new Client({ baseUrl: unix, token }) };
const times = { tcp: [], unix: [] };
const run = Date.now().toString(36);
async function side(name, round, count) {
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await clients[name].allow(`bench-${run}-${name}-${round}-${i}`);
    times[name].push(Number(process.hrtime.bigint() - t0) / 1000);
  }
}
await side('tcp', 'w', 200);
await side('unix', 'w', 200);
times.tcp.length = 0;
times.unix.length = 0;
for (let r = 0; r < rounds; r++) {
  for (const name of r % 2 ? ['unix', 'tcp'] : ['tcp', 'unix']) await side(name, r, Math.ceil(n / rounds));
}
for (const c of Object.values(clients)) c.close();
child?.kill();
if (dir) fs.rmSync(dir, { recursive: true, force: true });
const pct = (a, p) => a.slice().sort((x, y) => x - y)[Math.floor((a.length - 1) * p)];
const out = { server: child ? 'node stub' : 'floodgate serve' };
for (const k of ['tcp', 'unix']) out[k] = { calls: times[k].length, p50_us: Math.round(pct(times[k], 0.5)), p99_us: Math.round(pct(times[k], 0.99)) };
out.unix_saves_p50_us = out.tcp.p50_us - out.unix.p50_us;
out.ratio_unix_to_tcp_p50 = Number((out.unix.p50_us / out.tcp.p50_us).toFixed(2));
console.log(JSON.stringify(out));
