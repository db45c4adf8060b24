"""TwitchIO 3.x: a chat bot whose every answer goes through Floodgate."""

from typing import Any, Awaitable, Callable, Sequence

import floodgate


class FloodgateHandler:
    """What the bot does with one chat message (twitchio.ChatMessage)."""

    def __init__(self, fg: floodgate.AsyncClient, endpoints: Sequence[str],
                 ask_llm: Callable[[str, str], Awaitable[str]],
                 wiki: Callable[[str], Awaitable[str]]) -> None:
        self.fg, self.endpoints, self.ask_llm, self.wiki = fg, list(endpoints), ask_llm, wiki

    async def on_message(self, payload: Any) -> None:
        user, text = payload.chatter.id, payload.text
        d = await self.fg.allow(user)  # cooldown + window, shared by every replica
        if not d.allowed:
            await payload.respond(f"@{payload.chatter.name} wait {d.retry_after:.0f}s ({d.reason})")
            return
        if text.startswith("!wiki "):
            d = await self.fg.wait("wikipedia", timeout=2)  # the API's own rate, for all replicas
            if not d.allowed:
                await payload.respond(f"@{payload.chatter.name} the wiki is busy, retry in {d.retry_after:.0f}s")
                return
            await payload.respond(await self.wiki(text[6:]))
            return
        endpoint, d = await self.fg.pick("llm", *self.endpoints)  # skip endpoints backing off
        if endpoint is None:
            await payload.respond(f"@{payload.chatter.name} the LLM is resting, retry in {d.retry_after:.0f}s")
            return
        try:
            async with self.fg.slot("llm", user, timeout=10):  # at most N viewers in the LLM at once
                answer = await self.fg.call("llm", endpoint, self.ask_llm, endpoint, text)  # a raise backs it off
        except floodgate.Denied as e:
            await payload.respond(f"@{payload.chatter.name} busy ({e.reason}), retry in {e.retry_after:.0f}s")
            return
        except Exception:
            await payload.respond(f"@{payload.chatter.name} the LLM failed, try again later")
            return
        await payload.respond(answer)


try:
    import twitchio
    from twitchio.ext import commands
except ImportError:  # the handler above needs no framework (the tests give it a fake message)
    twitchio = None

if twitchio is not None:

    class Bot(commands.Bot):
        def __init__(self, handler: FloodgateHandler, **kwargs: Any) -> None:
            super().__init__(**kwargs)  # client_id, client_secret, bot_id, owner_id, prefix
            self.floodgate = handler

        async def event_message(self, payload: twitchio.ChatMessage) -> None:
            if payload.chatter.id == self.bot_id:
                return  # our own messages
            await self.floodgate.on_message(payload)
