"""twitchAPI 4.x (Chat): a chat bot whose answers go through Floodgate."""

from typing import Any

import floodgate


class FloodgateHandler(floodgate.ChatReplies):
    """FloodgateHandler(fg, endpoints, ask_llm, wiki): what the bot says to
    one twitchAPI.chat.ChatMessage, as a reply in its thread."""

    async def on_message(self, msg: Any) -> None:
        r = await self.reply(msg.user.id, msg.text)
        await msg.reply(r.text)


try:
    from twitchAPI.chat import Chat, ChatMessage
    from twitchAPI.type import ChatEvent
except ImportError:  # the handler above needs no framework (the tests give it a fake message)
    Chat = None

if Chat is not None:

    def register(chat: Chat, handler: FloodgateHandler) -> None:
        """chat = await Chat(twitch); register(chat, handler); chat.start()"""

        async def on_message(msg: ChatMessage) -> None:
            await handler.on_message(msg)

        chat.register_event(ChatEvent.MESSAGE, on_message)
