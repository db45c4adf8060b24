// The client against small Node servers: shapes, errors, timeouts, the
// never-twice resend rules, unix sockets and TLS. No floodgate needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Client, Denied, FloodgateError, Lease, LeaseLost, Reservation, StaleReservation, TransportError } from '../index.js';
import { block, DECISION, fakeServer, rawServer, rawServerProcess, sleep } from './helpers.js';

const here = path.dirname(new URL(import.meta.url).pathname);

test('constructor refuses bad options with a message naming them', () => {
  assert.throws(() => new Client({ baseUrl: 'ftp://x' }), /baseUrl must be http\(s\):\/\/host:port or unix/);
  assert.throws(() => new Client({ baseUrl: 'not a url' }), /baseUrl/);
  assert.throws(() => new Client({ baseUrl: 'http://u:p@host:1' }), /baseUrl/);
  assert.throws(() => new Client({ baseUrl: 'unix://host/x.sock' }), /unix:\/\/\/absolute\/path.sock/);
  assert.throws(() => new Client({ timeoutMs: 0 }), /timeoutMs must be a number of milliseconds > 0/);
  assert.throws(() => new Client({ timeoutMs: NaN }), /timeoutMs/);
  assert.throws(() => new Client({ token: 'has space' }), /token must be a string without spaces/);
  assert.throws(() => new Client({ token: 'ctl\x00byte' }), /token must be a string without spaces/);
  assert.throws(() => new Client({ token: 'caf\u00e9' }), /printable ASCII/);
  assert.throws(() => new Client({ ca: 'x' }), /ca applies to https/);
  assert.throws(() => new Client({ maxSockets: 0 }), /maxSockets/);
  const c = new Client({ token: 'secret-token-1234567' });
  assert.equal(String(c), 'Client(http://127.0.0.1:8080)');
  assert.ok(!JSON.stringify(c).includes('secret'), 'the token never shows');
  c.close();
});

test('allow: one path segment per id, camelCase result, token, keep-alive', async () => {
  const srv = await fakeServer(() => [200, DECISION]);
  const fg = new Client({ baseUrl: srv.url, token: 'tok-0123456789abcdef' });
  try {
    const d = await fg.allow('a/b.c ü');
    assert.deepEqual(d, { allowed: true, reason: 'none', remaining: 19, retryAfterMs: 0, resetAfterMs: 3600000, degraded: false, cached: false });
    assert.equal(srv.seen[0].url, '/v1/users/a%2Fb%2Ec%20%C3%BC/allow');
    assert.equal(srv.seen[0].method, 'POST');
    assert.equal(srv.seen[0].headers.authorization, 'Bearer tok-0123456789abcdef');
    await fg.allow('..');
    assert.equal(srv.seen[1].url, '/v1/users/%2E%2E/allow');
    await fg.allow(new Uint8Array([0xff, 0x2f]));
    assert.equal(srv.seen[2].url, '/v1/users/%FF%2F/allow');
    for (let i = 0; i < 5; i++) await fg.allow('x');
    assert.equal(srv.st.connections, 1, 'eight sequential calls share one kept-alive connection');
    fg.close();
    assert.equal((await fg.allow('x')).allowed, true, 'a call after close() opens a new connection');
    assert.equal(srv.st.connections, 2);
    await assert.rejects(fg.allow(''), RangeError);
    await assert.rejects(fg.allow(42), /user must be a string or Uint8Array, got number/);
    await assert.rejects(fg.allow('bad\uD800'), /lone surrogate/);
    assert.equal(srv.seen.length, 9, 'bad ids are refused before sending');
  } finally {
    fg.close();
    await srv.close();
  }
});

test('denials are decisions; error statuses are classed errors', async () => {
  const answers = {
    '/v1/users/denied/allow': [200, { ...DECISION, allowed: false, reason: 'window', retry_after_ms: 6000 }, { 'Retry-After': '6' }],
    '/v1/users/closed/allow': [503, { allowed: false, reason: 'redis_down', remaining: 0, retry_after_ms: 1000, degraded: true, cached: false, error: 'redis down' }],
    '/v1/users/auth/allow': [401, { error: 'missing or wrong bearer token' }],
    '/v1/slots/p/refresh': [409, { error: 'lease lost' }],
    '/v1/buckets/b/wait': [429, { error: 'too many requests waiting' }, { 'Retry-After': '1' }],
    '/v1/users/garbage/allow': [200, 'not json'],
    '/v1/users/array/allow': [200, [1]],
    '/v1/users/down': [503, { error: 'redis: connection refused' }],
  };
  const srv = await fakeServer((req) => answers[req.url] ?? [404, { error: 'no such route' }]);
  const fg = new Client({ baseUrl: srv.url });
  try {
    const d = await fg.allow('denied');
    assert.equal(d.allowed, false);
    assert.equal(d.reason, 'window');
    assert.equal(d.retryAfterMs, 6000);
    const c = await fg.allow('closed');
    assert.deepEqual([c.allowed, c.reason, c.degraded, c.retryAfterMs], [false, 'redis_down', true, 1000]);
    assert.equal('error' in c, false, 'error is for allowMany entries only');
    await assert.rejects(fg.allow('auth'), (e) => e instanceof FloodgateError && e.status === 401 && e.message === 'missing or wrong bearer token');
    await assert.rejects(fg.lease('p', 'r.x.y').refresh(), (e) => e instanceof LeaseLost && e.status === 409);
    await assert.rejects(fg.wait('b'), (e) => e.status === 429 && e.retryAfterMs === 1000);
    await assert.rejects(fg.allow('garbage'), /server sent invalid JSON/);
    await assert.rejects(fg.allow('array'), /want a decision object/);
    await assert.rejects(fg.peek('down'), (e) => e.status === 503 && /redis: connection refused/.test(e.message));
  } finally {
    fg.close();
    await srv.close();
  }
});

test('timeouts: a slow answer is a TransportError, and the connection is not reused half-read', async () => {
  let n = 0;
  const srv = await fakeServer(async () => {
    n++;
    if (n === 1) await sleep(2000);
    return [200, { ...DECISION, remaining: n }];
  });
  const fg = new Client({ baseUrl: srv.url, timeoutMs: 100 });
  try {
    const t0 = Date.now();
    await assert.rejects(fg.allow('slow'), (e) => e instanceof TransportError && e.status === null && /timed out after 100 ms/.test(e.message));
    assert.ok(Date.now() - t0 < 1500, `gave up after ${Date.now() - t0} ms, not at the timeout`); // generous: a loaded machine
    const d = await fg.allow('next');
    assert.equal(d.remaining, 2, 'the second call reads its own answer');
    // A wait's HTTP timeout is the client timeout plus the wait.
    const w = await fg.wait('api', { timeoutMs: 150 }); // the server answers at once here
    assert.equal(w.allowed, true);
    assert.deepEqual(srv.seen.at(-1).body, { n: 1, timeout_ms: 150 });
  } finally {
    fg.close();
    await srv.close();
  }
});

test('an unreachable server is a TransportError; healthy() is false', async () => {
  const fg = new Client({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 500 });
  await assert.rejects(fg.allow('x'), (e) => e instanceof TransportError && /ECONNREFUSED/.test(e.message));
  assert.equal(await fg.healthy(), false);
  fg.close();
});

test('readiness(): the eviction risk /readyz carries; a 503 is a FloodgateError', async () => {
  const warning = "Redis may evict Floodgate's keys: CONFIG SET maxmemory-policy noeviction";
  let answer = [200, { status: 'ready', maxmemory_policy: 'allkeys-lru', eviction_unsafe: true, evicted_keys: 3, warning }];
  const srv = await fakeServer(() => answer);
  const fg = new Client({ baseUrl: srv.url });
  try {
    assert.deepEqual(await fg.readiness(), { maxmemoryPolicy: 'allkeys-lru', evictionUnsafe: true, evictedKeys: 3, warning });
    assert.equal(srv.seen.at(-1).url, '/readyz');
    answer = [200, { status: 'ready' }]; // Redis would not say (no +info)
    assert.deepEqual(await fg.readiness(), { maxmemoryPolicy: '', evictionUnsafe: false, evictedKeys: 0, warning: '' });
    answer = [503, { error: 'redis did not answer PING within FLOODGATE_REDIS_TIMEOUT' }];
    await assert.rejects(fg.readiness(), (e) => e instanceof FloodgateError && e.status === 503 && /PING/.test(e.message));
    assert.equal(await fg.ready(), false);
  } finally {
    fg.close();
    await srv.close();
  }
});

test('a connection the server closed while idle is not an error and sends the request once', async () => {
  const srv = await rawServer('close-idle', { closeMs: 30 });
  const fg = new Client({ baseUrl: srv.url });
  try {
    await fg.allow('u');
    await sleep(200); // the server closed the connection meanwhile
    assert.equal((await fg.allow('u')).allowed, true);
    assert.deepEqual(srv.st, { requests: 2, connections: 2 });
  } finally {
    fg.close();
    await srv.close();
  }
});

test('a close that arrived while the event loop was blocked is found before sending', async () => {
  // The handler blocks the loop; the server (another process) closes the
  // idle connection meanwhile, and its close sits unread in the kernel when
  // the next call starts. Without the client's look at idle sockets first,
  // the request would go out on it and fail.
  const srv = await rawServerProcess('close-idle', { closeMs: 20 });
  const fg = new Client({ baseUrl: srv.url });
  try {
    for (let i = 0; i < 3; i++) {
      await sleep(100); // the last round's connection is closed and gone: no race with its close
      await fg.allow('u');
      block(300); // the server closes the connection 20 ms into this
      assert.equal((await fg.allow('u')).allowed, true, `round ${i}`);
    }
    await srv.settled();
    assert.deepEqual(srv.st, { requests: 6, connections: 6 }, 'each request read exactly once; a new connection after each block');
  } finally {
    fg.close();
    await srv.close();
  }
});

test('a request the server may have read is never sent twice, unless idempotent', async () => {
  // The server reads the second request of a connection, then drops the
  // connection unanswered: the request may have counted.
  let srv = await rawServer('reset-second');
  let fg = new Client({ baseUrl: srv.url });
  try {
    await fg.allow('u');
    await assert.rejects(fg.allow('u'), (e) => e instanceof TransportError && /ECONNRESET|socket hang up/.test(e.message));
    assert.equal(srv.st.requests, 2, 'allow was not sent again');
  } finally {
    fg.close();
    await srv.close();
  }
  srv = await rawServer('reset-second');
  fg = new Client({ baseUrl: srv.url });
  try {
    await fg.peek('u');
    await fg.peek('u'); // GET: sent again on a new connection
    assert.deepEqual(srv.st, { requests: 3, connections: 2 });
  } finally {
    fg.close();
    await srv.close();
  }
});

test("Node 20's fetch fails even a GET the server dropped unanswered (why the client uses core http)", async () => {
  // What README.md says of Node 20's fetch; other versions' undici may differ.
  if (process.versions.node.split('.')[0] !== '20') return;
  const srv = await rawServer('reset-second');
  try {
    await (await fetch(`${srv.url}/v1/users/u`)).text();
    await sleep(50); // the connection is back in fetch's pool
    await assert.rejects(fetch(`${srv.url}/v1/users/u`), (e) => e instanceof TypeError && /other side closed|socket/i.test(String(e.cause?.message ?? e.cause)));
    assert.deepEqual(srv.st, { requests: 2, connections: 1 }, 'fetch did not send it again');
  } finally {
    await srv.close();
  }
});

test('idle connections close after keepAliveMs; proxies are ignored; redirects are errors', async () => {
  const srv = await fakeServer(async (req) => {
    if (req.url.includes('moved')) return [307, '', { Location: '/elsewhere' }];
    if (req.url.includes('slow')) await sleep(300);
    return [200, DECISION];
  });
  const saved = process.env.HTTP_PROXY;
  process.env.HTTP_PROXY = 'http://127.0.0.1:1'; // nothing listens there
  const fg = new Client({ baseUrl: srv.url, keepAliveMs: 100 });
  try {
    await fg.allow('a');
    await fg.allow('a');
    assert.equal(srv.st.connections, 1);
    await sleep(300);
    await fg.allow('a');
    assert.equal(srv.st.connections, 2, 'the idle connection was closed by the client');
    await assert.rejects(fg.allow('moved'), (e) => e instanceof FloodgateError && e.status === 307);
    assert.equal(srv.seen.length, 4, 'the redirect was not followed');
    assert.equal((await fg.allow('slow')).allowed, true, 'keepAliveMs limits idle connections, not answers');
  } finally {
    if (saved === undefined) delete process.env.HTTP_PROXY;
    else process.env.HTTP_PROXY = saved;
    fg.close();
    await srv.close();
  }
});

test('a server restarted on the same port: the next call succeeds on a new connection', async () => {
  let srv = await fakeServer(() => [200, DECISION]);
  const fg = new Client({ baseUrl: srv.url });
  try {
    await Promise.all([fg.allow('a'), fg.allow('b'), fg.allow('c')]); // up to three pooled connections
    await srv.close();
    srv = await fakeServer(() => [200, DECISION], { port: srv.port });
    assert.equal((await fg.allow('d')).allowed, true);
    assert.equal((await fg.peek('d')).user, '');
    assert.equal(srv.seen.length, 2, 'each request read once by the new server');
  } finally {
    fg.close();
    await srv.close();
  }
});

test('unix socket base URL (core http socketPath), kept alive', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-node-'));
  const sock = path.join(dir, 'floodgate.sock');
  const srv = await fakeServer(() => [200, DECISION], { socketPath: sock });
  const fg = new Client({ baseUrl: `unix://${sock}` });
  try {
    assert.equal((await fg.allow('alice')).allowed, true);
    await fg.allow('alice');
    await fg.allow('alice');
    assert.equal(srv.seen[0].url, '/v1/users/alice/allow');
    assert.equal(srv.st.connections, 1);
    assert.equal(await fg.healthy(), true);
    assert.throws(() => new Client({ baseUrl: `unix://${sock}`, ca: 'x' }), /not unix sockets/);
  } finally {
    fg.close();
    await srv.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const gone = new Client({ baseUrl: `unix://${sock}` });
  await assert.rejects(gone.allow('x'), (e) => e instanceof TransportError && /ENOENT/.test(e.message));
  gone.close();
});

function makeCerts(dir) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=floodgate test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1',
    '-keyout', 'server.key', '-out', 'server.csr');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'ext.cnf', '-out', 'server.pem');
}

test('TLS: certificates verified by default; the ca option trusts a private CA', async (t) => {
  // FLOODGATE_TEST_TLS_{CA,CERT,KEY}: files made by the Go test; else openssl makes them.
  let files = ['CA', 'CERT', 'KEY'].map((k) => process.env[`FLOODGATE_TEST_TLS_${k}`]);
  if (!files.every(Boolean)) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-tls-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    try {
      makeCerts(dir);
    } catch (e) {
      if (process.env.CI) throw e;
      t.skip(`no openssl to make a test CA: ${e.message}`);
      return;
    }
    files = ['ca.pem', 'server.pem', 'server.key'].map((f) => path.join(dir, f));
  }
  const [caPem, certPem, keyPem] = files.map((f) => fs.readFileSync(f));
  const srv = await fakeServer(() => [200, DECISION], {
    create: https.createServer,
    options: { key: keyPem, cert: certPem },
  });
  try {
    const strict = new Client({ baseUrl: srv.url });
    await assert.rejects(strict.allow('x'), (e) => e instanceof TransportError && /certificate|self.signed|UNABLE_TO_VERIFY/i.test(e.message));
    strict.close();
    const fg = new Client({ baseUrl: srv.url, ca: caPem });
    assert.equal((await fg.allow('x')).allowed, true);
    await fg.allow('y');
    assert.equal(srv.st.connections, 1, 'TLS connections are kept alive too');
    fg.close();
  } finally {
    await srv.close();
  }
});

test('call: success, failure, Denied, and a cancelled probe handed back', async () => {
  let checkAnswer = { ...DECISION, remaining: 0, probe: false };
  const srv = await fakeServer((req) => {
    if (req.url.endsWith('/check')) return [200, checkAnswer];
    if (req.url.endsWith('/failure')) return [200, { ...DECISION, allowed: false, reason: 'backoff', retry_after_ms: 5000 }];
    return [204];
  });
  const fg = new Client({ baseUrl: srv.url });
  const ops = () => srv.seen.map((s) => s.url.split('/').pop());
  try {
    assert.equal(await fg.call('llm', 'gpu1', async () => 'answer'), 'answer');
    assert.deepEqual(ops(), ['check', 'success']);
    srv.seen.length = 0;
    await assert.rejects(fg.call('llm', 'gpu1', async () => { throw new Error('model down'); }), /model down/);
    assert.deepEqual(ops(), ['check', 'failure']);
    srv.seen.length = 0;
    checkAnswer = { ...DECISION, remaining: 0, probe: true, token: 'abc123' };
    const ac = new AbortController();
    await assert.rejects(fg.call('llm', 'gpu1', async (signal) => {
      ac.abort();
      signal.throwIfAborted();
    }, { signal: ac.signal }), { name: 'AbortError' });
    assert.deepEqual(ops(), ['check', 'abandon']);
    assert.deepEqual(srv.seen[1].body, { token: 'abc123' });
    srv.seen.length = 0;
    const err = new Error('cancelled');
    err.name = 'AbortError';
    await assert.rejects(fg.call('llm', 'gpu1', () => Promise.reject(err)), /cancelled/);
    assert.deepEqual(ops(), ['check', 'abandon'], 'an AbortError without a signal is a cancellation too');
    srv.seen.length = 0;
    checkAnswer = { ...DECISION, allowed: false, reason: 'backoff', retry_after_ms: 4000, probe: false };
    let ran = false;
    await assert.rejects(fg.call('llm', 'gpu1', () => { ran = true; }), (e) => e instanceof Denied && e.reason === 'backoff' && e.retryAfterMs === 4000);
    assert.equal(ran, false);
    assert.deepEqual(ops(), ['check']);
  } finally {
    fg.close();
    await srv.close();
  }
});

test('withSlot releases on return and on throw; Denied when none is free', async () => {
  let acquire = [200, { acquired: true, token: 'r.x.1', lease_ms: 30000, degraded: false }];
  let release = [204];
  const srv = await fakeServer((req) => (req.url.endsWith('/acquire') ? acquire : release));
  const fg = new Client({ baseUrl: srv.url });
  const ops = () => srv.seen.map((s) => s.url.split('/').pop());
  try {
    assert.equal(await fg.withSlot('llm', 'alice', async (lease) => {
      assert.ok(lease instanceof Lease);
      assert.equal(lease.leaseMs, 30000);
      return 7;
    }), 7);
    assert.deepEqual(ops(), ['acquire', 'release']);
    assert.deepEqual(srv.seen[0].body, { holder: 'alice', wait: true });
    srv.seen.length = 0;
    await assert.rejects(fg.withSlot('llm', 'alice', async () => { throw new Error('llm broke'); }, { timeoutMs: 10 }), /llm broke/);
    assert.deepEqual(ops(), ['acquire', 'release']);
    assert.deepEqual(srv.seen[0].body, { holder: 'alice', wait: true, timeout_ms: 10 });
    srv.seen.length = 0;
    release = [409, { error: 'lease lost' }];
    await assert.rejects(fg.withSlot('llm', 'alice', async () => 1), LeaseLost, 'a lost lease after success is reported');
    await assert.rejects(fg.withSlot('llm', 'alice', async () => { throw new Error('first'); }), /first/, 'the work error wins over the release error');
    srv.seen.length = 0;
    acquire = [200, { acquired: false, reason: 'slots', retry_after_ms: 29870 }];
    await assert.rejects(fg.withSlot('llm', 'bob', () => 1, { wait: false }), (e) => e instanceof Denied && e.reason === 'slots' && e.retryAfterMs === 29870);
    assert.deepEqual(ops(), ['acquire']);
    const d = await fg.acquire('llm', 'bob', { wait: false });
    assert.deepEqual([d.allowed, d.reason, d.retryAfterMs], [false, 'slots', 29870]);
    acquire = [503, { acquired: false, reason: 'redis_down', retry_after_ms: 1000, error: 'redis unavailable' }];
    const down = await fg.acquire('llm', 'bob');
    assert.deepEqual([down.allowed, down.reason, 'error' in down], [false, 'redis_down', false]);
  } finally {
    fg.close();
    await srv.close();
  }
});

test('allowMany, pick, endpoint, slots, peek shapes', async () => {
  const srv = await fakeServer((req) => {
    if (req.url === '/v1/allow-many') return [200, { decisions: [DECISION, { ...DECISION, allowed: false, error: 'WRONGTYPE' }] }];
    if (req.url.endsWith('/pick')) return [200, { ...DECISION, remaining: -1, probe: false, endpoint: '' }];
    if (req.url.startsWith('/v1/backoff/')) return [200, { state: 'open', opens: 1, failures: 2, delay_ms: 5000, retry_after_ms: 4981, probing: false }];
    if (req.url.startsWith('/v1/slots/')) return [200, { size: 7, in_use: 1, waiting: 0 }];
    return [200, { user: 'alice', remaining: 19, retry_after_ms: 9963, reason: 'cooldown', cooldown_left_ms: 9963, entries: 1, reset_after_ms: 3599963 }];
  });
  const fg = new Client({ baseUrl: srv.url });
  try {
    const ds = await fg.allowMany(['alice', 'bob']);
    assert.equal(ds.length, 2);
    assert.equal(ds[1].error, 'WRONGTYPE');
    assert.deepEqual(srv.seen[0].body, { users: ['alice', 'bob'] });
    await assert.rejects(fg.allowMany([]), /non-empty array/);
    await assert.rejects(fg.allowMany(['ok', '']), /users\[1\] must not be empty/);
    const p = await fg.pick('llm', 'gpu1', 'gpu2');
    assert.equal(p.endpoint, null);
    assert.equal(p.decision.remaining, -1);
    assert.deepEqual(srv.seen.at(-1).body, { endpoints: ['gpu1', 'gpu2'] });
    await fg.pick('llm', ['gpu3']);
    assert.deepEqual(srv.seen.at(-1).body, { endpoints: ['gpu3'] });
    assert.deepEqual(await fg.endpoint('llm', 'http://gpu1:8000'), { state: 'open', opens: 1, failures: 2, delayMs: 5000, retryAfterMs: 4981, probing: false });
    assert.equal(srv.seen.at(-1).url, '/v1/backoff/llm/endpoints/http%3A%2F%2Fgpu1%3A8000');
    assert.deepEqual(await fg.slots('llm'), { size: 7, inUse: 1, waiting: 0 });
    assert.deepEqual(await fg.peek('alice'), { user: 'alice', remaining: 19, retryAfterMs: 9963, reason: 'cooldown', cooldownLeftMs: 9963, entries: 1, resetAfterMs: 3599963 });
    await assert.rejects(fg.bucketAllow('api', 0), /n must be an integer >= 1/);
    await assert.rejects(fg.wait('api', { timeoutMs: -1 }), /timeoutMs must be a number of milliseconds >= 0/);
  } finally {
    fg.close();
    await srv.close();
  }
});

test('budgets: reserve, settle, cancel, charge, budget send units and the reservation', async () => {
  let settle = [204];
  const tok = '3.1500.9f86d081884c7d65';
  const srv = await fakeServer((req) => {
    if (req.url.endsWith('/reserve') || req.url.endsWith('/charge')) return [200, { ...DECISION, remaining: 18500, reservation: tok }];
    if (req.method === 'GET') {
      return [200, { budget: 'llm', user: 'vie wer', limit: 20000, window_ms: 3600000, spent: 900, reserved: 1500, reservations: 1,
        remaining: 17600, oldest_ages_out_ms: 3000000, reset_after_ms: 3600000 }];
    }
    return settle;
  });
  const fg = new Client({ baseUrl: srv.url });
  try {
    const d = await fg.reserve('llm', 'vie wer', 1500);
    assert.deepEqual([d.allowed, d.remaining, d.reservation], [true, 18500, tok]);
    await fg.settle('llm', 'vie wer', tok, 900);
    await fg.cancel('llm', 'vie wer', tok);
    await fg.charge('llm', 'vie wer', 120);
    assert.deepEqual(await fg.budget('llm', 'vie wer'), { budget: 'llm', user: 'vie wer', limit: 20000, windowMs: 3600000, spent: 900,
      reserved: 1500, reservations: 1, remaining: 17600, oldestAgesOutMs: 3000000, resetAfterMs: 3600000 });
    const base = '/v1/budgets/llm/users/vie%20wer';
    assert.deepEqual(srv.seen.map((s) => [s.method, s.url, s.body]), [
      ['POST', base + '/reserve', { units: 1500 }], ['POST', base + '/settle', { reservation: tok, units: 900 }],
      ['POST', base + '/cancel', { reservation: tok }], ['POST', base + '/charge', { units: 120 }], ['GET', base, undefined]]);
    srv.seen.length = 0;
    for (const bad of [() => fg.reserve('llm', 'u', 0), () => fg.reserve('llm', 'u', 1.5), () => fg.charge('llm', 'u', -1),
      () => fg.settle('llm', 'u', tok, -1), () => fg.settle('llm', 'u', '', 5), () => fg.cancel('llm', 'u', null), () => fg.reserve('', 'u', 5)]) {
      await assert.rejects(bad(), (e) => e instanceof RangeError || e instanceof TypeError);
    }
    assert.equal(srv.seen.length, 0, 'bad arguments are refused before sending');
    settle = [409, { error: 'limiter: reservation not held' }];
    await assert.rejects(fg.settle('llm', 'u', tok, 9), (e) => e instanceof StaleReservation && e.status === 409 && !(e instanceof LeaseLost));
  } finally {
    fg.close();
    await srv.close();
  }
});

test('withBudget settles the reported usage, the estimate by default, cancels on throw; Denied', async () => {
  let reserve = [200, { ...DECISION, remaining: 18500, reservation: '3.1500.9f86d081884c7d65' }];
  let settle = [204];
  const srv = await fakeServer((req) => (req.url.endsWith('/reserve') ? reserve : settle));
  const fg = new Client({ baseUrl: srv.url });
  const ops = () => srv.seen.map((s) => [s.url.split('/').pop(), s.body.units]);
  try {
    assert.equal(await fg.withBudget('llm', 'viewer', 1500, async (r) => {
      assert.ok(r instanceof Reservation);
      assert.equal(r.decision.remaining, 18500);
      await r.settle(900);
      return 'answer';
    }), 'answer');
    assert.deepEqual(ops(), [['reserve', 1500], ['settle', 900]]);
    srv.seen.length = 0;
    await fg.withBudget('llm', 'viewer', 1500, () => 'no usage reported');
    assert.deepEqual(ops(), [['reserve', 1500], ['settle', 1500]]);
    for (const err of [new Error('llm down'), Object.assign(new Error('aborted'), { name: 'AbortError' })]) {
      srv.seen.length = 0;
      await assert.rejects(fg.withBudget('llm', 'viewer', 1500, async () => { throw err; }), err);
      assert.deepEqual(ops(), [['reserve', 1500], ['cancel', undefined]]);
    }
    srv.seen.length = 0;
    settle = [409, { error: 'limiter: reservation not held' }];
    await assert.rejects(fg.withBudget('llm', 'viewer', 1500, (r) => r.settle(900)), StaleReservation);
    assert.deepEqual(ops(), [['reserve', 1500], ['settle', 900]], 'no cancel after a settle was tried');
    srv.seen.length = 0;
    reserve = [200, { ...DECISION, allowed: false, reason: 'budget', remaining: 1000, retry_after_ms: 1200000 }];
    let ran = false;
    await assert.rejects(fg.withBudget('llm', 'viewer', 1500, () => { ran = true; }),
      (e) => e instanceof Denied && e.reason === 'budget' && e.retryAfterMs === 1200000 && e.decision.remaining === 1000);
    assert.equal(ran, false);
    assert.deepEqual(ops(), [['reserve', 1500]]);
  } finally {
    fg.close();
    await srv.close();
  }
});

test('index.d.ts declares every export and every Client method', async () => {
  const dts = fs.readFileSync(path.join(here, '..', 'index.d.ts'), 'utf8');
  const mod = await import('../index.js');
  for (const name of Object.keys(mod)) {
    assert.match(dts, new RegExp(`export (declare )?(class|const|function|interface|type) ${name}\\b`), `index.d.ts lacks ${name}`);
  }
  const methods = Object.getOwnPropertyNames(Client.prototype).filter((m) => m !== 'constructor' && !m.startsWith('_') && m !== 'toString');
  for (const m of methods) assert.match(dts, new RegExp(`\\n  ${m}[<(]`), `index.d.ts lacks Client.${m}`);
  const pkg = JSON.parse(fs.readFileSync(path.join(here, '..', 'package.json'), 'utf8'));
  assert.deepEqual(Object.keys(pkg.exports['.']), ['types', 'default'], 'types first in exports');
  assert.deepEqual(pkg.dependencies ?? {}, {}, 'no dependencies');
});
