// Client for `floodgate serve`, Floodgate's HTTP sidecar.
//
// Zero dependencies, ESM, Node 18+. Every bot replica that talks to the same
// server (or to servers on the same Redis) shares the same limits: per-user
// cooldown and window, LLM endpoint backoff, API buckets, slots and LLM
// token budgets.
//
//   import { Client } from 'floodgate-client';
//   const fg = new Client({ baseUrl: 'http://127.0.0.1:8080' });
//   const d = await fg.allow('some_viewer');
//   if (!d.allowed) console.log(`wait ${Math.ceil(d.retryAfterMs / 1000)}s (${d.reason})`);
//
// Transport: core node:http / node:https with a keep-alive Agent, not the
// global fetch. fetch cannot take a CA or a unix socket without undici (a
// dependency), and (Node 20) when a kept-alive connection dies after the
// request went out it fails even a GET, with no way to say what is safe to
// send again. With our own Agent the client sees which socket a request
// went out on and sends again only what provably never reached the server,
// or is idempotent (see _request).
// Per-call timeouts are AbortSignal.timeout.

import http from 'node:http';
import https from 'node:https';

export const version = '0.1.0';

// What wait() and acquire({ wait: true }) assume the server's
// FLOODGATE_HTTP_MAX_WAIT is when the caller gives no timeout.
const DEFAULT_MAX_WAIT_MS = 30_000;

// ---------------------------------------------------------------- errors

/** An error answer from the server, or (TransportError) no answer. */
export class FloodgateError extends Error {
  constructor(status, message, { retryAfterMs = null, decision = null, cause } = {}) {
    // message is the server's {"error": ...} text (or what went wrong on
    // the way), as in the Python client; name and status say the rest.
    super(message, cause ? { cause } : undefined);
    this.name = 'FloodgateError';
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.decision = decision;
  }
}

/** The server could not be reached, or did not answer in time (status null). */
export class TransportError extends FloodgateError {
  constructor(message, cause) {
    super(null, message, { cause });
    this.name = 'TransportError';
  }
}

/** A slot lease ran out (or was released) before refresh/release (409). */
export class LeaseLost extends FloodgateError {
  constructor(status, message, opts) {
    super(status, message, opts);
    this.name = 'LeaseLost';
  }
}

/**
 * settle() or cancel() named no reservation the user holds (409): settled
 * or cancelled already, its lease ended (it then counts as its estimate),
 * or another user's or budget's. Nothing changed.
 */
export class StaleReservation extends FloodgateError {
  constructor(status, message, opts) {
    super(status, message, opts);
    this.name = 'StaleReservation';
  }
}

/** call(), withSlot() or withBudget() could not go ahead now; .decision says why and for how long. */
export class Denied extends Error {
  constructor(decision, what) {
    super(`floodgate: ${what} denied (${decision.reason}), retry after ${decision.retryAfterMs} ms`);
    this.name = 'Denied';
    this.decision = decision;
    this.reason = decision.reason;
    this.retryAfterMs = decision.retryAfterMs;
  }
}

// ---------------------------------------------------------------- results

const int = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v, otherwise = '') => (typeof v === 'string' ? v : otherwise);

function decision(d, retryAfterHeaderMs = null) {
  const out = {
    allowed: d.allowed === true,
    reason: str(d.reason, 'none'),
    remaining: int(d.remaining),
    retryAfterMs: d.retry_after_ms != null ? int(d.retry_after_ms) : (retryAfterHeaderMs ?? 0),
    resetAfterMs: int(d.reset_after_ms),
    degraded: d.degraded === true,
    cached: d.cached === true,
  };
  if ('probe' in d) out.probe = d.probe === true;
  if ('token' in d || 'probe' in d) out.token = str(d.token);
  if (typeof d.reservation === 'string') out.reservation = d.reservation;
  if (typeof d.error === 'string') out.error = d.error;
  return out;
}

function slotDenial(d, retryAfterHeaderMs = null) {
  return decision({ ...d, allowed: false, reason: d.reason || 'slots', remaining: 0 }, retryAfterHeaderMs);
}

// What Lease and Reservation share: the client that got it, the name it
// was got from, the server's token for it.
class Held {
  constructor(client, name, token) {
    this.client = client;
    this.name = name;
    this.token = token;
  }
}

// The body of withSlot and withBudget: fn(held), then end(); when fn
// throws, abort() instead, its own error ignored (fn's matters more).
// Neither runs once over() says fn ended the hold itself.
async function holding(held, fn, { over, abort, end }) {
  let result;
  try {
    result = await fn(held);
  } catch (err) {
    if (!over()) await abort().catch(() => {});
    throw err;
  }
  if (!over()) await end();
  return result;
}

/** A held slot: refresh() before leaseMs passes, release() when done. */
export class Lease extends Held {
  constructor(client, name, token, leaseMs, degraded) {
    super(client, name, token);
    this.leaseMs = leaseMs;
    this.degraded = degraded;
    this.released = false;
    this._seg = segment('name', name);
  }

  /** Extends the lease by its full length; LeaseLost if it already ran out. */
  async refresh() {
    await this.client._request('POST', `/v1/slots/${this._seg}/refresh`, { token: this.token }, { idempotent: true });
  }

  /** Gives the slot back; LeaseLost if it had already run out or been released. */
  async release() {
    await this.client._request('POST', `/v1/slots/${this._seg}/release`, { token: this.token });
    this.released = true;
  }

  toJSON() {
    return { name: this.name, token: this.token, leaseMs: this.leaseMs, degraded: this.degraded, released: this.released };
  }
}

/**
 * Units withBudget() holds for one LLM call: settle(actual) once its usage
 * is known, cancel() if it did not happen. done turns true once either is
 * tried: a settle that failed is never followed by a cancel (the
 * reservation then counts as its estimate, never less than the call used).
 */
export class Reservation extends Held {
  constructor(client, name, user, estimate, decision) {
    super(client, name, decision.reservation);
    this.user = user;
    this.estimate = estimate;
    this.decision = decision;
    this.done = false;
  }

  /** Records what the call cost, above the estimate too. */
  async settle(units) {
    countArg(units, 'units', 0);
    this.done = true;
    await this.client.settle(this.name, this.user, this.token, units);
  }

  /** Frees the reservation: nothing of it counts. */
  async cancel() {
    this.done = true;
    await this.client.cancel(this.name, this.user, this.token);
  }

  toJSON() {
    return { name: this.name, user: this.user, estimate: this.estimate, token: this.token, done: this.done };
  }
}

// ---------------------------------------------------------------- helpers

const textEncoder = new TextEncoder();

// One path segment: every byte but unreserved ones escaped, dots too, so
// that "." and ".." stay ids instead of path steps.
function segment(what, value) {
  let bytes;
  if (typeof value === 'string') {
    if (typeof value.isWellFormed === 'function' ? !value.isWellFormed() : !isWellFormedFallback(value)) {
      throw new TypeError(`floodgate: ${what} is not valid UTF-16 (a lone surrogate): ${JSON.stringify(value)}`);
    }
    bytes = textEncoder.encode(value);
  } else if (value instanceof Uint8Array) {
    bytes = value;
  } else {
    throw new TypeError(`floodgate: ${what} must be a string or Uint8Array, got ${value === null ? 'null' : typeof value}`);
  }
  if (bytes.length === 0) throw new RangeError(`floodgate: ${what} must not be empty`);
  let s = '';
  for (const b of bytes) {
    // A-Z a-z 0-9 - _ ~ stay; everything else (dots included) is %XX.
    if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x5f || b === 0x7e) {
      s += String.fromCharCode(b);
    } else {
      s += '%' + (b < 16 ? '0' : '') + b.toString(16).toUpperCase();
    }
  }
  return s;
}

function isWellFormedFallback(s) {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

function msArg(what, v, { allowZero = true } = {}) {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new RangeError(`floodgate: ${what} must be a number of milliseconds ${allowZero ? '>= 0' : '> 0'}, got ${String(v)}`);
  }
  return v;
}

function countArg(n, what = 'n', least = 1) {
  if (!Number.isInteger(n) || n < least) throw new RangeError(`floodgate: ${what} must be an integer >= ${least}, got ${String(n)}`);
  return n;
}

function idArg(what, v) {
  if (typeof v === 'string') {
    if (v === '') throw new RangeError(`floodgate: ${what} must not be empty`);
    return v;
  }
  throw new TypeError(`floodgate: ${what} must be a string, got ${v === null ? 'null' : typeof v}`);
}

function retryAfterHeader(headers) {
  const v = headers?.['retry-after'];
  if (!v) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n * 1000 : null; // an HTTP date: the server never sends one
}

// An error from fn that means "cancelled", not "the endpoint failed".
function isAbort(err) {
  return err != null && typeof err === 'object' && err.name === 'AbortError';
}

// ---------------------------------------------------------------- client

/**
 * Talks to one `floodgate serve`. Holds a keep-alive connection pool;
 * safe to share across the whole program. close() when done.
 */
export class Client {
  constructor({
    baseUrl = 'http://127.0.0.1:8080',
    token,
    timeoutMs = 2000,
    maxWaitMs = DEFAULT_MAX_WAIT_MS,
    ca,
    keepAliveMs = 30_000,
    maxSockets = 64,
  } = {}) {
    if (typeof baseUrl !== 'string') throw new TypeError('floodgate: baseUrl must be a string');
    msArg('timeoutMs', timeoutMs, { allowZero: false });
    msArg('maxWaitMs', maxWaitMs);
    msArg('keepAliveMs', keepAliveMs, { allowZero: false });
    if (!Number.isInteger(maxSockets) || maxSockets < 1) throw new RangeError(`floodgate: maxSockets must be an integer >= 1, got ${String(maxSockets)}`);
    // Printable ASCII, as the Python client: a control byte would otherwise
    // fail every request with Node's invalid-header error.
    if (token != null && (typeof token !== 'string' || !/^[\x21-\x7e]*$/.test(token))) {
      throw new TypeError('floodgate: token must be a string without spaces or line breaks (printable ASCII)');
    }
    let u;
    try {
      u = new URL(baseUrl);
    } catch {
      throw new TypeError(`floodgate: baseUrl must be http(s)://host:port or unix:///path, got ${JSON.stringify(baseUrl)}`);
    }
    // One Agent per client: keep-alive, LIFO (a few warm sockets, the rest
    // time out), free sockets closed after keepAliveMs idle (below the
    // server's 2-minute idle timeout, so the server rarely closes first).
    const agentOpts = { keepAlive: true, maxSockets, scheduling: 'lifo', timeout: keepAliveMs };
    if (u.protocol === 'unix:') {
      if (u.host !== '' || !u.pathname || u.pathname === '/') {
        throw new TypeError(`floodgate: a unix socket base URL is unix:///absolute/path.sock, got ${JSON.stringify(baseUrl)}`);
      }
      if (ca != null) throw new TypeError('floodgate: ca applies to https:// base URLs, not unix sockets');
      this._target = { socketPath: decodeURIComponent(u.pathname), host: 'localhost', port: undefined, prefix: '' };
      this._mod = http;
      this._agent = new http.Agent(agentOpts);
    } else if (u.protocol === 'http:' || u.protocol === 'https:') {
      if (!u.hostname || u.username || u.password || u.search || u.hash) {
        throw new TypeError(`floodgate: baseUrl must be http(s)://host:port[/prefix], got ${JSON.stringify(baseUrl)}`);
      }
      const tls = u.protocol === 'https:';
      if (ca != null && !tls) throw new TypeError('floodgate: ca applies to https:// base URLs');
      this._mod = tls ? https : http;
      this._agent = tls ? new https.Agent({ ...agentOpts, ...(ca != null ? { ca } : {}) }) : new http.Agent(agentOpts);
      this._target = {
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port || (tls ? 443 : 80),
        prefix: u.pathname.replace(/\/+$/, ''),
      };
    } else {
      throw new TypeError(`floodgate: baseUrl must be http(s)://host:port or unix:///path, got ${JSON.stringify(baseUrl)}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    this.maxWaitMs = maxWaitMs;
    Object.defineProperty(this, '_auth', { value: token ? 'Bearer ' + token : null, enumerable: false });
    this._maxSockets = maxSockets;
  }

  /** Closes the kept-alive connections. Calls after close() open new ones. */
  close() {
    this._agent.destroy();
  }

  toString() {
    return `Client(${this.baseUrl})`; // never the token
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return this.toString();
  }

  // -- plumbing

  /**
   * Sends one request and returns { status, body, headers } for a 2xx;
   * throws FloodgateError otherwise.
   *
   * Never counted twice: a request is sent again only when it provably
   * never reached the server: the connection could not be made, or it went
   * out on a kept-alive socket that the server had already closed (the
   * write failed with EPIPE: "ended by the other party"). Before anything is
   * written the event loop gets a turn (see _settle), so that a close
   * the server sent while the socket sat idle is read first and the socket
   * dropped, instead of being found by the request. A request that may have
   * been read (the server closed or reset the connection after our write,
   * before any answer) is sent again only if it is idempotent; otherwise it
   * is a TransportError.
   */
  async _request(method, path, body, { timeoutMs = this.timeoutMs, idempotent = method === 'GET' || method === 'DELETE' } = {}) {
    const signal = AbortSignal.timeout(timeoutMs);
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    // A whole pool of stale sockets (a sidecar restart) needs one attempt
    // each, then a fresh connection.
    for (let attempt = 0; ; attempt++) {
      await this._settle();
      try {
        return await this._send(method, path, data, signal, idempotent, timeoutMs);
      } catch (err) {
        if (!(err instanceof Resend) || attempt >= this._maxSockets || signal.aborted) throw err.error ?? err;
      }
    }
  }

  // Lets the event loop read what arrived on idle sockets (a server's close)
  // before one of them is picked: two turns, since an immediate set during
  // the poll phase runs before the next poll. Nothing to wait for when no
  // kept-alive socket is idle.
  async _settle() {
    const free = this._agent.freeSockets;
    for (const k in free) {
      if (free[k].length > 0) {
        await new Promise(setImmediate);
        await new Promise(setImmediate);
        return;
      }
    }
  }

  _send(method, path, data, signal, idempotent, timeoutMs) {
    const t = this._target;
    const headers = { Accept: 'application/json', 'User-Agent': 'floodgate-node/' + version };
    if (data) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = data.length;
    }
    if (this._auth) headers.Authorization = this._auth;
    const what = `${method} ${this.baseUrl}${path}`;
    return new Promise((resolve, reject) => {
      let answered = false; // a response byte arrived
      const req = this._mod.request({
        agent: this._agent,
        method,
        host: t.host,
        port: t.port,
        socketPath: t.socketPath,
        path: t.prefix + path,
        headers,
        signal,
      });
      req.on('response', (res) => {
        answered = true;
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (e) => reject(transportError(what, e, signal, timeoutMs)));
        res.on('aborted', () => reject(transportError(what, new Error('connection closed mid-answer'), signal, timeoutMs)));
        res.on('end', () => {
          if (!res.complete) {
            reject(transportError(what, new Error('connection closed mid-answer'), signal, timeoutMs));
            return;
          }
          const raw = Buffer.concat(chunks).toString('utf8');
          let parsed = null;
          if (raw.trim() !== '') {
            try {
              parsed = JSON.parse(raw);
            } catch {
              const e = new FloodgateError(res.statusCode, `server sent invalid JSON: ${JSON.stringify(raw.slice(0, 200))}`);
              reject(e);
              return;
            }
          }
          if (res.statusCode >= 200 && res.statusCode < 300) {
            resolve({ status: res.statusCode, body: parsed, headers: res.headers });
          } else {
            reject(apiError(res.statusCode, parsed, raw, res.headers, path));
          }
        });
      });
      req.on('error', (err) => {
        if (!answered && !signal.aborted) {
          const code = err.code;
          // Never sent: a kept-alive socket the server had closed before our write
          // (Node's writeAfterFIN, or the kernel's EPIPE on the first write).
          const closedBefore = req.reusedSocket && code === 'EPIPE';
          // Read or not, we cannot tell: only an idempotent request goes again.
          const maybeRead = req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE') && idempotent;
          if (closedBefore || maybeRead) {
            reject(new Resend(transportError(what, err, signal, timeoutMs)));
            return;
          }
        }
        reject(transportError(what, err, signal, timeoutMs));
      });
      req.end(data ?? undefined);
    });
  }

  async _decision(path, body, { timeoutMs, build = (d, h) => decision(d, retryAfterHeader(h)), want = 'a decision' } = {}) {
    let got;
    try {
      got = await this._request('POST', path, body, { timeoutMs }); // every decision counts: never resent
    } catch (err) {
      // A policy that fails closed while Redis is down answers 503 with its
      // denial: that is a decision, not a broken sidecar.
      if (err instanceof FloodgateError && err.status === 503 && err.decision) return err.decision;
      throw err;
    }
    if (got.body === null || typeof got.body !== 'object' || Array.isArray(got.body)) {
      throw new FloodgateError(got.status, `server sent ${JSON.stringify(got.body)}, want ${want} object`);
    }
    return build(got.body, got.headers);
  }

  async _get(path) {
    const got = await this._request('GET', path);
    return got.body && typeof got.body === 'object' ? got.body : {};
  }

  // -- users

  /** Counts one request of user if every limit allows it. A denial is a Decision, not an error. */
  async allow(user) {
    return this._decision(`/v1/users/${segment('user', user)}/allow`);
  }

  /** One request for each listed user (in order, one round trip); a user listed twice makes two. */
  async allowMany(users) {
    if (!Array.isArray(users) || users.length === 0) throw new TypeError('floodgate: allowMany needs a non-empty array of user ids');
    users.forEach((u, i) => idArg(`users[${i}]`, u));
    return this._decision('/v1/allow-many', { users }, {
      want: 'an allow-many',
      build: (d) => {
        if (!Array.isArray(d.decisions) || d.decisions.length !== users.length) {
          throw new FloodgateError(200, `server sent ${Array.isArray(d.decisions) ? d.decisions.length : 'no'} decisions for ${users.length} users`);
        }
        return d.decisions.map((x) => decision(x ?? {}));
      },
    });
  }

  /** user's state, counting nothing. */
  async peek(user) {
    const d = await this._get(`/v1/users/${segment('user', user)}`);
    return {
      user: str(d.user),
      remaining: int(d.remaining),
      retryAfterMs: int(d.retry_after_ms),
      reason: str(d.reason, 'none'),
      cooldownLeftMs: int(d.cooldown_left_ms),
      entries: int(d.entries),
      resetAfterMs: int(d.reset_after_ms),
    };
  }

  /** Forgets user's cooldown and window (a moderator's pardon). */
  async reset(user) {
    await this._request('DELETE', `/v1/users/${segment('user', user)}`);
  }

  // -- backoff

  _ep(name, endpoint) {
    return `/v1/backoff/${segment('name', name)}/endpoints/${segment('endpoint', endpoint)}`;
  }

  /** The first usable endpoint in order (or null) and its decision. */
  async pick(name, ...endpoints) {
    if (endpoints.length === 1 && Array.isArray(endpoints[0])) endpoints = endpoints[0];
    if (endpoints.length === 0) throw new TypeError('floodgate: pick needs at least one endpoint');
    endpoints.forEach((e, i) => idArg(`endpoints[${i}]`, e));
    const got = await this._decision(`/v1/backoff/${segment('name', name)}/pick`, { endpoints }, {
      build: (d, h) => ({ endpoint: d.endpoint || null, decision: decision(d, retryAfterHeader(h)) }),
    });
    return 'decision' in got ? got : { endpoint: null, decision: got }; // a 503 denial names no endpoint
  }

  /** May endpoint be called now? probe: true means you hold its half-open probe (token). */
  async check(name, endpoint) {
    return this._decision(`${this._ep(name, endpoint)}/check`);
  }

  /** Reports a failed call: the endpoint backs off. */
  async failure(name, endpoint) {
    return this._decision(`${this._ep(name, endpoint)}/failure`);
  }

  /** Reports a successful call: the endpoint is closed again. */
  async success(name, endpoint) {
    await this._request('POST', `${this._ep(name, endpoint)}/success`, undefined, { idempotent: true });
  }

  /** Hands back a probe without counting success or failure. */
  async abandon(name, endpoint, token) {
    idArg('token', token);
    await this._request('POST', `${this._ep(name, endpoint)}/abandon`, { token }, { idempotent: true });
  }

  /** endpoint's backoff state, counting nothing. */
  async endpoint(name, endpoint) {
    const d = await this._get(this._ep(name, endpoint));
    return {
      state: str(d.state),
      opens: int(d.opens),
      failures: int(d.failures),
      delayMs: int(d.delay_ms),
      retryAfterMs: int(d.retry_after_ms),
      probing: d.probing === true,
    };
  }

  /**
   * Runs fn() against endpoint under its backoff, like gobreaker's Execute:
   * check first (Denied when it is backing off or another caller probes it),
   * then success when fn's promise resolves, failure when it rejects (the
   * rejection is passed on). A rejection that is a cancellation (an error
   * named AbortError, or any rejection once opts.signal is aborted) counts
   * as neither: a held half-open probe is handed back (abandon) so that the
   * next caller may probe at once. fn gets opts.signal.
   */
  async call(name, endpoint, fn, { signal } = {}) {
    if (typeof fn !== 'function') throw new TypeError('floodgate: call needs a function');
    const d = await this.check(name, endpoint);
    if (!d.allowed) throw new Denied(d, `endpoint ${JSON.stringify(endpoint)}`);
    let result;
    try {
      result = await fn(signal);
    } catch (err) {
      if (isAbort(err) || signal?.aborted) {
        if (d.probe && d.token) await this.abandon(name, endpoint, d.token).catch(() => {});
      } else {
        await this.failure(name, endpoint).catch(() => {}); // fn's error matters more
      }
      throw err;
    }
    await this.success(name, endpoint).catch(() => {}); // a probe left held frees itself after its lease
    return result;
  }

  // -- buckets

  /** Takes n tokens from API bucket name now, or says when (never waits). */
  async bucketAllow(name, n = 1) {
    return this._decision(`/v1/buckets/${segment('name', name)}/allow`, { n: countArg(n) });
  }

  /**
   * Takes n tokens from API bucket name, waiting on the server at most
   * timeoutMs (default: the server's maximum). When the wait would pass it,
   * answers at once with allowed false and retryAfterMs, having taken nothing.
   */
  async wait(name, { n = 1, timeoutMs } = {}) {
    const body = { n: countArg(n) };
    const httpMs = this._waitFor(body, msArg('timeoutMs', timeoutMs));
    return this._decision(`/v1/buckets/${segment('name', name)}/wait`, body, { timeoutMs: httpMs });
  }

  _waitFor(body, t) {
    if (t != null) body.timeout_ms = Math.max(1, Math.ceil(t));
    return this.timeoutMs + (t != null ? t : this.maxWaitMs);
  }

  // -- slots

  /**
   * Takes a slot of pool name for holder: a Lease, or the denial decision
   * (reason "slots"). wait false answers at once; wait true (the default)
   * queues fairly up to timeoutMs (default: the server's maximum).
   */
  async acquire(name, holder, { wait = true, timeoutMs } = {}) {
    idArg('holder', holder);
    const t = msArg('timeoutMs', timeoutMs);
    const body = { holder, wait: Boolean(wait) };
    const httpMs = wait ? this._waitFor(body, t) : undefined;
    return this._decision(`/v1/slots/${segment('name', name)}/acquire`, body, {
      timeoutMs: httpMs,
      want: 'an acquire',
      build: (d, h) => (d.acquired === true
        ? new Lease(this, name, str(d.token), int(d.lease_ms), d.degraded === true)
        : slotDenial(d, retryAfterHeader(h))),
    });
  }

  /** Rebuilds a Lease from its token (e.g. one handed over by another process). */
  lease(name, token) {
    idArg('token', token);
    return new Lease(this, name, token, 0, false);
  }

  /**
   * Holds a slot of pool name while fn(lease) runs, then releases it,
   * whatever fn did. Denied (reason "slots") when no slot freed up in time.
   * If fn threw, a failed release is ignored (the lease runs out by itself)
   * and fn's error is passed on; otherwise a failed release is thrown, e.g.
   * LeaseLost when the work outlasted the lease without refresh().
   */
  async withSlot(name, holder, fn, { wait = true, timeoutMs } = {}) {
    if (typeof fn !== 'function') throw new TypeError('floodgate: withSlot needs a function');
    const got = await this.acquire(name, holder, { wait, timeoutMs });
    if (!(got instanceof Lease)) throw new Denied(got, `slot of ${JSON.stringify(name)}`);
    const release = () => got.release();
    return holding(got, fn, { over: () => got.released, abort: release, end: release });
  }

  /** Pool name's size, slots in use and waiters. */
  async slots(name) {
    const d = await this._get(`/v1/slots/${segment('name', name)}`);
    return { size: int(d.size), inUse: int(d.in_use), waiting: int(d.waiting) };
  }

  // -- token budgets

  _budget(name, user) {
    return `/v1/budgets/${segment('name', name)}/users/${segment('user', user)}`;
  }

  /**
   * Holds units (the estimate: prompt tokens + max_tokens) of user's budget
   * name if they fit; the decision's reservation names them. A denial is a
   * decision (reason "budget", retryAfterMs: when enough of the window ages
   * out for units).
   */
  async reserve(name, user, units) {
    return this._decision(`${this._budget(name, user)}/reserve`, { units: countArg(units, 'units') });
  }

  /**
   * Replaces a reservation's estimate with what the call cost (units, 0 or
   * more; above the estimate too). StaleReservation (409) when it was
   * settled or cancelled already, or its lease ended.
   */
  async settle(name, user, reservation, units) {
    idArg('reservation', reservation);
    await this._request('POST', `${this._budget(name, user)}/settle`, { reservation, units: countArg(units, 'units', 0) });
  }

  /** Frees a reservation whose call did not happen (StaleReservation as settle). */
  async cancel(name, user, reservation) {
    idArg('reservation', reservation);
    await this._request('POST', `${this._budget(name, user)}/cancel`, { reservation });
  }

  /** Spends units known up front, if they fit: reserve and settle in one. */
  async charge(name, user, units) {
    return this._decision(`${this._budget(name, user)}/charge`, { units: countArg(units, 'units') });
  }

  /** user's state in budget name (spent, reserved, remaining); changes nothing. */
  async budget(name, user) {
    const d = await this._get(this._budget(name, user));
    return {
      budget: str(d.budget),
      user: str(d.user),
      limit: int(d.limit),
      windowMs: int(d.window_ms),
      spent: int(d.spent),
      reserved: int(d.reserved),
      reservations: int(d.reservations),
      remaining: int(d.remaining),
      oldestAgesOutMs: int(d.oldest_ages_out_ms),
      resetAfterMs: int(d.reset_after_ms),
    };
  }

  /**
   * Reserves estimate units of user's budget name, runs fn(reservation) and
   * returns its result; fn reports the call's usage with
   * `await reservation.settle(usage.total_tokens)`. Denied (reason
   * "budget") when estimate does not fit; fn does not run. When fn throws
   * (a cancellation too) before settling, the reservation is cancelled and
   * the error passed on; when fn returns without settling, it settles at
   * the estimate.
   */
  async withBudget(name, user, estimate, fn) {
    if (typeof fn !== 'function') throw new TypeError('floodgate: withBudget needs a function');
    const d = await this.reserve(name, user, estimate);
    if (!d.allowed) throw new Denied(d, `budget ${JSON.stringify(name)} for ${estimate} units`);
    const r = new Reservation(this, name, user, estimate, d);
    return holding(r, fn, { over: () => r.done, abort: () => r.cancel(), end: () => r.settle(estimate) });
  }

  // -- ops

  /** The server process answers (/healthz). */
  async healthy() {
    return this._probe('/healthz');
  }

  /** The server answers and reaches Redis (/readyz). */
  async ready() {
    return this._probe('/readyz');
  }

  /**
   * /readyz in full: Redis's maxmemory-policy and whether it can evict the
   * limits. FloodgateError (503) when Redis is unreachable.
   */
  async readiness() {
    const d = await this._get('/readyz');
    return {
      maxmemoryPolicy: str(d.maxmemory_policy),
      evictionUnsafe: d.eviction_unsafe === true,
      evictedKeys: int(d.evicted_keys),
      warning: str(d.warning),
    };
  }

  async _probe(path) {
    try {
      await this._request('GET', path);
      return true;
    } catch (err) {
      if (err instanceof FloodgateError) return false;
      throw err;
    }
  }
}

// Resend carries a failure after which the request provably did not count
// (or is idempotent): request() tries again on another connection.
class Resend extends Error {
  constructor(error) {
    super(error.message);
    this.error = error;
  }
}

function transportError(what, err, signal, timeoutMs) {
  if (signal?.aborted) return new TransportError(`${what}: timed out${timeoutMs ? ` after ${timeoutMs} ms` : ''}`, err);
  return new TransportError(`${what}: ${err.code ? err.code + ': ' : ''}${err.message}`, err);
}

function apiError(status, body, raw, headers, path) {
  const ra = retryAfterHeader(headers);
  let msg = '';
  let dec = null;
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    msg = str(body.error);
    // error is this message, not a user's failure in an allowMany: the
    // decision goes without it, as in the Python client.
    const rest = { ...body, error: undefined };
    if ('allowed' in body) dec = decision(rest, ra);
    else if ('acquired' in body) dec = slotDenial(rest, ra); // slots: {"acquired": false, "reason": ...}
  }
  if (!msg) msg = raw.slice(0, 200).trim() || `HTTP ${status}`;
  const conflict = path.startsWith('/v1/budgets/') ? StaleReservation : LeaseLost;
  const Cls = status === 409 ? conflict : FloodgateError;
  return new Cls(status, msg, { retryAfterMs: ra, decision: dec });
}

// ---------------------------------------------------------------- chat bots

const seconds = (ms) => Math.ceil(ms / 1000);

/**
 * What a chat bot answers to one message, under every limit of one
 * `floodgate serve` shared by all its replicas: the logic the recipes of
 * docs/bots.md (tmi.js, @twurple/chat) share, written once. fg is the
 * bot's Client; askLLM(endpoint, question) and lookup(term) its own async
 * functions. reply(user, message) answers two commands:
 *
 * - `!ask <question>`: fg.allow(user) (denied: "wait 6s (cooldown)", the
 *   wait rounded up), fg.pick('llm', ...endpoints) ("the LLM is resting,
 *   try again in 3s" when every endpoint backs off; a half-open probe
 *   pick took is handed back, for fg.call to take), then askLLM inside
 *   fg.withSlot('llm', user, ..., { timeoutMs: 10000 }) and fg.call (a
 *   throw backs the endpoint off).
 * - `!wiki <term>`: fg.allow(user), then a token of the API bucket
 *   'wikipedia' waited for up to 3 s ("Wikipedia is busy, try again soon"),
 *   then lookup(term).
 *
 * Denied (no slot in time, the endpoint probed by another caller): "busy
 * (slots), try again in 4s"; any other FloodgateError: "the rate limiter is
 * unreachable, try again later"; anything askLLM or lookup throws: "the LLM
 * failed, sorry". An answer stands when only the slot's release after it
 * failed (the lease ran out while the LLM answered).
 */
export class ChatReplies {
  constructor(fg, { endpoints, askLLM, lookup }) {
    if (!Array.isArray(endpoints) || endpoints.length === 0) throw new TypeError('floodgate: ChatReplies needs an array of LLM endpoints');
    if (typeof askLLM !== 'function' || typeof lookup !== 'function') throw new TypeError('floodgate: ChatReplies needs askLLM and lookup functions');
    this.fg = fg;
    this.endpoints = [...endpoints];
    this.askLLM = askLLM;
    this.lookup = lookup;
  }

  /**
   * The reply to user's message: { text, answered } (answered false: the
   * text says why there is no answer and when to ask again), or null when
   * the message is not a command.
   */
  async reply(user, message) {
    const [command, ...rest] = message.trim().split(/\s+/);
    if (command !== '!ask' && command !== '!wiki') return null;
    const answer = (text) => ({ text, answered: true });
    const refusal = (text) => ({ text, answered: false });
    const fg = this.fg;
    try {
      const d = await fg.allow(user); // cooldown + window, shared by every replica
      if (!d.allowed) return refusal(`wait ${seconds(d.retryAfterMs)}s (${d.reason})`);
      if (command === '!wiki') {
        const b = await fg.wait('wikipedia', { timeoutMs: 3000 }); // the API's own rate
        return b.allowed ? answer(await this.lookup(rest.join(' '))) : refusal('Wikipedia is busy, try again soon');
      }
      const { endpoint, decision } = await fg.pick('llm', ...this.endpoints); // skip endpoints backing off
      if (!endpoint) return refusal(`the LLM is resting, try again in ${seconds(decision.retryAfterMs)}s`);
      if (decision.probe) await fg.abandon('llm', endpoint, decision.token); // pick took the probe: call takes it back
      let text; // stands when only the release after it fails (the lease ran out)
      await fg.withSlot('llm', user, async () => { // at most N viewers in the LLM at once
        text = await fg.call('llm', endpoint, () => this.askLLM(endpoint, rest.join(' '))); // a throw backs it off
      }, { timeoutMs: 10_000 }).catch((err) => { if (text === undefined) throw err; });
      return answer(text);
    } catch (err) {
      if (err instanceof Denied) return refusal(`busy (${err.reason}), try again in ${seconds(err.retryAfterMs)}s`);
      if (err instanceof FloodgateError) return refusal('the rate limiter is unreachable, try again later');
      return refusal('the LLM failed, sorry');
    }
  }
}
