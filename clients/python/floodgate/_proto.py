"""The protocol, shared by Client and AsyncClient: results, errors, and one
description (_Op) of every request (method, path, body, how its answer
becomes a result). The transports (_sync.py, _async.py) only move bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import select
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, List, Optional, Sequence, Tuple, Type, TypeVar, Union

__version__ = "0.2.0"

T = TypeVar("T")
Id = Union[str, bytes]

# What wait() and slot(wait=True) assume the server's FLOODGATE_HTTP_MAX_WAIT
# is when the caller gives no timeout: the HTTP call then gets this much
# time on top of the client's timeout.
DEFAULT_MAX_WAIT = 30.0

USER_AGENT = "floodgate-python/" + __version__


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


class StaleReservation(FloodgateError):
    """settle() or cancel() named no reservation the user holds (409): it was
    settled or cancelled already, its lease ended (it then counts as its
    estimate), or it is another user's or budget's. Nothing changed."""


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
    reason: "none" when allowed, else "cooldown", "window", "rate",
        "backoff", "probing", "slots", "budget" or "redis_down".
    remaining: how many more requests the limit admits now (-1: no count).
    retry_after: seconds to wait before the same request would be allowed
        (0.0 when allowed).
    reset_after: seconds until the policy's state is empty again.
    degraded: Redis was unreachable and the server's FailureMode decided.
    cached: a repeat denial answered from the server's deny cache.
    probe, token: backoff only; probe is True when this caller holds the
        endpoint's single half-open probe, token names it for abandon().
    reservation: budget reserve() only: names the units it holds, for
        settle() or cancel(); "" when denied.
    error: allow_many only: why the server could not decide this user
        (allowed is then False); "" otherwise.

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
    reservation: str = ""
    error: str = ""

    @classmethod
    def from_json(cls, d: Dict[str, Any], retry_after_header: Optional[float] = None) -> "Decision":
        ra = d.get("retry_after_ms")
        # Filled in directly: a frozen dataclass's __init__ pays an
        # object.__setattr__ per field, on every decision.
        self = object.__new__(cls)
        self.__dict__.update(
            allowed=bool(d.get("allowed", False)),
            reason=str(d.get("reason", "none")),
            remaining=int(d.get("remaining", 0)),
            retry_after=_secs(ra) if ra is not None else (retry_after_header or 0.0),
            reset_after=_secs(d.get("reset_after_ms")),
            degraded=bool(d.get("degraded", False)),
            cached=bool(d.get("cached", False)),
            probe=bool(d.get("probe", False)),
            token=str(d.get("token") or ""),
            reservation=str(d.get("reservation") or ""),
            error=str(d.get("error") or ""),
        )
        return self


@dataclass(frozen=True)
class UserStatus:
    """A user's state, read without counting a request (peek).

    remaining: requests the window admits now (-1: no window limit).
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
    """A backoff endpoint's state (endpoint)."""

    state: str  # "closed", "half-open" or "open"
    opens: int
    failures: int
    delay: float
    retry_after: float
    probing: bool


@dataclass(frozen=True)
class SlotsStatus:
    """A slot pool's occupancy (slots)."""

    size: int
    in_use: int
    waiting: int


@dataclass(frozen=True)
class BudgetStatus:
    """A user's state in a token budget (budget()), changing nothing.

    With 20,000 units an hour, a viewer who settled a call at 900 and holds
    a reservation of 1,500 reads spent=900, reserved=1500, reservations=1,
    remaining=17600.

    limit, window: the budget's units per sliding window (seconds).
    spent: units settled or charged in the window (and reservations whose
        lease ended unsettled, at their estimate).
    reserved, reservations: units and count of reservations in flight.
    remaining: the largest estimate reserve() admits now.
    oldest_ages_out: seconds until the oldest spend leaves the window.
    reset_after: seconds until the window holds nothing.
    """

    budget: str
    user: str
    limit: int
    window: float
    spent: int
    reserved: int
    reservations: int
    remaining: int
    oldest_ages_out: float
    reset_after: float


@dataclass(frozen=True)
class Readiness:
    """/readyz: Redis answers PING, and what its maxmemory-policy means for
    the limits (readiness()). Not ready is a FloodgateError (503), not a
    Readiness.

    maxmemory_policy: Redis's policy, e.g. "noeviction"; "" when Redis
        would not say (an ACL without +info), and then the rest is empty.
    eviction_unsafe: Redis can evict Floodgate's keys (maxmemory set and a
        policy other than noeviction), which forgets limits silently.
    evicted_keys: keys of any program Redis evicted since it started.
    warning: when unsafe, what happens and the fix; "" otherwise.
    """

    maxmemory_policy: str
    eviction_unsafe: bool
    evicted_keys: int
    warning: str


@dataclass(frozen=True)
class _Granted:
    """An acquire that got a slot; the client turns it into its Lease type."""

    name: Id
    token: str
    lease: float
    degraded: bool


# ---------------------------------------------------------------- arguments


_PLAIN = re.compile(r"[A-Za-z0-9_~-]+").fullmatch


def _quote(what: str, value: Id) -> str:
    """One path segment: every byte but unreserved ones escaped, dots too.

    Dots are escaped so that "." and ".." stay ids instead of path steps.
    """
    if isinstance(value, str) and _PLAIN(value):
        return value  # the common case: nothing to escape
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
    else:
        raise TypeError(f"floodgate: {what} must be str or bytes, got {type(value).__name__}")
    if not raw:
        raise ValueError(f"floodgate: {what} must not be empty")
    return urllib.parse.quote(raw, safe="").replace(".", "%2E")


def _json_id(what: str, value: Id) -> str:
    """An id that travels inside a JSON body: text (bytes must be UTF-8)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"floodgate: {what} {value!r} is not UTF-8 (JSON bodies carry text)") from None
    if not isinstance(value, str):
        raise TypeError(f"floodgate: {what} must be str or bytes, got {type(value).__name__}")
    if not value:
        raise ValueError(f"floodgate: {what} must not be empty")
    return value


def _count(n: int, what: str = "n", least: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < least:
        raise ValueError(f"floodgate: {what} must be an int >= {least}, got {n!r}")
    return n


def _timeout_arg(what: str, value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"floodgate: {what} must be a number of seconds >= 0, got {value!r}")
    return value


def _retry_after(v: Optional[str]) -> Optional[float]:
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        return None  # an HTTP date; the server never sends one


# ---------------------------------------------------------------- base URL


@dataclass(frozen=True)
class _Target:
    """Where the server is: scheme "http", "https" or "unix"."""

    scheme: str
    host: str  # the Host header
    hostname: str  # what to connect to
    port: int
    path: str  # unix socket path
    prefix: str  # put before every request path: "" or "/fg" (a sidecar behind a reverse proxy)
    ssl: Optional[ssl.SSLContext]
    base_url: str


_BASE_URL_FORMS = "http(s)://host:port[/prefix] or unix:///path"

# What a path may hold unquoted: printable ASCII but the WHATWG URL
# standard's path percent-encode set (space " # < > ? ` { }), so that a
# prefix is sent as Node's URL class sends it; % stays, already quoted.
_PREFIX_SAFE = "!$%&'()*+,/:;=@[]^|"


def _prefix(base_url: str, path: str) -> str:
    """The path of an http(s) base URL as a request path prefix, normalised
    as Node's URL class does it: backslashes are slashes, "." and ".."
    segments (%2e too) resolved, trailing slashes dropped, the rest quoted."""
    segs: List[str] = []
    for seg in path.replace("\\", "/").split("/")[1:]:
        dots = seg.lower().replace("%2e", ".")
        if dots == "..":
            if segs:
                segs.pop()
        elif dots != ".":
            segs.append(seg)
    try:
        return urllib.parse.quote("/" + "/".join(segs), safe=_PREFIX_SAFE).rstrip("/")
    except UnicodeEncodeError:
        raise ValueError(f"floodgate: base_url path is not valid text, got {base_url!r}") from None


def _target(base_url: str, ca_file: Optional[str], ssl_context: Optional[ssl.SSLContext]) -> _Target:
    """Parses base_url, for Client and AsyncClient alike: the forms and
    normalisation of the Node client's baseUrl."""
    if not isinstance(base_url, str):
        raise TypeError(f"floodgate: base_url must be a str, got {type(base_url).__name__}")
    u = urllib.parse.urlsplit(base_url)
    if u.scheme == "unix":
        # unix:///run/floodgate.sock: the path is the socket, requests go to /v1/...
        if u.netloc or not u.path or u.query or u.fragment:
            raise ValueError(f"floodgate: a unix base_url is unix:///path/to/floodgate.sock, got {base_url!r}")
        if ca_file or ssl_context:
            raise ValueError("floodgate: ca_file and ssl_context are for https:// base URLs")
        return _Target("unix", "localhost", "localhost", 0, u.path, "", None, base_url)
    if u.scheme not in ("http", "https") or not u.hostname or "@" in u.netloc or u.query or u.fragment:
        raise ValueError(f"floodgate: base_url must be {_BASE_URL_FORMS}, got {base_url!r}")
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"floodgate: base_url {base_url!r}: {e}") from None
    ctx = None
    if u.scheme == "https":
        if ssl_context is not None and ca_file is not None:
            raise ValueError("floodgate: give ca_file or ssl_context, not both")
        # Certificates are verified by default (hostname too); ca_file adds
        # a private CA, ssl_context replaces the whole policy.
        ctx = ssl_context or ssl.create_default_context(cafile=ca_file)
    elif ca_file or ssl_context:
        raise ValueError("floodgate: ca_file and ssl_context are for https:// base URLs")
    host = u.hostname
    hostport = f"[{host}]" if ":" in host else host
    if u.port:
        hostport += f":{u.port}"
    prefix = _prefix(base_url, u.path)
    return _Target(u.scheme, hostport, host, port, "", prefix, ctx, base_url.rstrip("/"))


L = TypeVar("L", bound="_LeaseBase")


class _ClientBase(Generic[L]):
    """The settings Client and AsyncClient take and check alike, and how
    each makes its leases (_lease_type: Lease or AsyncLease)."""

    _lease_type: Type[L]

    def __init__(
        self,
        base_url: str,
        token: Optional[str],
        timeout: float,
        max_wait: float,
        ca_file: Optional[str],
        ssl_context: Optional[ssl.SSLContext],
    ) -> None:
        self._target = _target(base_url, ca_file, ssl_context)
        self.base_url = self._target.base_url
        self.token = check_token(token)
        self.timeout = self._call_timeout(timeout)
        self.max_wait = _timeout_arg("max_wait", max_wait) or 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"  # never the token

    def _call_timeout(self, timeout: Optional[float]) -> float:
        t = _timeout_arg("timeout", timeout)
        if not t:
            raise ValueError(f"floodgate: timeout must be > 0, got {timeout!r}")
        return t

    def _op_timeout(self, op: "_Op[Any]", timeout: Optional[float]) -> float:
        """What a call of op may take: timeout (or the client's) plus its wait."""
        t = self._call_timeout(timeout) if timeout is not None else self.timeout
        if op.wait is not None:
            t += op.wait if op.wait >= 0 else self.max_wait
        return t

    def _leased(self, got: Union[_Granted, Decision]) -> Union[L, Decision]:
        """acquire()'s answer: the granted slot as this client's lease."""
        if isinstance(got, _Granted):
            return self._lease_type(self, got.name, got.token, got.lease, got.degraded)
        return got

    def lease(self, name: Id, token: str) -> L:
        """Rebuild a lease from its token (e.g. one handed over by another process)."""
        _quote("name", name)
        return self._lease_type(self, name, token, 0.0, False)


def _held_slot(got: Union[L, Decision], name: Id) -> L:
    """slot()'s lease: Denied when acquire() answered with a denial."""
    if isinstance(got, Decision):
        raise Denied(got, f"slot of {name!r}")
    return got


class _Held:
    """What Lease and Reservation share: the client that got it, the name it
    was got from, the server's token for it. repr shows _shown, never the
    token (it lets anyone release or settle)."""

    _shown: Tuple[str, ...] = ()

    def __init__(self, client: Any, name: Id, token: str) -> None:
        self.client = client
        self.name = name
        self.token = token

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._shown)
        return f"{type(self).__name__}({fields})"


class _LeaseBase(_Held):
    """What Lease and AsyncLease hold."""

    _shown = ("name", "lease", "degraded")

    def __init__(self, client: Any, name: Id, token: str, lease: float, degraded: bool) -> None:
        super().__init__(client, name, token)
        self.lease = lease
        self.degraded = degraded
        self.released = False


class _ReservationBase(_Held):
    """What Reservation and AsyncReservation hold."""

    _shown = ("name", "user", "estimate", "done")

    def __init__(self, client: Any, name: Id, user: Id, estimate: int, decision: Decision) -> None:
        super().__init__(client, name, decision.reservation)
        self.user = user
        self.estimate = estimate
        self.decision = decision
        self.done = False


def _readable(sock: Any) -> bool:
    """An idle kept-alive socket is readable only when the server closed it
    (or sent something unasked): either way it must not carry a request.
    Asked of the socket itself, at once: what the event loop has not read
    yet counts too."""
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        if hasattr(select, "poll"):
            po = select.poll()
            po.register(sock, select.POLLIN)
            return bool(po.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


# ---------------------------------------------------------------- operations


class _Op(Generic[T]):
    """One request: what to send and how its answer becomes a T.

    parse(json, retry_after_header) builds the result of a 2xx answer.
    on_503, when set, turns a 503 carrying a denial (a policy failing
    closed while Redis is down) into the result instead of an error.
    wait is the server-side wait the request may take, on top of the
    client's timeout (None: none; -1: the client's max_wait).
    idempotent requests may be resent when a kept-alive connection turns
    out dead after the request went out: those that count nothing (GET,
    DELETE) and success, abandon and refresh, whose second arrival changes
    nothing the first did not (the Node client's set). The others (every
    request that counts) never are.
    """

    __slots__ = ("method", "path", "body", "parse", "on_503", "wait", "idempotent", "conflict")

    def __init__(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]],
        parse: Callable[[Any, Optional[float]], T],
        on_503: Optional[Callable[["Decision"], T]] = None,
        wait: Optional[float] = None,
        idempotent: bool = False,
        conflict: Type[FloodgateError] = LeaseLost,
    ) -> None:
        self.method = method
        self.path = path
        self.body = json.dumps(body, separators=(",", ":")).encode("utf-8") if body is not None else None
        self.parse = parse
        self.on_503 = on_503
        self.wait = wait
        self.idempotent = idempotent
        self.conflict = conflict  # the error of a 409

    def finish(self, status: int, retry_after: Optional[str], raw: bytes) -> T:
        """The result of the answer (status, Retry-After header, body), or raise."""
        ra = _retry_after(retry_after)
        if 200 <= status < 300:
            return self.parse(_json(status, raw), ra)
        err = _error(status, raw, ra, self.conflict)
        if status == 503 and self.on_503 is not None and err.decision is not None:
            return self.on_503(err.decision)
        raise err


def _json(status: int, raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        if not raw.strip():
            return None
        raise FloodgateError(status, f"server sent invalid JSON: {raw[:200]!r}") from None


def _error(status: int, raw: bytes, ra: Optional[float], conflict: Type[FloodgateError] = LeaseLost) -> FloodgateError:
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
            decision = Decision.from_json(dict(body, allowed=bool(body["acquired"]), error=""), ra)
        if decision is not None and decision.error:
            decision = dataclasses.replace(decision, error="")  # the message, not a per-user failure
    if not msg:
        msg = raw[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    cls: Type[FloodgateError] = conflict if status == 409 else FloodgateError
    return cls(status, msg, ra, decision)


def _obj(d: Any, want: str) -> Dict[str, Any]:
    if not isinstance(d, dict):
        raise FloodgateError(200, f"server sent {d!r}, want {want} object")
    return d


def _decision(d: Any, ra: Optional[float]) -> Decision:
    return Decision.from_json(_obj(d, "a decision"), ra)


def _same(d: Decision) -> Decision:
    return d


def _none(d: Any, ra: Optional[float]) -> None:
    return None


def _user_path(user: Id) -> str:
    return "/v1/users/" + _quote("user", user)


def _ep_path(name: Id, endpoint: Id) -> str:
    return "/v1/backoff/" + _quote("name", name) + "/endpoints/" + _quote("endpoint", endpoint)


def _wait_body(body: Dict[str, Any], t: Optional[float]) -> float:
    """Put a server-side wait of t seconds (None: the server's maximum)
    into body; returns the _Op.wait for it."""
    if t is None:
        return -1.0
    body["timeout_ms"] = max(1, math.ceil(t * 1000))
    return t


def op_allow(user: Id) -> _Op[Decision]:
    return _Op("POST", _user_path(user) + "/allow", None, _decision, _same)


def op_allow_many(users: Sequence[Id]) -> _Op[List[Decision]]:
    if isinstance(users, (str, bytes)) or not hasattr(users, "__iter__"):
        raise TypeError(f"floodgate: users must be a list of ids, got {type(users).__name__}")
    ids = [_json_id("user", u) for u in users]
    if not ids:
        raise ValueError("floodgate: allow_many needs at least one user")
    if len(ids) > 1000:
        raise ValueError(f"floodgate: allow_many takes at most 1000 users, got {len(ids)}")

    def parse(d: Any, ra: Optional[float]) -> List[Decision]:
        got = _obj(d, "an allow-many").get("decisions")
        if not isinstance(got, list) or len(got) != len(ids):
            raise FloodgateError(200, f"server sent {len(got) if isinstance(got, list) else got!r} decisions for {len(ids)} users")
        return [Decision.from_json(_obj(x, "a decision")) for x in got]

    return _Op("POST", "/v1/allow-many", {"users": ids}, parse)


def op_peek(user: Id) -> _Op[UserStatus]:
    def parse(d: Any, ra: Optional[float]) -> UserStatus:
        d = d or {}
        return UserStatus(
            user=str(d.get("user", "")),
            remaining=int(d.get("remaining", 0)),
            retry_after=_secs(d.get("retry_after_ms")),
            reason=str(d.get("reason", "none")),
            cooldown_left=_secs(d.get("cooldown_left_ms")),
            entries=int(d.get("entries", 0)),
            reset_after=_secs(d.get("reset_after_ms")),
        )

    return _Op("GET", _user_path(user), None, parse, idempotent=True)


def op_reset(user: Id) -> _Op[None]:
    return _Op("DELETE", _user_path(user), None, _none, idempotent=True)


def op_pick(name: Id, endpoints: Tuple[str, ...]) -> _Op[Tuple[Optional[str], Decision]]:
    if not endpoints:
        raise ValueError("floodgate: pick needs at least one endpoint")
    eps = [_json_id("endpoint", e) for e in endpoints]

    def parse(d: Any, ra: Optional[float]) -> Tuple[Optional[str], Decision]:
        d = _obj(d, "a decision")
        return (d.get("endpoint") or None), Decision.from_json(d, ra)

    return _Op(
        "POST", "/v1/backoff/" + _quote("name", name) + "/pick", {"endpoints": eps}, parse,
        lambda dec: (None, dec),  # a 503 denial names no endpoint
    )


def op_check(name: Id, endpoint: Id) -> _Op[Decision]:
    return _Op("POST", _ep_path(name, endpoint) + "/check", None, _decision, _same)


def op_failure(name: Id, endpoint: Id) -> _Op[Decision]:
    return _Op("POST", _ep_path(name, endpoint) + "/failure", None, _decision, _same)


def op_success(name: Id, endpoint: Id) -> _Op[None]:
    return _Op("POST", _ep_path(name, endpoint) + "/success", None, _none, idempotent=True)


def op_abandon(name: Id, endpoint: Id, token: str) -> _Op[None]:
    return _Op("POST", _ep_path(name, endpoint) + "/abandon", {"token": token}, _none, idempotent=True)


def op_endpoint(name: Id, endpoint: Id) -> _Op[EndpointStatus]:
    def parse(d: Any, ra: Optional[float]) -> EndpointStatus:
        d = d or {}
        return EndpointStatus(
            state=str(d.get("state", "")),
            opens=int(d.get("opens", 0)),
            failures=int(d.get("failures", 0)),
            delay=_secs(d.get("delay_ms")),
            retry_after=_secs(d.get("retry_after_ms")),
            probing=bool(d.get("probing", False)),
        )

    return _Op("GET", _ep_path(name, endpoint), None, parse, idempotent=True)


def op_bucket_allow(name: Id, n: int) -> _Op[Decision]:
    return _Op("POST", "/v1/buckets/" + _quote("name", name) + "/allow", {"n": _count(n)}, _decision, _same)


def op_wait(name: Id, n: int, timeout: Optional[float]) -> _Op[Decision]:
    t = _timeout_arg("timeout", timeout)
    body: Dict[str, Any] = {"n": _count(n)}
    w = _wait_body(body, t)
    return _Op("POST", "/v1/buckets/" + _quote("name", name) + "/wait", body, _decision, _same, wait=w)


def op_acquire(name: Id, holder: Id, wait: bool, timeout: Optional[float]) -> _Op[Union[_Granted, Decision]]:
    t = _timeout_arg("timeout", timeout)
    seg = _quote("name", name)
    body: Dict[str, Any] = {"holder": _json_id("holder", holder), "wait": bool(wait)}
    w = _wait_body(body, t) if wait else None

    def parse(d: Any, ra: Optional[float]) -> Union[_Granted, Decision]:
        d = _obj(d, "an acquire")
        if d.get("acquired"):
            return _Granted(name, str(d.get("token", "")), _secs(d.get("lease_ms")), bool(d.get("degraded", False)))
        return Decision(
            allowed=False,
            reason=str(d.get("reason") or "slots"),
            retry_after=_secs(d.get("retry_after_ms")),
            degraded=bool(d.get("degraded", False)),
        )

    return _Op("POST", "/v1/slots/" + seg + "/acquire", body, parse, _same, wait=w)


def op_lease(name: Id, token: str, what: str) -> _Op[None]:
    """what: "refresh" (idempotent) or "release" (not: sent twice, the
    second would find the lease gone and raise LeaseLost)."""
    return _Op("POST", "/v1/slots/" + _quote("name", name) + "/" + what, {"token": token}, _none,
               idempotent=what == "refresh")


def op_slots(name: Id) -> _Op[SlotsStatus]:
    def parse(d: Any, ra: Optional[float]) -> SlotsStatus:
        d = d or {}
        return SlotsStatus(size=int(d.get("size", 0)), in_use=int(d.get("in_use", 0)), waiting=int(d.get("waiting", 0)))

    return _Op("GET", "/v1/slots/" + _quote("name", name), None, parse, idempotent=True)


def _budget_path(name: Id, user: Id) -> str:
    return "/v1/budgets/" + _quote("name", name) + "/users/" + _quote("user", user)


def op_reserve(name: Id, user: Id, units: int) -> _Op[Decision]:
    """units: the estimate (prompt tokens + max_tokens)."""
    return _Op("POST", _budget_path(name, user) + "/reserve", {"units": _count(units, "units")}, _decision, _same)


def op_charge(name: Id, user: Id, units: int) -> _Op[Decision]:
    return _Op("POST", _budget_path(name, user) + "/charge", {"units": _count(units, "units")}, _decision, _same)


def op_settle(name: Id, user: Id, reservation: str, units: Optional[int]) -> _Op[None]:
    """units None: cancel."""
    if not isinstance(reservation, str) or not reservation:
        raise ValueError(f"floodgate: reservation must be the reserve() Decision's non-empty .reservation, got {reservation!r}")
    body: Dict[str, Any] = {"reservation": reservation}
    what = "cancel"
    if units is not None:
        body["units"], what = _count(units, "units", 0), "settle"
    return _Op("POST", _budget_path(name, user) + "/" + what, body, _none, conflict=StaleReservation)


def op_budget(name: Id, user: Id) -> _Op[BudgetStatus]:
    def parse(d: Any, ra: Optional[float]) -> BudgetStatus:
        d = d or {}
        return BudgetStatus(
            budget=str(d.get("budget", "")),
            user=str(d.get("user", "")),
            limit=int(d.get("limit", 0)),
            window=_secs(d.get("window_ms")),
            spent=int(d.get("spent", 0)),
            reserved=int(d.get("reserved", 0)),
            reservations=int(d.get("reservations", 0)),
            remaining=int(d.get("remaining", 0)),
            oldest_ages_out=_secs(d.get("oldest_ages_out_ms")),
            reset_after=_secs(d.get("reset_after_ms")),
        )

    return _Op("GET", _budget_path(name, user), None, parse, idempotent=True)


def op_readiness() -> _Op[Readiness]:
    def parse(d: Any, ra: Optional[float]) -> Readiness:
        d = d or {}
        return Readiness(
            maxmemory_policy=str(d.get("maxmemory_policy") or ""),
            eviction_unsafe=bool(d.get("eviction_unsafe", False)),
            evicted_keys=int(d.get("evicted_keys", 0)),
            warning=str(d.get("warning") or ""),
        )

    return _Op("GET", "/readyz", None, parse, idempotent=True)


def op_probe(path: str) -> _Op[None]:
    """/healthz or /readyz; the clients map any error to False."""
    return _Op("GET", path, None, _none, idempotent=True)


class RequestHead:
    """Request lines and headers for transports that write raw HTTP/1.1;
    what is the same for every request is encoded once."""

    __slots__ = ("_tail",)

    def __init__(self, host: str, token: Optional[str]) -> None:
        lines = [f"Host: {host}", "Accept: application/json", "User-Agent: " + USER_AGENT]
        if token:
            lines.append("Authorization: Bearer " + token)
        self._tail = ("\r\n" + "\r\n".join(lines) + "\r\n").encode("latin-1")

    def encode(self, method: str, path: str, body: Optional[bytes]) -> bytes:
        head = f"{method} {path} HTTP/1.1".encode("ascii") + self._tail
        if body is not None:
            return head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        if method == "POST":
            return head + b"Content-Length: 0\r\n\r\n"
        return head + b"\r\n"


def headers_for(token: Optional[str], body: Optional[bytes]) -> Dict[str, str]:
    """The same headers for http.client (which adds Host and Content-Length)."""
    h = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if body is not None:
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + token
    return h


def check_token(token: Optional[str]) -> Optional[str]:
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        raise TypeError(f"floodgate: token must be a str, got {type(token).__name__}")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise ValueError("floodgate: token must be printable ASCII without spaces")
    return token
