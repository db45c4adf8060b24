// The client against a real `floodgate serve`: skipped unless
// FLOODGATE_TEST_URL (and FLOODGATE_TEST_TOKEN) name one. The Go test
// integration_test/node_test.go starts one and runs these, failing on a skip.
// Server settings they assume: cooldown 10s, 20 per hour, LLM retry delay 1s,
// 7 slots, bucket FLOODGATE_TEST_BUCKET at 0.5/s, the token budget llm
// (FLOODGATE_USER_TOKEN_BUDGET of at least 2000).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client, Denied, FloodgateError, Lease, LeaseLost, StaleReservation } from '../index.js';
import { sleep } from './helpers.js';

const url = process.env.FLOODGATE_TEST_URL;
const token = process.env.FLOODGATE_TEST_TOKEN;
const bucket = process.env.FLOODGATE_TEST_BUCKET || 'nodetest';
const skip = url ? false : 'FLOODGATE_TEST_URL is not set';
const run = randomBytes(4).toString('hex');
const id = (s) => `${s}-${run}`;

function client(opts = {}) {
  return new Client({ baseUrl: url, token, timeoutMs: 10_000, ...opts });
}

test('live: healthy, ready, and a missing token is a 401', { skip }, async () => {
  const fg = client();
  assert.equal(await fg.healthy(), true);
  assert.equal(await fg.ready(), true);
  const r = await fg.readiness(); // the test's redis-server: no maxmemory, so nothing to evict
  assert.notEqual(r.maxmemoryPolicy, '');
  assert.equal(r.evictionUnsafe, false);
  assert.equal(r.warning, '');
  fg.close();
  if (token) {
    const anon = new Client({ baseUrl: url });
    await assert.rejects(anon.allow(id('anon')), (e) => e instanceof FloodgateError && e.status === 401);
    anon.close();
  }
});

test('live: allow, cooldown denial, peek, reset', { skip }, async () => {
  const fg = client();
  const u = id('viewer/ü.1');
  const d1 = await fg.allow(u);
  assert.deepEqual([d1.allowed, d1.reason, d1.remaining, d1.retryAfterMs], [true, 'none', 19, 0]);
  assert.ok(d1.resetAfterMs > 0);
  const d2 = await fg.allow(u);
  assert.equal(d2.allowed, false);
  assert.equal(d2.reason, 'cooldown');
  assert.ok(d2.retryAfterMs > 0 && d2.retryAfterMs <= 10_000, `retryAfterMs ${d2.retryAfterMs}`);
  const st = await fg.peek(u);
  assert.equal(st.user, u, 'the id went through as one segment, slash, dot and all');
  assert.equal(st.entries, 1);
  assert.equal(st.reason, 'cooldown');
  await fg.reset(u);
  assert.equal((await fg.peek(u)).entries, 0);
  assert.equal((await fg.allow(u)).allowed, true);
  fg.close();
});

test('live: allowMany decides in order; a repeat is a second request', { skip }, async () => {
  const fg = client();
  const [a, b] = [id('many-a'), id('many-b')];
  const ds = await fg.allowMany([a, b, a]);
  assert.deepEqual(ds.map((d) => [d.allowed, d.reason]), [[true, 'none'], [true, 'none'], [false, 'cooldown']]);
  fg.close();
});

test('live: 200 concurrent allows over 10 users admit exactly one each (cooldown)', { skip }, async () => {
  const fg = client();
  const users = Array.from({ length: 10 }, (_, i) => id(`burst${i}`));
  const ds = await Promise.all(Array.from({ length: 200 }, (_, i) => fg.allow(users[i % 10])));
  const allowed = new Map(users.map((u) => [u, 0]));
  ds.forEach((d, i) => { if (d.allowed) allowed.set(users[i % 10], allowed.get(users[i % 10]) + 1); });
  for (const [u, n] of allowed) {
    assert.equal(n, 1, `${u}: ${n} allowed`);
    assert.equal((await fg.peek(u)).entries, 1, `${u} counted once`);
  }
  fg.close();
});

test('live: backoff: failure, Denied, one probe, abandon, success', { skip }, async () => {
  const fg = client();
  const llm = id('llm');
  assert.equal((await fg.check(llm, 'gpu1')).allowed, true);
  const f = await fg.failure(llm, 'gpu1');
  assert.equal(f.allowed, false);
  assert.equal(f.reason, 'backoff');
  await assert.rejects(fg.call(llm, 'gpu1', async () => 'never'), (e) => e instanceof Denied && e.reason === 'backoff');
  const { endpoint, decision } = await fg.pick(llm, 'gpu1', 'gpu2');
  assert.equal(endpoint, 'gpu2');
  assert.equal(decision.allowed, true);
  await sleep(Math.max(f.retryAfterMs, 1000) + 100);
  const probe = await fg.check(llm, 'gpu1');
  assert.equal(probe.allowed, true);
  assert.equal(probe.probe, true);
  assert.ok(probe.token);
  const other = await fg.check(llm, 'gpu1');
  assert.deepEqual([other.allowed, other.reason], [false, 'probing']);
  await fg.abandon(llm, 'gpu1', probe.token);
  // A probe whose work is cancelled is handed back by call().
  const ac = new AbortController();
  await assert.rejects(fg.call(llm, 'gpu1', async (signal) => { ac.abort(); signal.throwIfAborted(); }, { signal: ac.signal }), { name: 'AbortError' });
  assert.equal((await fg.endpoint(llm, 'gpu1')).probing, false, 'the cancelled probe was handed back');
  assert.equal(await fg.call(llm, 'gpu1', async () => 'ok'), 'ok');
  const st = await fg.endpoint(llm, 'gpu1');
  assert.equal(st.state, 'closed');
  assert.equal(st.probing, false);
  fg.close();
});

test('live: buckets: allow, rate denial, wait', { skip }, async () => {
  const fg = client();
  // The bucket is shared by every run on this server: take what is there.
  await fg.wait(bucket, { timeoutMs: 5000 });
  const d = await fg.bucketAllow(bucket);
  assert.deepEqual([d.allowed, d.reason], [false, 'rate']);
  assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= 2000, `retryAfterMs ${d.retryAfterMs}`);
  const quick = await fg.wait(bucket, { timeoutMs: 50 });
  assert.equal(quick.allowed, false, 'a wait shorter than the refill answers with the denial');
  assert.ok(quick.retryAfterMs > 0);
  const w = await fg.wait(bucket, { timeoutMs: 5000 });
  assert.equal(w.allowed, true);
  await assert.rejects(fg.bucketAllow(id('nosuchapi')), (e) => e.status === 400 && /nosuchapi/.test(e.message));
  fg.close();
});

test('live: slots: withSlot always releases; a full pool is Denied; lost leases', { skip }, async () => {
  const fg = client();
  const pool = id('pool');
  const inside = await fg.withSlot(pool, 'alice', async (lease) => {
    assert.ok(lease instanceof Lease);
    assert.ok(lease.leaseMs > 0);
    await lease.refresh();
    return (await fg.slots(pool)).inUse;
  });
  assert.equal(inside, 1);
  assert.equal((await fg.slots(pool)).inUse, 0);
  await assert.rejects(fg.withSlot(pool, 'alice', async () => { throw new Error('boom'); }), /boom/);
  assert.equal((await fg.slots(pool)).inUse, 0, 'released after a throw');
  const leases = [];
  for (let i = 0; i < 7; i++) leases.push(await fg.acquire(pool, `holder${i}`, { wait: false }));
  assert.ok(leases.every((l) => l instanceof Lease));
  const full = await fg.acquire(pool, 'late', { wait: false });
  assert.deepEqual([full.allowed, full.reason], [false, 'slots']);
  assert.ok(full.retryAfterMs > 0);
  await assert.rejects(fg.withSlot(pool, 'late', () => 1, { wait: false }), (e) => e instanceof Denied && e.reason === 'slots');
  const handed = fg.lease(pool, leases[0].token); // as another process would
  await handed.release();
  await assert.rejects(leases[0].release(), LeaseLost);
  for (const l of leases.slice(1)) await l.release();
  const st = await fg.slots(pool);
  assert.deepEqual([st.size, st.inUse, st.waiting], [7, 0, 0]);
  fg.close();
});

test('live: budget: reserve, settle, stale, charge, denial, withBudget', { skip }, async () => {
  const fg = client();
  try {
    const user = id('budget');
    const { limit } = await fg.budget('llm', user);
    assert.ok(limit >= 2000, `limit ${limit}`);
    const d = await fg.reserve('llm', user, 1500);
    assert.deepEqual([d.allowed, d.remaining], [true, limit - 1500]);
    assert.equal((await fg.budget('llm', user)).reserved, 1500);
    await fg.settle('llm', user, d.reservation, 900);
    const st = await fg.budget('llm', user);
    assert.deepEqual([st.spent, st.reserved, st.remaining], [900, 0, limit - 900]);
    await assert.rejects(fg.settle('llm', user, d.reservation, 900), StaleReservation);
    await assert.rejects(fg.cancel('llm', user, d.reservation), StaleReservation);
    await assert.rejects(fg.withBudget('llm', user, 1000, async () => { throw new Error('llm down'); }), /llm down/);
    assert.deepEqual([(await fg.budget('llm', user)).reserved, (await fg.budget('llm', user)).spent], [0, 900], 'cancelled');
    assert.equal(await fg.withBudget('llm', user, 1000, async (r) => { await r.settle(1100); return 'ok'; }), 'ok');
    const c = await fg.charge('llm', user, limit - 2100);
    assert.deepEqual([c.allowed, c.remaining, c.reservation], [true, 100, undefined]);
    const denied = await fg.reserve('llm', user, 1500);
    assert.deepEqual([denied.allowed, denied.reason, denied.remaining], [false, 'budget', 100]);
    assert.ok(denied.retryAfterMs > 3_000_000, `retry after ${denied.retryAfterMs}`);
    await assert.rejects(fg.withBudget('llm', user, 1500, () => assert.fail('ran while denied')), (e) => e instanceof Denied && e.reason === 'budget');
    await assert.rejects(fg.reserve('llm-typo', user, 10), (e) => e instanceof FloodgateError && e.status === 404 && /FLOODGATE_USER_TOKEN_BUDGET/.test(e.message));
  } finally {
    fg.close();
  }
});
