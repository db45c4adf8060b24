"""Client: the blocking client, over http.client with kept-alive connections."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _proto as p
from ._proto import (
    BudgetStatus,
    Decision,
    Denied,
    EndpointStatus,
    FloodgateError,
    Id,
    Readiness,
    SlotsStatus,
    TransportError,
    UserStatus,
)

T = TypeVar("T")


class Lease(p._LeaseBase):
    """A held slot. refresh() before lease seconds pass; release() when done.

    Client.slot() releases it for you. token is opaque and may be handed to
    another process, which can rebuild it with Client.lease(name, token).
    """

    client: "Client"

    def refresh(self) -> None:
        """Extend the lease by its full length; LeaseLost if it already ran out."""
        self.client._send(p.op_lease(self.name, self.token, "refresh"))

    def release(self) -> None:
        """Give the slot back; LeaseLost if it had already run out or been released."""
        self.client._send(p.op_lease(self.name, self.token, "release"))
        self.released = True


class Reservation(p._ReservationBase):
    """Units a budget_call() holds for one LLM call: settle(actual) once its
    usage is known; cancel() if the call did not happen.

    decision is the reserve() Decision (remaining, reset_after); token its
    .reservation. done turns True once settle() or cancel() is tried: a
    settle that failed is never followed by a cancel (the reservation then
    counts as its estimate, never less than the call used).
    """

    client: "Client"

    def settle(self, units: int) -> None:
        """Record what the call cost, above the estimate too (StaleReservation
        if the reservation's lease ended first)."""
        p._count(units, "units", 0)
        self.done = True
        self.client.settle(self.name, self.user, self.token, units)

    def cancel(self) -> None:
        """Free the reservation: nothing of it counts."""
        self.done = True
        self.client.cancel(self.name, self.user, self.token)


@contextlib.contextmanager
def _holding(over: Callable[[], bool], abort: Callable[[], None], end: Callable[[], None]) -> Iterator[None]:
    """The with block of slot() and budget_call(): end() after it, abort()
    instead when it raised (errors doing so suppressed: the block's own
    matters more); neither once over() says the block ended it itself."""
    try:
        yield
    except BaseException:
        if not over():
            with contextlib.suppress(FloodgateError):
                abort()
        raise
    if not over():
        end()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class _Pool:
    """Idle kept-alive connections, at most size of them; thread-safe.

    A thread that finds none idle opens a new one, so a burst of threads
    is never serialised; past size, connections are closed after use.
    """

    def __init__(self, target: p._Target, size: int) -> None:
        self.target = target
        self.size = size
        self.idle: List[http.client.HTTPConnection] = []
        self.lock = threading.Lock()
        self.closed = False

    def get(self, timeout: float, fresh: bool) -> Tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was used before."""
        while not fresh:
            with self.lock:
                if not self.idle:
                    break
                conn = self.idle.pop()
            if p._readable(conn.sock):  # closed by the server while idle
                conn.close()
                continue
            conn.timeout = timeout
            conn.sock.settimeout(timeout)
            return conn, True
        t = self.target
        if t.scheme == "unix":
            return _UnixConnection(t.path, timeout), False
        if t.scheme == "https":
            return http.client.HTTPSConnection(t.hostname, t.port, timeout=timeout, context=t.ssl), False
        return http.client.HTTPConnection(t.hostname, t.port, timeout=timeout), False

    def put(self, conn: http.client.HTTPConnection) -> None:
        with self.lock:
            if not self.closed and len(self.idle) < self.size:
                self.idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
        for c in idle:
            c.close()


class Client(p._ClientBase[Lease]):
    """Talks to one ``floodgate serve``; safe to share between threads.

    base_url: the server: "http://127.0.0.1:8080" (the default),
        "https://host:port", either with a path prefix for a server behind
        a reverse proxy ("https://proxy/floodgate" sends /floodgate/v1/...,
        /floodgate/healthz; trailing slashes dropped), or
        "unix:///path/to/floodgate.sock" (the path is the socket). The
        forms of the Node client's baseUrl; no query, fragment or user.
    token: FLOODGATE_HTTP_TOKEN of the server, sent as a Bearer token.
    timeout: seconds each call may take (connect plus answer); waits
        (wait(), slot(wait=True)) get their own timeout on top. Every call
        that does not wait takes timeout= to override it.
    max_wait: what a wait without timeout may take on the server
        (FLOODGATE_HTTP_MAX_WAIT there, 30 s by default).
    ca_file, ssl_context: https only. The server's certificate is verified
        against the system CAs by default; ca_file trusts a private CA
        instead, ssl_context replaces the whole TLS policy.
    pool_size: idle kept-alive connections kept (10).

    Connections are kept alive and reused. One the server closed while
    idle (its idle timeout, a restart) is noticed before a request is
    written to it; a request is sent again only when it provably did not
    reach the server (the write failed) or when it is idempotent (GET,
    DELETE, success, abandon, refresh), so no request is ever counted
    twice.
    HTTP(S)_PROXY variables are ignored: the sidecar is next to the bot.
    """

    _lease_type = Lease

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: Optional[str] = None,
        timeout: float = 2.0,
        *,
        max_wait: float = p.DEFAULT_MAX_WAIT,
        ca_file: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        pool_size: int = 10,
    ) -> None:
        super().__init__(base_url, token, timeout, max_wait, ca_file, ssl_context)
        self._pool = _Pool(self._target, p._count(pool_size, "pool_size", 0))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle connections; the client stays usable."""
        self._pool.close()
        self._pool = _Pool(self._target, self._pool.size)

    # -- transport

    def _send(self, op: "p._Op[T]", timeout: Optional[float] = None) -> T:
        t = self._op_timeout(op, timeout)
        what = f"{op.method} {self.base_url}{op.path}"
        headers = p.headers_for(self.token, op.body)
        pool = self._pool
        fresh = False
        while True:
            try:
                conn, reused = pool.get(t, fresh)
            except OSError as e:
                raise TransportError(f"{what}: {e.__class__.__name__}: {e}") from None
            try:
                conn.request(op.method, self._target.prefix + op.path, body=op.body, headers=headers)
            except (socket.timeout, TimeoutError):
                conn.close()
                raise TransportError(f"{what}: timed out after {t}s") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                # The request (one write) did not get out whole, so the
                # server cannot have acted on it: safe to send again once,
                # on a new connection, if this one had been idle.
                if reused:
                    fresh = True
                    continue
                raise TransportError(f"{what}: {e.__class__.__name__}: {e}") from None
            try:
                resp = conn.getresponse()
                raw = resp.read()
            except (socket.timeout, TimeoutError):
                conn.close()
                raise TransportError(f"{what}: timed out after {t}s") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and op.idempotent and isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError)):
                    fresh = True  # it counts nothing: asking again is harmless
                    continue
                raise TransportError(f"{what}: {e.__class__.__name__}: {e}") from None
            except BaseException:
                conn.close()  # half-read: never back into the pool
                raise
            if resp.will_close:
                conn.close()
            else:
                pool.put(conn)
            return op.finish(resp.status, resp.getheader("Retry-After"), raw)

    # -- users

    def allow(self, user: Id, *, timeout: Optional[float] = None) -> Decision:
        """Count one request of user if every limit allows it.

        A denial is a Decision with allowed=False, not an exception.
        """
        return self._send(p.op_allow(user), timeout)

    def allow_many(self, users: Sequence[Id], *, timeout: Optional[float] = None) -> List[Decision]:
        """allow() for each user in order, in one round trip (at most 1000).

        A user listed twice makes two requests. A user the server could not
        decide gets allowed=False with .error set; the others stand.
        """
        return self._send(p.op_allow_many(users), timeout)

    def peek(self, user: Id, *, timeout: Optional[float] = None) -> UserStatus:
        """user's state, counting nothing."""
        return self._send(p.op_peek(user), timeout)

    def reset(self, user: Id, *, timeout: Optional[float] = None) -> None:
        """Forget user's cooldown and window (a moderator's pardon)."""
        self._send(p.op_reset(user), timeout)

    # -- backoff

    def pick(self, name: Id, *endpoints: str, timeout: Optional[float] = None) -> Tuple[Optional[str], Decision]:
        """The first usable endpoint in order (or None) and its Decision.

        When none is usable the Decision says the shortest retry_after.
        """
        return self._send(p.op_pick(name, endpoints), timeout)

    def check(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> Decision:
        """May endpoint be called now? probe=True: you hold its half-open probe."""
        return self._send(p.op_check(name, endpoint), timeout)

    def failure(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> Decision:
        """Report a failed call: the endpoint backs off (delay grows per failure)."""
        return self._send(p.op_failure(name, endpoint), timeout)

    def success(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> None:
        """Report a successful call: the endpoint is closed again."""
        self._send(p.op_success(name, endpoint), timeout)

    def abandon(self, name: Id, endpoint: Id, token: str, *, timeout: Optional[float] = None) -> None:
        """Hand back a probe without counting success or failure."""
        self._send(p.op_abandon(name, endpoint, token), timeout)

    def endpoint(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> EndpointStatus:
        """endpoint's backoff state, counting nothing."""
        return self._send(p.op_endpoint(name, endpoint), timeout)

    def call(self, name: Id, endpoint: Id, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(*args, **kwargs) against endpoint under its backoff.

        Like gobreaker's Execute: check first (Denied when the endpoint is
        backing off or another caller probes it), then report success when
        fn returns and failure when it raises an Exception (re-raised). A
        KeyboardInterrupt, asyncio.CancelledError or other BaseException
        counts as neither: a held probe is abandoned so the next caller may
        probe at once. If reporting success fails, fn's result is still
        returned (a probe left held frees itself after the probe lease).
        """
        d = self.check(name, endpoint)
        if not d.allowed:
            raise Denied(d, f"endpoint {endpoint!r}")
        try:
            result = fn(*args, **kwargs)
        except Exception:
            with contextlib.suppress(FloodgateError):
                self.failure(name, endpoint)  # fn's exception matters more
            raise
        except BaseException:
            if d.probe and d.token:
                with contextlib.suppress(FloodgateError):
                    self.abandon(name, endpoint, d.token)
            raise
        with contextlib.suppress(FloodgateError):
            self.success(name, endpoint)
        return result

    # -- buckets

    def bucket_allow(self, name: Id, n: int = 1, *, timeout: Optional[float] = None) -> Decision:
        """Take n tokens from API bucket name now, or be told when (no wait)."""
        return self._send(p.op_bucket_allow(name, n), timeout)

    def wait(self, name: Id, n: int = 1, timeout: Optional[float] = None) -> Decision:
        """Take n tokens from API bucket name, waiting on the server.

        Waits at most timeout seconds (None: the server's maximum). If the
        wait would pass it, returns at once with allowed=False and
        retry_after, having taken nothing.
        """
        return self._send(p.op_wait(name, n, timeout))

    # -- slots

    def acquire(self, name: Id, holder: Id, wait: bool = True, timeout: Optional[float] = None) -> Union[Lease, Decision]:
        """Take a slot of pool name for holder: a Lease, or the denial Decision.

        wait=False answers at once; wait=True waits up to timeout seconds
        (None: the server's maximum) for a slot to free up.
        """
        return self._leased(self._send(p.op_acquire(name, holder, wait, timeout)))

    @contextlib.contextmanager
    def slot(self, name: Id, holder: Id, wait: bool = True, timeout: Optional[float] = None) -> Iterator[Lease]:
        """Hold a slot of pool name for the with block, then release it.

        Raises Denied (reason "slots", with retry_after) when no slot is
        free (wait=False) or none freed up within timeout. The block gets
        the Lease; call lease.refresh() for work longer than lease.lease
        seconds. If the block raised, release errors are suppressed (the
        lease runs out by itself); otherwise they are raised, e.g. LeaseLost
        when the work outlasted the lease.
        """
        lease = p._held_slot(self.acquire(name, holder, wait=wait, timeout=timeout), name)
        with _holding(lambda: lease.released, lease.release, lease.release):
            yield lease

    def slots(self, name: Id, *, timeout: Optional[float] = None) -> SlotsStatus:
        """Pool name's size, slots in use and waiters."""
        return self._send(p.op_slots(name), timeout)

    # -- token budgets

    def reserve(self, name: Id, user: Id, units: int, *, timeout: Optional[float] = None) -> Decision:
        """Hold units (the estimate: prompt tokens + max_tokens) of user's
        budget name if they fit; the Decision's .reservation names them.

        A denial is a Decision with allowed=False (reason "budget") and
        retry_after: when enough of the window ages out for units.
        """
        return self._send(p.op_reserve(name, user, units), timeout)

    def settle(self, name: Id, user: Id, reservation: str, units: int, *, timeout: Optional[float] = None) -> None:
        """Replace a reservation's estimate with what the call cost (units,
        0 or more; above the estimate too). StaleReservation (409) when
        it was settled or cancelled already, or its lease ended."""
        self._send(p.op_settle(name, user, reservation, units), timeout)

    def cancel(self, name: Id, user: Id, reservation: str, *, timeout: Optional[float] = None) -> None:
        """Free a reservation whose call did not happen (StaleReservation as settle)."""
        self._send(p.op_settle(name, user, reservation, None), timeout)

    def charge(self, name: Id, user: Id, units: int, *, timeout: Optional[float] = None) -> Decision:
        """Spend units known up front, if they fit: reserve and settle in one."""
        return self._send(p.op_charge(name, user, units), timeout)

    def budget(self, name: Id, user: Id, *, timeout: Optional[float] = None) -> BudgetStatus:
        """user's state in budget name: spent, reserved, remaining; changes nothing."""
        return self._send(p.op_budget(name, user), timeout)

    @contextlib.contextmanager
    def budget_call(self, name: Id, user: Id, estimate: int) -> Iterator[Reservation]:
        """Reserve estimate units of user's budget name for the with block:

            with fg.budget_call("llm", user, prompt_tokens + max_tokens) as r:
                answer = llm(prompt)
                r.settle(answer.usage.total_tokens)

        Raises Denied (reason "budget", with retry_after) when estimate does
        not fit; the block does not run. When the block raises (or is
        interrupted) before settling, the reservation is cancelled, errors
        doing so suppressed; when it ends without settle(), it settles at
        the estimate.
        """
        d = self.reserve(name, user, estimate)
        if not d.allowed:
            raise Denied(d, f"budget {name!r} for {estimate} units")
        r = Reservation(self, name, user, estimate, d)
        with _holding(lambda: r.done, r.cancel, lambda: r.settle(estimate)):
            yield r

    # -- ops

    def healthy(self, *, timeout: Optional[float] = None) -> bool:
        """The server process answers (/healthz)."""
        return self._answers("/healthz", timeout)

    def ready(self, *, timeout: Optional[float] = None) -> bool:
        """The server answers and reaches Redis (/readyz)."""
        return self._answers("/readyz", timeout)

    def readiness(self, *, timeout: Optional[float] = None) -> Readiness:
        """/readyz in full: Redis's maxmemory-policy and whether it can
        evict the limits. FloodgateError (503) when Redis is unreachable."""
        return self._send(p.op_readiness(), timeout)

    def _answers(self, path: str, timeout: Optional[float]) -> bool:
        try:
            self._send(p.op_probe(path), timeout)
            return True
        except FloodgateError:
            return False

