"""TwitchIO 3.x: a chat bot whose every answer goes through Floodgate."""

from typing import Any

import floodgate


class FloodgateHandler(floodgate.ChatReplies):
    """FloodgateHandler(fg, endpoints, ask_llm, wiki): what the bot says to
    one chat message (twitchio.ChatMessage); a refusal names the viewer."""

    async def on_message(self, payload: Any) -> None:
        r = await self.reply(payload.chatter.id, payload.text)
        await payload.respond(r.text if r.answered else f"@{payload.chatter.name} {r.text}")


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
