"""Python client for ``floodgate serve``, Floodgate's HTTP sidecar.

One file, standard library only (urllib, json), Python 3.9+. Every bot
replica that talks to the same server (or to servers on the same Redis)
shares the same limits: per-user cooldown and hourly window, LLM endpoint
backoff, API rate buckets and concurrent-user slots.

    import floodgate
    fg = floodgate.Client("http://127.0.0.1:8080")
    d = fg.allow("some_viewer")
    if not d.allowed:
        print(f"wait {d.retry_after:.0f}s ({d.reason})")

A Client holds no per-request state and may be shared by threads. urllib
opens one connection per request (no keep-alive): about one extra loopback
handshake per call, well under a millisecond on the same host.

Errors: FloodgateError for API errors (.status, .message), TransportError (a
FloodgateError with status None) when the server cannot be reached or does
not answer within the timeout, LeaseLost (409) when a slot lease ran out,
Denied when call() or slot() cannot go ahead (it carries the Decision).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, TypeVar, Union

__all__ = [
    "Client",
    "Decision",
    "UserStatus",
    "EndpointStatus",
    "SlotsStatus",
    "Lease",
    "FloodgateError",
    "TransportError",
    "LeaseLost",
    "Denied",
]

__version__ = "0.1.0"

T = TypeVar("T")
Id = Union[str, bytes]

# What wait() and slot(wait=True) assume the server's FLOODGATE_HTTP_MAX_WAIT
# is when the caller gives no timeout: the HTTP call then gets this much
# time on top of Client.timeout.
DEFAULT_MAX_WAIT = 30.0


# ---------------------------------------------------------------- errors


class FloodgateError(Exception):
    """An error answer from the server, or (TransportError) no answer.

    status is the HTTP status (None for transport errors), message the
    server's {"error": ...} text. retry_after is the Retry-After header in
    seconds when the server sent one, else None. decision is the Decision
    the body carried, if any (a fail-closed 503 carries one).
    """

    def __init__(
        self,
        status: Optional[int],
        message: str,
        retry_after: Optional[float] = None,
        decision: Optional["Decision"] = None,
    ) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.decision = decision
        super().__init__(f"floodgate: {status}: {message}" if status else f"floodgate: {message}")


class TransportError(FloodgateError):
    """The server could not be reached, or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class LeaseLost(FloodgateError):
    """A slot lease ran out (or was released) before refresh/release (409)."""


class Denied(Exception):
    """call() or slot() could not go ahead now; .decision says why and for how long."""

    def __init__(self, decision: "Decision", what: str) -> None:
        self.decision = decision
        self.reason = decision.reason
        self.retry_after = decision.retry_after
        super().__init__(f"floodgate: {what} denied ({decision.reason}), retry after {decision.retry_after:.3f}s")


# ---------------------------------------------------------------- results


def _secs(ms: Any) -> float:
    return float(ms or 0) / 1000.0


@dataclass(frozen=True)
class Decision:
    """The answer to one request, the same for every policy.

    allowed: the request may go ahead (and has been counted).
    reason: "none" when allowed, else "cooldown", "hourly", "rate",
        "backoff", "probing", "slots" or "redis_down".
    remaining: how many more requests the limit admits now (-1: no count).
    retry_after: seconds to wait before the same request would be allowed
        (0.0 when allowed).
    reset_after: seconds until the policy's state is empty again.
    degraded: Redis was unreachable and the server's FailureMode decided.
    cached: a repeat denial answered from the server's deny cache.
    probe, token: backoff only; probe is True when this caller holds the
        endpoint's single half-open probe, token names it for abandon().

    With the defaults (10 s cooldown, 20 per hour), a viewer's first message
    gets Decision(allowed=True, reason="none", remaining=19, retry_after=0.0,
    reset_after=3600.0, ...); a second one 4 s later gets allowed=False,
    reason="cooldown", remaining=19, retry_after=6.0.
    """

    allowed: bool
    reason: str = "none"
    remaining: int = 0
    retry_after: float = 0.0
    reset_after: float = 0.0
    degraded: bool = False
    cached: bool = False
    probe: bool = False
    token: str = ""

    @classmethod
    def from_json(cls, d: Dict[str, Any], retry_after_header: Optional[float] = None) -> "Decision":
        ra = d.get("retry_after_ms")
        return cls(
            allowed=bool(d.get("allowed", False)),
            reason=str(d.get("reason", "none")),
            remaining=int(d.get("remaining", 0)),
            retry_after=_secs(ra) if ra is not None else (retry_after_header or 0.0),
            reset_after=_secs(d.get("reset_after_ms")),
            degraded=bool(d.get("degraded", False)),
            cached=bool(d.get("cached", False)),
            probe=bool(d.get("probe", False)),
            token=str(d.get("token") or ""),
        )


@dataclass(frozen=True)
class UserStatus:
    """A user's state, read without counting a request (Client.peek).

    remaining: requests the window admits now (-1: no hourly limit).
    retry_after: seconds until a request would be allowed (0.0: now).
    reason: what would deny a request now ("none" if nothing).
    cooldown_left: seconds of cooldown left.
    entries: accepted requests in the window.
    reset_after: seconds until the user's state is empty.
    """

    user: str
    remaining: int
    retry_after: float
    reason: str
    cooldown_left: float
    entries: int
    reset_after: float


@dataclass(frozen=True)
class EndpointStatus:
    """A backoff endpoint's state (Client.endpoint)."""

    state: str  # "closed", "half-open" or "open"
    opens: int
    failures: int
    delay: float
    retry_after: float
    probing: bool


@dataclass(frozen=True)
class SlotsStatus:
    """A slot pool's occupancy (Client.slots)."""

    size: int
    in_use: int
    waiting: int


class Lease:
    """A held slot. refresh() before lease seconds pass; release() when done.

    Client.slot() releases it for you. token is opaque and may be handed to
    another process, which can rebuild it with Client.lease(name, token).
    """

    def __init__(self, client: "Client", name: Id, token: str, lease: float, degraded: bool) -> None:
        self.client = client
        self.name = name
        self._seg = _quote("name", name)
        self.token = token
        self.lease = lease
        self.degraded = degraded
        self.released = False

    def refresh(self) -> None:
        """Extend the lease by its full length; LeaseLost if it already ran out."""
        self.client._call("POST", ["v1", "slots", self._seg, "refresh"], {"token": self.token})

    def release(self) -> None:
        """Give the slot back; LeaseLost if it had already run out or been released."""
        self.client._call("POST", ["v1", "slots", self._seg, "release"], {"token": self.token})
        self.released = True

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, lease={self.lease}, degraded={self.degraded})"


# ---------------------------------------------------------------- transport


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # The API never redirects. Following one would turn a POST into a GET on
    # another path (urllib's behaviour), so a redirect is an error instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


def _quote(what: str, value: Id) -> str:
    """One path segment: every byte but unreserved ones escaped, dots too.

    Dots are escaped so that "." and ".." stay ids instead of path steps.
    """
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
    else:
        raise TypeError(f"floodgate: {what} must be str or bytes, got {type(value).__name__}")
    if not raw:
        raise ValueError(f"floodgate: {what} must not be empty")
    return urllib.parse.quote(raw, safe="").replace(".", "%2E")


def _retry_after_header(headers: Any) -> Optional[float]:
    v = headers.get("Retry-After") if headers is not None else None
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        return None  # an HTTP date; the server never sends one


def _timeout_arg(what: str, value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"floodgate: {what} must be a number of seconds >= 0, got {value!r}")
    return value


# ---------------------------------------------------------------- client


class Client:
    """Talks to one ``floodgate serve``.

    base_url: the server, e.g. "http://127.0.0.1:8080" (the default).
    token: FLOODGATE_HTTP_TOKEN of the server, sent as a Bearer token.
    timeout: seconds each call may take (connect plus answer); waits
        (wait(), slot(wait=True)) get their own timeout on top.
    max_wait: what a wait without timeout may take on the server
        (FLOODGATE_HTTP_MAX_WAIT there, 30 s by default).

    HTTP(S)_PROXY variables are ignored: the sidecar is next to the bot.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: Optional[str] = None,
        timeout: float = 2.0,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"floodgate: base_url must be http(s)://host:port, got {base_url!r}")
        t = _timeout_arg("timeout", timeout)
        if not t:
            raise ValueError(f"floodgate: timeout must be > 0, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = t
        self.max_wait = _timeout_arg("max_wait", max_wait) or 0.0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"  # never the token

    # -- plumbing

    def _request(
        self, method: str, segments: list, body: Optional[dict] = None, timeout: Optional[float] = None
    ) -> Tuple[int, Any, Any]:
        """Returns (status, parsed JSON or None, headers) for 2xx; raises otherwise."""
        url = self.base_url + "/" + "/".join(segments)
        data = None
        headers = {"Accept": "application/json", "User-Agent": "floodgate-python/" + __version__}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        t = timeout if timeout is not None else self.timeout
        try:
            with self._opener.open(req, timeout=t) as resp:
                return resp.status, self._json(resp.status, resp.read()), resp.headers
        except urllib.error.HTTPError as e:
            try:
                raw = e.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                e.close()
            raise self._error(e.code, raw, e.headers, e.reason) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise TransportError(f"{method} {url}: timed out after {t}s") from None
            raise TransportError(f"{method} {url}: {reason}") from None
        except (socket.timeout, TimeoutError):
            raise TransportError(f"{method} {url}: timed out after {t}s") from None
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"{method} {url}: {e.__class__.__name__}: {e}") from None

    @staticmethod
    def _json(status: int, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise FloodgateError(status, f"server sent invalid JSON: {raw[:200]!r}") from None

    @staticmethod
    def _error(status: int, raw: bytes, headers: Any, reason: Any) -> FloodgateError:
        ra = _retry_after_header(headers)
        msg = ""
        decision = None
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            msg = str(body.get("error") or "")
            if "allowed" in body:
                decision = Decision.from_json(body, ra)
            elif "acquired" in body:  # slots: {"acquired": false, "reason": ...}
                decision = Decision.from_json(dict(body, allowed=bool(body["acquired"])), ra)
        if not msg:
            msg = raw[:200].decode("utf-8", "replace").strip() or str(reason or "") or "HTTP error"
        cls = LeaseLost if status == 409 else FloodgateError
        return cls(status, msg, ra, decision)

    def _call(self, method: str, segments: list, body: Optional[dict] = None, timeout: Optional[float] = None) -> Any:
        return self._request(method, segments, body, timeout)[1]

    def _decision(
        self,
        segments: list,
        body: Optional[dict] = None,
        timeout: Optional[float] = None,
        build: Callable[[Dict[str, Any], Any], Any] = lambda d, h: Decision.from_json(d, _retry_after_header(h)),
        want: str = "a decision",
    ) -> Any:
        """POST; build(reply object, headers) makes the answer, except that a
        503 carrying a denial is returned as that Decision."""
        try:
            _, d, h = self._request("POST", segments, body, timeout)
        except FloodgateError as e:
            # A policy that fails closed while Redis is down answers 503 with
            # its denial: that is a decision, not a broken sidecar.
            if e.status == 503 and e.decision is not None:
                return e.decision
            raise
        if not isinstance(d, dict):
            raise FloodgateError(200, f"server sent {d!r}, want {want} object")
        return build(d, h)

    # -- users

    def allow(self, user: Id) -> Decision:
        """Count one request of user if every limit allows it.

        A denial is a Decision with allowed=False, not an exception.
        """
        return self._decision(["v1", "users", _quote("user", user), "allow"])

    def peek(self, user: Id) -> UserStatus:
        """user's state, counting nothing."""
        d = self._call("GET", ["v1", "users", _quote("user", user)]) or {}
        return UserStatus(
            user=str(d.get("user", "")),
            remaining=int(d.get("remaining", 0)),
            retry_after=_secs(d.get("retry_after_ms")),
            reason=str(d.get("reason", "none")),
            cooldown_left=_secs(d.get("cooldown_left_ms")),
            entries=int(d.get("entries", 0)),
            reset_after=_secs(d.get("reset_after_ms")),
        )

    def reset(self, user: Id) -> None:
        """Forget user's cooldown and window (a moderator's pardon)."""
        self._call("DELETE", ["v1", "users", _quote("user", user)])

    # -- backoff

    def _ep(self, name: Id, endpoint: Id, op: str) -> list:
        return ["v1", "backoff", _quote("name", name), "endpoints", _quote("endpoint", endpoint), op]

    def pick(self, name: Id, *endpoints: str) -> Tuple[Optional[str], Decision]:
        """The first usable endpoint in order (or None) and its Decision.

        When none is usable the Decision says the shortest retry_after.
        """
        if not endpoints:
            raise ValueError("floodgate: pick needs at least one endpoint")
        got = self._decision(
            ["v1", "backoff", _quote("name", name), "pick"],
            {"endpoints": list(endpoints)},
            build=lambda d, h: ((d.get("endpoint") or None), Decision.from_json(d, _retry_after_header(h))),
        )
        return got if isinstance(got, tuple) else (None, got)  # a 503 denial names no endpoint

    def check(self, name: Id, endpoint: Id) -> Decision:
        """May endpoint be called now? probe=True: you hold its half-open probe."""
        return self._decision(self._ep(name, endpoint, "check"))

    def failure(self, name: Id, endpoint: Id) -> Decision:
        """Report a failed call: the endpoint backs off (delay grows per failure)."""
        return self._decision(self._ep(name, endpoint, "failure"))

    def success(self, name: Id, endpoint: Id) -> None:
        """Report a successful call: the endpoint is closed again."""
        self._call("POST", self._ep(name, endpoint, "success"))

    def abandon(self, name: Id, endpoint: Id, token: str) -> None:
        """Hand back a probe without counting success or failure."""
        self._call("POST", self._ep(name, endpoint, "abandon"), {"token": token})

    def endpoint(self, name: Id, endpoint: Id) -> EndpointStatus:
        """endpoint's backoff state, counting nothing."""
        segs = self._ep(name, endpoint, "")[:-1]
        d = self._call("GET", segs) or {}
        return EndpointStatus(
            state=str(d.get("state", "")),
            opens=int(d.get("opens", 0)),
            failures=int(d.get("failures", 0)),
            delay=_secs(d.get("delay_ms")),
            retry_after=_secs(d.get("retry_after_ms")),
            probing=bool(d.get("probing", False)),
        )

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

    def bucket_allow(self, name: Id, n: int = 1) -> Decision:
        """Take n tokens from API bucket name now, or be told when (no wait)."""
        return self._decision(["v1", "buckets", _quote("name", name), "allow"], {"n": _count(n)})

    def wait(self, name: Id, n: int = 1, timeout: Optional[float] = None) -> Decision:
        """Take n tokens from API bucket name, waiting on the server.

        Waits at most timeout seconds (None: the server's maximum). If the
        wait would pass it, returns at once with allowed=False and
        retry_after, having taken nothing.
        """
        t = _timeout_arg("timeout", timeout)
        body: Dict[str, Any] = {"n": _count(n)}
        http_t = self._wait_for(body, t)
        return self._decision(["v1", "buckets", _quote("name", name), "wait"], body, timeout=http_t)

    def _wait_for(self, body: Dict[str, Any], t: Optional[float]) -> float:
        """Put a server-side wait of t seconds (None: the server's maximum)
        into body; returns the HTTP timeout that outlasts it."""
        if t is not None:
            body["timeout_ms"] = max(1, math.ceil(t * 1000))
        return self.timeout + (t if t is not None else self.max_wait)

    # -- slots

    def acquire(self, name: Id, holder: Id, wait: bool = True, timeout: Optional[float] = None) -> Union[Lease, Decision]:
        """Take a slot of pool name for holder: a Lease, or the denial Decision.

        wait=False answers at once; wait=True waits up to timeout seconds
        (None: the server's maximum) for a slot to free up.
        """
        t = _timeout_arg("timeout", timeout)
        if isinstance(holder, bytes):
            holder = holder.decode("utf-8", "replace")
        body: Dict[str, Any] = {"holder": holder, "wait": bool(wait)}
        http_t = self._wait_for(body, t) if wait else None

        def lease_or_denial(d: Dict[str, Any], _: Any) -> Union[Lease, Decision]:
            if d.get("acquired"):
                return Lease(self, name, str(d.get("token", "")), _secs(d.get("lease_ms")), bool(d.get("degraded", False)))
            return Decision(
                allowed=False,
                reason=str(d.get("reason") or "slots"),
                retry_after=_secs(d.get("retry_after_ms")),
                degraded=bool(d.get("degraded", False)),
            )

        return self._decision(
            ["v1", "slots", _quote("name", name), "acquire"], body, http_t, lease_or_denial, "an acquire"
        )

    def lease(self, name: Id, token: str) -> Lease:
        """Rebuild a Lease from its token (e.g. one handed over by another process)."""
        return Lease(self, name, token, 0.0, False)

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
        got = self.acquire(name, holder, wait=wait, timeout=timeout)
        if isinstance(got, Decision):
            raise Denied(got, f"slot of {name!r}")
        try:
            yield got
        except BaseException:
            if not got.released:
                with contextlib.suppress(FloodgateError):
                    got.release()
            raise
        if not got.released:
            got.release()

    def slots(self, name: Id) -> SlotsStatus:
        """Pool name's size, slots in use and waiters."""
        d = self._call("GET", ["v1", "slots", _quote("name", name)]) or {}
        return SlotsStatus(size=int(d.get("size", 0)), in_use=int(d.get("in_use", 0)), waiting=int(d.get("waiting", 0)))

    # -- ops

    def healthy(self) -> bool:
        """The server process answers (/healthz)."""
        return self._probe("healthz")

    def ready(self) -> bool:
        """The server answers and reaches Redis (/readyz)."""
        return self._probe("readyz")

    def _probe(self, path: str) -> bool:
        try:
            self._request("GET", [path])
            return True
        except FloodgateError:
            return False


def _count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"floodgate: n must be an int >= 1, got {n!r}")
    return n
