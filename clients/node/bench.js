#!/usr/bin/env node
// The Node figure: p50 of Client.allow against a bare fetch loop sending
// the same request (POST /v1/users/{user}/allow, kept alive) to the same
// server, in one run, alternating rounds so that both see the same machine.
//
//   FLOODGATE_URL=http://127.0.0.1:8080 node bench.js [calls per side, default 4000]
//
// Every call is a new user, so both sides run the full decision script.
import { Client } from './index.js';

const url = process.env.FLOODGATE_URL || 'http://127.0.0.1:8080';
const token = process.env.FLOODGATE_HTTP_TOKEN || undefined;
const n = Number(process.argv[2] || 4000);
const rounds = 20;
const run = Date.now().toString(36);
const fg = new Client({ baseUrl: url, token });
const headers = { Accept: 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) };

async function bare(user) {
  const res = await fetch(`${url}/v1/users/${user}/allow`, { method: 'POST', headers, signal: AbortSignal.timeout(2000) });
  const d = await res.json();
  if (typeof d.allowed !== 'boolean') throw new Error('bad answer');
}

async function client(user) {
  await fg.allow(user);
}

const times = { client: [], fetch: [] };
async function side(name, fn, round, count) {
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await fn(`bench-${run}-${name}-${round}-${i}`);
    times[name].push(Number(process.hrtime.bigint() - t0) / 1000);
  }
}

// Warm both (connections, JIT), then measure.
await side('client', client, 'w', 200);
await side('fetch', bare, 'w', 200);
times.client.length = 0;
times.fetch.length = 0;
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [['fetch', bare], ['client', client]] : [['client', client], ['fetch', bare]];
  for (const [name, fn] of order) await side(name, fn, r, Math.ceil(n / rounds));
}
fg.close();
const pct = (a, p) => a.slice().sort((x, y) => x - y)[Math.floor((a.length - 1) * p)];
const out = {};
for (const k of ['client', 'fetch']) out[k] = { calls: times[k].length, p50_us: Math.round(pct(times[k], 0.5)), p99_us: Math.round(pct(times[k], 0.99)) };
out.ratio_p50 = Number((out.client.p50_us / out.fetch.p50_us).toFixed(2));
out.node = process.version;
console.log(JSON.stringify(out));
