"""Python clients for ``floodgate serve``, Floodgate's HTTP sidecar.

Standard library only, Python 3.9+. Every bot replica that talks to the
same server (or to servers on the same Redis) shares the same limits:
per-user cooldown and window, LLM endpoint backoff, API rate buckets,
concurrent-user slots and per-user LLM token budgets.

    import floodgate
    fg = floodgate.Client("http://127.0.0.1:8080")
    d = fg.allow("some_viewer")
    if not d.allowed:
        print(f"wait {d.retry_after:.0f}s ({d.reason})")

    async with floodgate.AsyncClient("http://127.0.0.1:8080") as fg:
        d = await fg.allow("some_viewer")

Client (threads, http.client) and AsyncClient (asyncio streams) have the
same operations, arguments, results and errors; both keep connections
alive, speak https (certificates verified) and unix:///path sockets.

Errors: FloodgateError for API errors (.status, .message), TransportError (a
FloodgateError with status None) when the server cannot be reached or does
not answer within the timeout, LeaseLost (409) when a slot lease ran out,
StaleReservation (409) when settle() or cancel() names no live reservation,
Denied when call(), slot() or budget_call() cannot go ahead (it carries the
Decision).

ChatReplies turns one chat message into the reply a bot sends, under all
of these (the recipes of docs/bots.md use it).
"""

from ._async import AsyncClient, AsyncLease, AsyncReservation
from ._chat import ChatReplies, Reply
from ._proto import (
    DEFAULT_MAX_WAIT,
    BudgetStatus,
    Decision,
    Denied,
    EndpointStatus,
    FloodgateError,
    LeaseLost,
    Readiness,
    SlotsStatus,
    StaleReservation,
    TransportError,
    UserStatus,
    __version__,
)
from ._sync import Client, Lease, Reservation

__all__ = [
    "Client",
    "AsyncClient",
    "Decision",
    "UserStatus",
    "EndpointStatus",
    "SlotsStatus",
    "BudgetStatus",
    "Readiness",
    "Lease",
    "AsyncLease",
    "Reservation",
    "AsyncReservation",
    "FloodgateError",
    "TransportError",
    "LeaseLost",
    "StaleReservation",
    "Denied",
    "ChatReplies",
    "Reply",
    "DEFAULT_MAX_WAIT",
    "__version__",
]
