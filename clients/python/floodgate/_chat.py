"""ChatReplies: what a chat bot answers to one message, under every limit.

The framework recipes of docs/bots.md (TwitchIO, discord.py, twitchAPI)
differ only in how a message arrives and how the answer goes out; what to
answer is this, written once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from math import ceil
from typing import TYPE_CHECKING, Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, Optional, Sequence

from ._proto import Denied, Id

if TYPE_CHECKING:
    from ._async import AsyncClient


@dataclass(frozen=True)
class Reply:
    """The text to send back for one chat message.

    answered is True when text is the answer (the LLM's, or the wiki's);
    False when it says why there is none and when to ask again, e.g.
    Reply(text="wait 6s (cooldown)", answered=False). A bot may address
    only those to the user ("@name wait 6s (cooldown)").
    """

    text: str
    answered: bool


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


class ChatReplies:
    """Answers chat messages through an LLM for an asyncio bot, with the
    limits of one ``floodgate serve`` shared by every replica:

        replies = floodgate.ChatReplies(fg, ["http://localhost:1234"], ask_llm, wiki)
        r = await replies.reply(user_id, text)   # Reply(text=..., answered=...)

    fg is the bot's AsyncClient; ask_llm(endpoint, text) and wiki(query)
    are its own coroutines (wiki None: "!wiki" is text like any other).
    For one message of user, reply():

    1. fg.allow(user), the cooldown and window. Denied:
       "wait 6s (cooldown)" (the reason, the wait in whole seconds,
       rounded up as Retry-After is: a viewer who waits that long is
       not refused again).
    2. "!wiki <query>": a token of the API bucket "wikipedia", waited for
       on the server up to 2 s, then wiki(query) is the answer; no token
       in time: "the wiki is busy, retry in 1s".
    3. Anything else: fg.pick("llm", *endpoints), the first endpoint not
       backing off ("the LLM is resting, retry in 3s" when there is none;
       a half-open probe pick took is handed back, for call to take);
       then ask_llm(endpoint, text) inside fg.slot("llm", user, timeout=10)
       (at most FLOODGATE_MAX_CONCURRENT_USERS users in the LLM at once)
       and fg.call (a raise backs the endpoint off). No slot in time, or
       the endpoint probed by another caller: "busy (slots), retry in 4s";
       ask_llm raised (or the server failed meanwhile): "the LLM failed,
       try again later". An answer stands when only the slot's release
       after it failed (the lease ran out while the LLM answered).

    typing, when given, is entered around the LLM call (discord.py's
    channel.typing). A FloodgateError of allow, wait or pick (the server
    unreachable) and an exception of wiki are raised, not answered.
    """

    def __init__(
        self,
        fg: "AsyncClient",
        endpoints: Sequence[str],
        ask_llm: Callable[[str, str], Awaitable[str]],
        wiki: Optional[Callable[[str], Awaitable[str]]] = None,
    ) -> None:
        if not endpoints or isinstance(endpoints, str):
            raise ValueError(f"floodgate: ChatReplies needs a list of LLM endpoints, got {endpoints!r}")
        self.fg, self.endpoints, self.ask_llm, self.wiki = fg, list(endpoints), ask_llm, wiki

    async def reply(
        self, user: Id, text: str, typing: Optional[Callable[[], AsyncContextManager[Any]]] = None
    ) -> Reply:
        """What to send back to user's message text."""
        d = await self.fg.allow(user)  # cooldown + window, shared by every replica
        if not d.allowed:
            return Reply(f"wait {ceil(d.retry_after)}s ({d.reason})", False)
        if self.wiki is not None and text.startswith("!wiki "):
            d = await self.fg.wait("wikipedia", timeout=2)  # the API's own rate, for all replicas
            if not d.allowed:
                return Reply(f"the wiki is busy, retry in {ceil(d.retry_after)}s", False)
            return Reply(await self.wiki(text[6:]), True)
        endpoint, d = await self.fg.pick("llm", *self.endpoints)  # skip endpoints backing off
        if endpoint is None:
            return Reply(f"the LLM is resting, retry in {ceil(d.retry_after)}s", False)
        if d.probe:  # pick took the half-open probe: hand it back for call to take
            await self.fg.abandon("llm", endpoint, d.token)
        answer: Optional[str] = None
        try:
            async with self.fg.slot("llm", user, timeout=10):  # at most N users in the LLM at once
                async with (typing or _nothing)():
                    answer = await self.fg.call("llm", endpoint, self.ask_llm, endpoint, text)
        except Denied as e:
            return Reply(f"busy ({e.reason}), retry in {ceil(e.retry_after)}s", False)
        except Exception:
            pass  # ask_llm raised, or only the release after its answer failed (the lease ran out)
        if answer is None:
            return Reply("the LLM failed, try again later", False)
        return Reply(answer, True)
