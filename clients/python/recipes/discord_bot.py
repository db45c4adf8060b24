"""discord.py 2.x: a bot that answers through an LLM, limited by Floodgate."""

from typing import Any

import floodgate


class FloodgateHandler(floodgate.ChatReplies):
    """FloodgateHandler(fg, endpoints, ask_llm, wiki): what the bot says to
    one discord.Message, typing while the LLM thinks. The user is the
    author's id (names change, ids do not)."""

    async def on_message(self, message: Any) -> None:
        r = await self.reply(str(message.author.id), message.content, typing=message.channel.typing)
        await message.reply(r.text)


def run(handler: FloodgateHandler, token: str) -> None:
    """Connect to Discord and answer every message (needs discord.py; the
    handler above does not: the tests give it a fake message)."""
    import discord

    intents = discord.Intents.default()
    intents.message_content = True
    client = discord.Client(intents=intents)

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author == client.user or message.author.bot:
            return
        await handler.on_message(message)

    client.run(token)
