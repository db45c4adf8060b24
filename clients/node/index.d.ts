// Types for floodgate-client (index.js).

/** A user id, breaker, endpoint, bucket or pool name: sent as one URL-quoted path segment. */
export type Id = string | Uint8Array;

/** Why a request was denied ("none" when allowed). */
export type Reason = 'none' | 'cooldown' | 'window' | 'rate' | 'backoff' | 'probing' | 'slots' | 'budget' | 'redis_down';

/**
 * The answer to one request, the same for every policy. With the defaults
 * (10 s cooldown, 20 per hour) a viewer's first message gets
 * `{ allowed: true, reason: 'none', remaining: 19, retryAfterMs: 0, resetAfterMs: 3600000, ... }`;
 * a second one 4 s later `{ allowed: false, reason: 'cooldown', remaining: 19, retryAfterMs: 6000, ... }`.
 */
export interface Decision {
  /** The request may go ahead (and has been counted). */
  allowed: boolean;
  reason: Reason;
  /** How many more requests the limit admits now (-1: no count). */
  remaining: number;
  /** Milliseconds before the same request would be allowed (0 when allowed); rounded up. */
  retryAfterMs: number;
  /** Milliseconds until the policy's state is empty again. */
  resetAfterMs: number;
  /** Redis was unreachable and the server's failure mode decided. */
  degraded: boolean;
  /** A repeat denial answered from the server's deny cache. */
  cached: boolean;
  /** Backoff only: this caller holds the endpoint's single half-open probe. */
  probe?: boolean;
  /** Backoff only: names the probe for abandon(). */
  token?: string;
  /** Budget reserve only, when allowed: names the units held, for settle() or cancel(). */
  reservation?: string;
  /** allowMany only: Redis failed this user's decision (not allowed, not counted). */
  error?: string;
}

/** A user's state, read without counting (peek). */
export interface UserStatus {
  user: string;
  /** Requests the window admits now (-1: no window limit). */
  remaining: number;
  retryAfterMs: number;
  reason: Reason;
  cooldownLeftMs: number;
  /** Accepted requests in the window. */
  entries: number;
  resetAfterMs: number;
}

/** A backoff endpoint's state (endpoint). */
export interface EndpointStatus {
  state: 'closed' | 'half-open' | 'open' | string;
  opens: number;
  failures: number;
  delayMs: number;
  retryAfterMs: number;
  probing: boolean;
}

/** A slot pool's occupancy (slots). */
export interface SlotsStatus {
  size: number;
  inUse: number;
  waiting: number;
}

/**
 * A user's state in a token budget (budget()), changing nothing. With 20,000
 * units an hour, a viewer who settled a call at 900 and holds a reservation
 * of 1,500 reads `{ spent: 900, reserved: 1500, reservations: 1, remaining: 17600, ... }`.
 */
export interface BudgetStatus {
  budget: string;
  user: string;
  /** Units one user may spend per window. */
  limit: number;
  windowMs: number;
  /** Units settled or charged in the window (and expired reservations, at their estimate). */
  spent: number;
  /** Units held by reservations in flight, and how many. */
  reserved: number;
  reservations: number;
  /** The largest estimate reserve() admits now. */
  remaining: number;
  /** Until the oldest spend leaves the window. */
  oldestAgesOutMs: number;
  /** Until the window holds nothing. */
  resetAfterMs: number;
}

/**
 * /readyz (readiness()): what Redis's maxmemory-policy means for the limits.
 * Not ready is a FloodgateError (503), not a Readiness.
 */
export interface Readiness {
  /** Redis's policy, e.g. 'noeviction'; '' when Redis would not say (an ACL without +info). */
  maxmemoryPolicy: string;
  /** Redis can evict Floodgate's keys (maxmemory set, a policy other than noeviction): limits forgotten silently. */
  evictionUnsafe: boolean;
  /** Keys of any program Redis evicted since it started. */
  evictedKeys: number;
  /** When unsafe, what happens and the fix; '' otherwise. */
  warning: string;
}

export interface ClientOptions {
  /** `http(s)://host:port`, optionally with a path prefix (`https://proxy/floodgate/` sends `/floodgate/v1/...`), or `unix:///path.sock`. Default `http://127.0.0.1:8080`. */
  baseUrl?: string;
  /** The server's FLOODGATE_HTTP_TOKEN, sent as a Bearer token. */
  token?: string;
  /** Milliseconds each call may take (connect plus answer). Default 2000. Waits get theirs on top. */
  timeoutMs?: number;
  /** What a wait without timeoutMs may take on the server (its FLOODGATE_HTTP_MAX_WAIT). Default 30000. */
  maxWaitMs?: number;
  /** https only: CA certificate(s) (PEM) to trust instead of Node's bundled roots. Certificates are always verified. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** An idle kept-alive connection is closed after this many ms. Default 30000. */
  keepAliveMs?: number;
  /** At most this many connections at once. Default 64. */
  maxSockets?: number;
}

/** An error answer from the server, or (TransportError) no answer. */
export class FloodgateError extends Error {
  /** The HTTP status; null for a TransportError. */
  status: number | null;
  /** The server's {"error": ...} text, or what went wrong on the way. */
  message: string;
  /** The Retry-After header in milliseconds, when the server sent one. */
  retryAfterMs: number | null;
  /** The decision the body carried, if any. */
  decision: Decision | null;
}

/** The server could not be reached, or did not answer within the timeout. */
export class TransportError extends FloodgateError {
  status: null;
}

/** A slot lease ran out (or was released) before refresh/release (409). */
export class LeaseLost extends FloodgateError {}

/** settle() or cancel() named no live reservation of the user (409); nothing changed. */
export class StaleReservation extends FloodgateError {}

/** call(), withSlot() or withBudget() could not go ahead now. */
export class Denied extends Error {
  decision: Decision;
  reason: Reason;
  retryAfterMs: number;
}

/** A held slot: refresh() before leaseMs passes, release() when done. */
export class Lease {
  readonly client: Client;
  readonly name: Id;
  /** Opaque; another process may rebuild the lease with client.lease(name, token). */
  readonly token: string;
  readonly leaseMs: number;
  readonly degraded: boolean;
  released: boolean;
  refresh(): Promise<void>;
  release(): Promise<void>;
}

/** Units withBudget() holds for one call: settle(actual) when its usage is known, cancel() if it did not happen. */
export class Reservation {
  readonly client: Client;
  readonly name: Id;
  readonly user: Id;
  readonly estimate: number;
  /** The reserve() decision. */
  readonly decision: Decision;
  readonly token: string;
  /** settle() or cancel() was tried. */
  done: boolean;
  settle(units: number): Promise<void>;
  cancel(): Promise<void>;
}

export const version: string;

export class Client {
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly maxWaitMs: number;
  /** Closes the kept-alive connections. */
  close(): void;

  /** Counts one request of user if every limit allows it. A denial is a Decision, not an error. */
  allow(user: Id): Promise<Decision>;
  /** One request per listed user, in order, in one round trip. */
  allowMany(users: string[]): Promise<Decision[]>;
  peek(user: Id): Promise<UserStatus>;
  reset(user: Id): Promise<void>;

  /** The first endpoint of breaker name not backing off (null when none) and its decision. */
  pick(name: Id, ...endpoints: string[]): Promise<{ endpoint: string | null; decision: Decision }>;
  pick(name: Id, endpoints: string[]): Promise<{ endpoint: string | null; decision: Decision }>;
  check(name: Id, endpoint: Id): Promise<Decision>;
  failure(name: Id, endpoint: Id): Promise<Decision>;
  success(name: Id, endpoint: Id): Promise<void>;
  abandon(name: Id, endpoint: Id, token: string): Promise<void>;
  endpoint(name: Id, endpoint: Id): Promise<EndpointStatus>;
  /**
   * check, run fn, report success or failure (gobreaker's Execute). Denied when
   * the endpoint is backing off. A cancellation (AbortError, or options.signal
   * aborted) hands a held probe back instead.
   */
  call<T>(name: Id, endpoint: Id, fn: (signal?: AbortSignal) => T | Promise<T>, options?: { signal?: AbortSignal }): Promise<T>;

  bucketAllow(name: Id, n?: number): Promise<Decision>;
  wait(name: Id, options?: { n?: number; timeoutMs?: number }): Promise<Decision>;

  acquire(name: Id, holder: string, options?: { wait?: boolean; timeoutMs?: number }): Promise<Lease | Decision>;
  lease(name: Id, token: string): Lease;
  /** Holds a slot while fn runs and always releases it. Denied when none freed up in time. */
  withSlot<T>(name: Id, holder: string, fn: (lease: Lease) => T | Promise<T>, options?: { wait?: boolean; timeoutMs?: number }): Promise<T>;
  slots(name: Id): Promise<SlotsStatus>;

  /** Holds units (the estimate) of user's budget name if they fit; decision.reservation names them. */
  reserve(name: Id, user: Id, units: number): Promise<Decision>;
  /** Replaces a reservation's estimate with what the call cost (0 or more). StaleReservation when not held. */
  settle(name: Id, user: Id, reservation: string, units: number): Promise<void>;
  /** Frees a reservation whose call did not happen. */
  cancel(name: Id, user: Id, reservation: string): Promise<void>;
  /** Spends units known up front, if they fit. */
  charge(name: Id, user: Id, units: number): Promise<Decision>;
  budget(name: Id, user: Id): Promise<BudgetStatus>;
  /**
   * Reserves estimate, runs fn (which reports the usage with reservation.settle(units))
   * and returns its result. Denied when estimate does not fit. Cancels when fn throws
   * before settling; settles at the estimate when fn returns without settling.
   */
  withBudget<T>(name: Id, user: Id, estimate: number, fn: (reservation: Reservation) => T | Promise<T>): Promise<T>;

  healthy(): Promise<boolean>;
  ready(): Promise<boolean>;
  /** /readyz in full; FloodgateError (503) when Redis is unreachable. */
  readiness(): Promise<Readiness>;
}

/** What ChatReplies.reply() answers: the text, and whether it is an answer (false: why there is none and when to ask again). */
export interface Reply {
  text: string;
  answered: boolean;
}

/**
 * What a chat bot answers to one message under every limit (the recipes of docs/bots.md use it):
 * `!ask <question>` goes to askLLM through allow, pick, withSlot and call; `!wiki <term>` to
 * lookup after a token of the 'wikipedia' bucket. Denials and failures become a short reply.
 */
export class ChatReplies {
  constructor(
    fg: Client,
    options: {
      endpoints: string[];
      askLLM: (endpoint: string, question: string) => Promise<string>;
      lookup: (term: string) => Promise<string>;
    },
  );
  readonly fg: Client;
  readonly endpoints: string[];
  /** The reply to user's message, or null when the message is not a command (`!ask`, `!wiki`). */
  reply(user: string, message: string): Promise<Reply | null>;
}
