"""AsyncClient: the asyncio client, over asyncio streams with a bounded pool
of kept-alive HTTP/1.1 connections. It never blocks the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import sys
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar, Union

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

_MAX_HEAD = 64 << 10  # the server sends a few hundred bytes of headers
_MAX_BODY = 16 << 20


class AsyncLease(p._LeaseBase):
    """A held slot (AsyncClient). await refresh() before lease seconds pass;
    await release() when done. AsyncClient.slot() releases it for you."""

    client: "AsyncClient"

    async def refresh(self) -> None:
        """Extend the lease by its full length; LeaseLost if it already ran out."""
        await self.client._send(p.op_lease(self.name, self.token, "refresh"))

    async def release(self) -> None:
        """Give the slot back; LeaseLost if it had already run out or been released."""
        await self.client._send(p.op_lease(self.name, self.token, "release"))
        self.released = True


class AsyncReservation(p._ReservationBase):
    """Units an AsyncClient.budget_call() holds (Reservation): await
    settle(actual) once the call's usage is known, cancel() if it did not
    happen. Both run to their end even if the task is cancelled meanwhile."""

    client: "AsyncClient"

    async def settle(self, units: int) -> None:
        """Record what the call cost, above the estimate too."""
        p._count(units, "units", 0)
        self.done = True
        await self.client._finish_anyway(self.client.settle(self.name, self.user, self.token, units))

    async def cancel(self) -> None:
        """Free the reservation: nothing of it counts."""
        self.done = True
        await self.client._finish_anyway(self.client.cancel(self.name, self.user, self.token))


@contextlib.asynccontextmanager
async def _holding(
    over: Callable[[], bool], abort: Callable[[], Awaitable[None]], end: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """The async with block of slot() and budget_call(), as _sync._holding:
    end() after it, abort() instead (errors suppressed) when it raised or
    was cancelled; neither once over() says the block ended it itself."""
    try:
        yield
    except BaseException:
        if not over():
            with contextlib.suppress(FloodgateError):
                await abort()
        raise
    if not over():
        await end()


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def dead(self) -> bool:
        """Closed by the server while idle, or holding bytes nobody asked
        for: either way it must not carry a request."""
        r, w = self.reader, self.writer
        if w.is_closing() or r.at_eof() or bool(getattr(r, "_buffer", b"")) or r.exception() is not None:
            return True
        return p._readable(w.get_extra_info("socket"))  # a close the loop has not read yet

    def close(self) -> None:
        self.writer.close()


class _Dropped(Exception):
    """The connection ended before any byte of the answer came."""


async def _read_answer(r: asyncio.StreamReader, method: str) -> Tuple[int, Optional[str], bytes, bool]:
    """(status, Retry-After, body, keep-alive) of one HTTP/1.1 answer."""
    while True:
        try:
            head = await r.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise _Dropped() from None
            raise TransportError("connection closed in the middle of the answer's headers") from None
        except asyncio.LimitOverrunError:
            raise TransportError(f"answer headers over {_MAX_HEAD} bytes") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TransportError(f"not an HTTP/1.1 answer: {lines[0][:100]!r}")
        status = int(parts[1])
        h: Dict[str, str] = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                h[k.strip().lower()] = v.strip()
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer (100 Continue): the real one follows
        break
    keep = parts[0] == "HTTP/1.1" and h.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304):
        return status, h.get("retry-after"), b"", keep
    if "chunked" in h.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await r.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise TransportError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                while (await r.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            body += await r.readexactly(size)
            if len(body) > _MAX_BODY:
                raise TransportError(f"answer over {_MAX_BODY} bytes")
            await r.readexactly(2)
        return status, h.get("retry-after"), bytes(body), keep
    cl = h.get("content-length")
    if cl is not None:
        if not cl.isdigit() or int(cl) > _MAX_BODY:
            raise TransportError(f"bad Content-Length {cl[:40]!r}")
        return status, h.get("retry-after"), await r.readexactly(int(cl)), keep
    return status, h.get("retry-after"), await r.read(_MAX_BODY), False  # until the server closes


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[T], t: float) -> T:
        async with asyncio.timeout(t):
            return await aw

else:  # pragma: no cover - exercised on 3.9/3.10 only

    async def _within(aw: Awaitable[T], t: float) -> T:
        return await asyncio.wait_for(aw, t)


class AsyncClient(p._ClientBase[AsyncLease]):
    """Talks to one ``floodgate serve`` from asyncio; the same operations,
    arguments, results and errors as Client, as coroutines.

        async with floodgate.AsyncClient("http://127.0.0.1:8080", token=...) as fg:
            d = await fg.allow(user)

    base_url, token, timeout, max_wait, ca_file, ssl_context: as for Client.
    max_connections: connections open at once (10); a call that finds all
        busy waits for one (inside its timeout).

    Use it from one event loop. A task cancelled mid-request closes its
    connection instead of pooling it half-read. Connections the server
    closed while idle are noticed before a request is written; a request
    is sent again only when it provably never reached the server or is
    idempotent (GET, DELETE, success, abandon, refresh).
    """

    _lease_type = AsyncLease

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: Optional[str] = None,
        timeout: float = 2.0,
        *,
        max_wait: float = p.DEFAULT_MAX_WAIT,
        ca_file: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        max_connections: int = 10,
    ) -> None:
        super().__init__(base_url, token, timeout, max_wait, ca_file, ssl_context)
        self.max_connections = p._count(max_connections, "max_connections")
        self._idle: List[_Conn] = []
        self._sem: Optional[asyncio.Semaphore] = None  # made in the loop that uses it
        self._closed = False
        self._background: Set["asyncio.Task[Any]"] = set()
        self._head = p.RequestHead(self._target.host, self.token)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every idle connection and refuse new calls; calls under way
        finish and close theirs. Waits for lease releases and probe
        hand-backs that cancelled tasks left running."""
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()
        for c in idle:
            with contextlib.suppress(Exception):
                await c.writer.wait_closed()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- transport

    async def _connect(self) -> _Conn:
        t = self._target
        if t.scheme == "unix":
            r, w = await asyncio.open_unix_connection(t.path, limit=_MAX_HEAD)
        else:
            r, w = await asyncio.open_connection(t.hostname, t.port, ssl=t.ssl, limit=_MAX_HEAD)
        return _Conn(r, w)

    async def _send(self, op: "p._Op[T]", timeout: Optional[float] = None) -> T:
        t = self._op_timeout(op, timeout)
        if self._closed:
            raise TransportError("the AsyncClient is closed")
        try:
            status, ra, raw = await _within(self._round_trip(op), t)
        except (asyncio.TimeoutError, TimeoutError):
            raise TransportError(f"{op.method} {self.base_url}{op.path}: timed out after {t}s") from None
        except TransportError as e:
            raise TransportError(f"{op.method} {self.base_url}{op.path}: {e.message}") from None
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError) as e:
            raise TransportError(f"{op.method} {self.base_url}{op.path}: {e.__class__.__name__}: {e}") from None
        return op.finish(status, ra, raw)

    async def _round_trip(self, op: "p._Op[Any]") -> Tuple[int, Optional[str], bytes]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_connections)
        data = self._head.encode(op.method, self._target.prefix + op.path, op.body)
        async with self._sem:
            fresh = False
            while True:
                conn = None
                while not fresh and self._idle:
                    c = self._idle.pop()
                    if c.dead():
                        c.close()
                    else:
                        conn = c
                        break
                reused = conn is not None
                if conn is None:
                    conn = await self._connect()
                try:
                    conn.writer.write(data)
                    if conn.writer.is_closing():
                        # The first send() failed (the transport closes at
                        # once): nothing of the request left this host.
                        conn.close()
                        if reused:
                            fresh = True
                            continue
                        raise TransportError("connection lost while sending")
                    await conn.writer.drain()
                    status, ra, raw, keep = await _read_answer(conn.reader, op.method)
                except _Dropped:
                    conn.close()
                    if reused and op.idempotent:
                        fresh = True  # it counts nothing: asking again is harmless
                        continue
                    raise TransportError("connection closed before the answer") from None
                except BaseException:
                    conn.close()  # cancelled or failed half-way: never pooled half-read
                    raise
                if keep and not self._closed and len(self._idle) < self.max_connections:
                    self._idle.append(conn)
                else:
                    conn.close()
                return status, ra, raw

    def _finish_anyway(self, aw: Awaitable[Any]) -> "asyncio.Future[Any]":
        """Runs aw to its end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return asyncio.shield(task)

    # -- users

    async def allow(self, user: Id, *, timeout: Optional[float] = None) -> Decision:
        """Count one request of user if every limit allows it (Client.allow)."""
        return await self._send(p.op_allow(user), timeout)

    async def allow_many(self, users: Sequence[Id], *, timeout: Optional[float] = None) -> List[Decision]:
        """allow() for each user in order, in one round trip (Client.allow_many)."""
        return await self._send(p.op_allow_many(users), timeout)

    async def peek(self, user: Id, *, timeout: Optional[float] = None) -> UserStatus:
        """user's state, counting nothing."""
        return await self._send(p.op_peek(user), timeout)

    async def reset(self, user: Id, *, timeout: Optional[float] = None) -> None:
        """Forget user's cooldown and window."""
        await self._send(p.op_reset(user), timeout)

    # -- backoff

    async def pick(self, name: Id, *endpoints: str, timeout: Optional[float] = None) -> Tuple[Optional[str], Decision]:
        """The first usable endpoint in order (or None) and its Decision."""
        return await self._send(p.op_pick(name, endpoints), timeout)

    async def check(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> Decision:
        """May endpoint be called now? probe=True: you hold its half-open probe."""
        return await self._send(p.op_check(name, endpoint), timeout)

    async def failure(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> Decision:
        """Report a failed call: the endpoint backs off."""
        return await self._send(p.op_failure(name, endpoint), timeout)

    async def success(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> None:
        """Report a successful call: the endpoint is closed again."""
        await self._send(p.op_success(name, endpoint), timeout)

    async def abandon(self, name: Id, endpoint: Id, token: str, *, timeout: Optional[float] = None) -> None:
        """Hand back a probe without counting success or failure. It runs to
        its end even if the task is cancelled meanwhile: cut short, the
        probe would stay held until its lease ends."""
        await self._finish_anyway(self._send(p.op_abandon(name, endpoint, token), timeout))

    async def endpoint(self, name: Id, endpoint: Id, *, timeout: Optional[float] = None) -> EndpointStatus:
        """endpoint's backoff state, counting nothing."""
        return await self._send(p.op_endpoint(name, endpoint), timeout)

    async def call(self, name: Id, endpoint: Id, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """await fn(*args, **kwargs) against endpoint under its backoff.

        As Client.call: Denied when the endpoint may not be called, success
        when fn returns, failure when it raises an Exception (re-raised).
        When the task is cancelled (or any other BaseException) a held
        half-open probe is handed back, even if the cancellation repeats;
        a report under way when the task is cancelled runs to its end.
        fn may be an async function or a plain one.
        """
        d = await self.check(name, endpoint)
        if not d.allowed:
            raise Denied(d, f"endpoint {endpoint!r}")
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            with contextlib.suppress(FloodgateError):
                await self._finish_anyway(self.failure(name, endpoint))
            raise
        except BaseException:
            if d.probe and d.token:
                with contextlib.suppress(FloodgateError):
                    await self.abandon(name, endpoint, d.token)
            raise
        with contextlib.suppress(FloodgateError):
            # To its end as well: cut short, a probe stays held (and the
            # endpoint's recovery unrecorded) until the probe lease ends.
            await self._finish_anyway(self.success(name, endpoint))
        return result

    # -- buckets

    async def bucket_allow(self, name: Id, n: int = 1, *, timeout: Optional[float] = None) -> Decision:
        """Take n tokens from API bucket name now, or be told when (no wait)."""
        return await self._send(p.op_bucket_allow(name, n), timeout)

    async def wait(self, name: Id, n: int = 1, timeout: Optional[float] = None) -> Decision:
        """Take n tokens from API bucket name, waiting on the server up to
        timeout seconds (None: the server's maximum); other tasks run meanwhile."""
        return await self._send(p.op_wait(name, n, timeout))

    # -- slots

    async def acquire(
        self, name: Id, holder: Id, wait: bool = True, timeout: Optional[float] = None
    ) -> Union[AsyncLease, Decision]:
        """Take a slot of pool name for holder: an AsyncLease, or the denial Decision."""
        return self._leased(await self._send(p.op_acquire(name, holder, wait, timeout)))

    @contextlib.asynccontextmanager
    async def slot(
        self, name: Id, holder: Id, wait: bool = True, timeout: Optional[float] = None
    ) -> AsyncIterator[AsyncLease]:
        """async with: hold a slot of pool name for the block, then release it.

        As Client.slot. The release also happens when the task is cancelled
        inside the block (it runs to its end even if cancelled again).
        """
        lease = p._held_slot(await self.acquire(name, holder, wait=wait, timeout=timeout), name)

        def release() -> Awaitable[None]:
            return self._finish_anyway(lease.release())

        async with _holding(lambda: lease.released, release, release):
            yield lease

    async def slots(self, name: Id, *, timeout: Optional[float] = None) -> SlotsStatus:
        """Pool name's size, slots in use and waiters."""
        return await self._send(p.op_slots(name), timeout)

    # -- token budgets

    async def reserve(self, name: Id, user: Id, units: int, *, timeout: Optional[float] = None) -> Decision:
        """Hold units of user's budget name if they fit (Client.reserve)."""
        return await self._send(p.op_reserve(name, user, units), timeout)

    async def settle(self, name: Id, user: Id, reservation: str, units: int, *, timeout: Optional[float] = None) -> None:
        """Replace a reservation's estimate with what the call cost (Client.settle)."""
        await self._send(p.op_settle(name, user, reservation, units), timeout)

    async def cancel(self, name: Id, user: Id, reservation: str, *, timeout: Optional[float] = None) -> None:
        """Free a reservation whose call did not happen (Client.cancel)."""
        await self._send(p.op_settle(name, user, reservation, None), timeout)

    async def charge(self, name: Id, user: Id, units: int, *, timeout: Optional[float] = None) -> Decision:
        """Spend units known up front, if they fit (Client.charge)."""
        return await self._send(p.op_charge(name, user, units), timeout)

    async def budget(self, name: Id, user: Id, *, timeout: Optional[float] = None) -> BudgetStatus:
        """user's state in budget name; changes nothing."""
        return await self._send(p.op_budget(name, user), timeout)

    @contextlib.asynccontextmanager
    async def budget_call(self, name: Id, user: Id, estimate: int) -> AsyncIterator[AsyncReservation]:
        """async with: reserve estimate units for the block (Client.budget_call).

            async with fg.budget_call("llm", user, prompt_tokens + max_tokens) as r:
                answer = await llm(prompt)
                await r.settle(answer.usage.total_tokens)

        Denied when estimate does not fit. When the block raises or the
        task is cancelled before settling, the reservation is cancelled
        (to its end, even if cancelled again); a block that ends without
        settle() settles at the estimate.
        """
        d = await self.reserve(name, user, estimate)
        if not d.allowed:
            raise Denied(d, f"budget {name!r} for {estimate} units")
        r = AsyncReservation(self, name, user, estimate, d)
        async with _holding(lambda: r.done, r.cancel, lambda: r.settle(estimate)):
            yield r

    # -- ops

    async def healthy(self, *, timeout: Optional[float] = None) -> bool:
        """The server process answers (/healthz)."""
        return await self._answers("/healthz", timeout)

    async def ready(self, *, timeout: Optional[float] = None) -> bool:
        """The server answers and reaches Redis (/readyz)."""
        return await self._answers("/readyz", timeout)

    async def readiness(self, *, timeout: Optional[float] = None) -> Readiness:
        """/readyz in full: Redis's maxmemory-policy and whether it can
        evict the limits. FloodgateError (503) when Redis is unreachable."""
        return await self._send(p.op_readiness(), timeout)

    async def _answers(self, path: str, timeout: Optional[float]) -> bool:
        try:
            await self._send(p.op_probe(path), timeout)
            return True
        except FloodgateError:
            return False
