"""twitchAPI 4.x (Chat): a chat bot whose answers go through Floodgate."""

from typing import Any, Awaitable, Callable, Sequence

import floodgate


class FloodgateHandler:
    """What the bot does with one twitchAPI.chat.ChatMessage."""

    def __init__(self, fg: floodgate.AsyncClient, endpoints: Sequence[str],
                 ask_llm: Callable[[str, str], Awaitable[str]],
                 wiki: Callable[[str], Awaitable[str]]) -> None:
        self.fg, self.endpoints, self.ask_llm, self.wiki = fg, list(endpoints), ask_llm, wiki

    async def on_message(self, msg: Any) -> None:
        user, text = msg.user.id, msg.text
        d = await self.fg.allow(user)  # cooldown + window, shared by every replica
        if not d.allowed:
            await msg.reply(f"wait {d.retry_after:.0f}s ({d.reason})")
            return
        if text.startswith("!wiki "):
            d = await self.fg.wait("wikipedia", timeout=2)  # the API's own rate, for all replicas
            if not d.allowed:
                await msg.reply(f"the wiki is busy, retry in {d.retry_after:.0f}s")
                return
            await msg.reply(await self.wiki(text[6:]))
            return
        endpoint, d = await self.fg.pick("llm", *self.endpoints)  # skip endpoints backing off
        if endpoint is None:
            await msg.reply(f"the LLM is resting, retry in {d.retry_after:.0f}s")
            return
        try:
            async with self.fg.slot("llm", user, timeout=10):  # at most N viewers in the LLM at once
                answer = await self.fg.call("llm", endpoint, self.ask_llm, endpoint, text)  # a raise backs it off
        except floodgate.Denied as e:
            await msg.reply(f"busy ({e.reason}), retry in {e.retry_after:.0f}s")
            return
        except Exception:
            await msg.reply("the LLM failed, try again later")
            return
        await msg.reply(answer)


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
