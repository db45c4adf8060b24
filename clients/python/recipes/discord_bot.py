"""discord.py 2.x: a bot that answers through an LLM, limited by Floodgate."""

from typing import Any, Awaitable, Callable, Sequence

import floodgate


class FloodgateHandler:
    """What the bot does with one discord.Message."""

    def __init__(self, fg: floodgate.AsyncClient, endpoints: Sequence[str],
                 ask_llm: Callable[[str, str], Awaitable[str]],
                 wiki: Callable[[str], Awaitable[str]]) -> None:
        self.fg, self.endpoints, self.ask_llm, self.wiki = fg, list(endpoints), ask_llm, wiki

    async def on_message(self, message: Any) -> None:
        user, text = str(message.author.id), message.content
        d = await self.fg.allow(user)  # cooldown + window, shared by every shard and replica
        if not d.allowed:
            await message.reply(f"wait {d.retry_after:.0f}s ({d.reason})")
            return
        if text.startswith("!wiki "):
            d = await self.fg.wait("wikipedia", timeout=2)  # the API's own rate, for all replicas
            if not d.allowed:
                await message.reply(f"the wiki is busy, retry in {d.retry_after:.0f}s")
                return
            await message.reply(await self.wiki(text[6:]))
            return
        endpoint, d = await self.fg.pick("llm", *self.endpoints)  # skip endpoints backing off
        if endpoint is None:
            await message.reply(f"the LLM is resting, retry in {d.retry_after:.0f}s")
            return
        try:
            async with self.fg.slot("llm", user, timeout=10):  # at most N users in the LLM at once
                async with message.channel.typing():
                    answer = await self.fg.call("llm", endpoint, self.ask_llm, endpoint, text)  # a raise backs it off
        except floodgate.Denied as e:
            await message.reply(f"busy ({e.reason}), retry in {e.retry_after:.0f}s")
            return
        except Exception:
            await message.reply("the LLM failed, try again later")
            return
        await message.reply(answer)


try:
    import discord
except ImportError:  # the handler above needs no framework (the tests give it a fake message)
    discord = None

if discord is not None:

    class Bot(discord.Client):
        def __init__(self, handler: FloodgateHandler, **kwargs: Any) -> None:
            intents = discord.Intents.default()
            intents.message_content = True
            super().__init__(intents=intents, **kwargs)
            self.floodgate = handler

        async def on_message(self, message: discord.Message) -> None:
            if message.author == self.user or message.author.bot:
                return
            await self.floodgate.on_message(message)
