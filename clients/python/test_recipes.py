"""The framework recipes (recipes/*.py, shown verbatim in docs/bots.md).

DocTest: docs/bots.md shows each recipe file whole, byte for byte, and
ChatReplies.reply, the logic they share.
LiveRecipeTest (FLOODGATE_TEST_URL, set by integration_test/python_test.go):
each recipe's handler, given a fake message object of its framework, runs
against a real ``floodgate serve``: the answer, the cooldown reply with the
wait, backoff after an LLM failure, the API bucket, the slot given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import os
import re
import textwrap
import unittest
import uuid
from types import SimpleNamespace

import floodgate

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = ("twitchio_bot.py", "discord_bot.py", "twitchapi_bot.py")
DOC = os.path.join(HERE, "..", "..", "docs", "bots.md")
LIVE_URL = os.environ.get("FLOODGATE_TEST_URL", "")
LIVE_TOKEN = os.environ.get("FLOODGATE_TEST_TOKEN") or None


def _load(name):
    spec = importlib.util.spec_from_file_location("recipe_" + name[:-3], os.path.join(HERE, "recipes", name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class DocTest(unittest.TestCase):
    def test_docs_show_every_recipe_verbatim(self):
        if not os.path.exists(DOC) and not os.environ.get("CI"):
            self.skipTest("docs/bots.md is not next to this copy")
        with open(DOC, encoding="utf-8") as f:
            doc = f.read()
        python = doc[doc.index("## Python"):doc.index("## Node")]
        blocks = re.findall(r"```python\n(.*?)```", python, re.S)
        for name in RECIPES:
            with open(os.path.join(HERE, "recipes", name), encoding="utf-8") as f:
                src = f.read()
            self.assertIn(src, blocks, f"docs/bots.md does not show recipes/{name} as it is")
            self.assertIn(f"clients/python/recipes/{name}", python)
        reply = textwrap.dedent(inspect.getsource(floodgate.ChatReplies.reply))
        self.assertIn(reply, blocks, "docs/bots.md does not show ChatReplies.reply as it is")


# Fake message objects: only what each framework's message offers and the
# recipe uses. replies collects what the bot said.

def twitchio_message(user, text):
    m = SimpleNamespace(chatter=SimpleNamespace(id=user, name=user), text=text, replies=[])

    async def respond(content, *, me=False):
        m.replies.append(content)
    m.respond = respond
    return m


def discord_message(user, text):
    @contextlib.asynccontextmanager
    async def typing():
        yield
    m = SimpleNamespace(author=SimpleNamespace(id=user, name=user, bot=False), content=text,
                        channel=SimpleNamespace(typing=typing), replies=[])

    async def reply(content=None, **kwargs):
        m.replies.append(content)
    m.reply = reply
    return m


def twitchapi_message(user, text):
    m = SimpleNamespace(user=SimpleNamespace(id=user, name=user), text=text, replies=[])

    async def reply(text):
        m.replies.append(text)
    m.reply = reply
    return m


@unittest.skipUnless(LIVE_URL, "FLOODGATE_TEST_URL is not set (integration_test/python_test.go sets it)")
class LiveRecipeTest(unittest.TestCase):
    """Expects the test server's settings: a 10 s cooldown, a short LLM
    retry delay, a "wikipedia" bucket of 1/s."""

    def scenario(self, recipe, message):
        mod = _load(recipe)
        run = uuid.uuid4().hex[:8]
        eps = ["ep-a-" + run, "ep-b-" + run]
        llm_calls = []

        async def ask_llm(endpoint, prompt):
            llm_calls.append(endpoint)
            await asyncio.sleep(0.01)
            if "fail" in prompt:
                raise ConnectionError("LLM timed out")
            return "answer from %s: %s" % (endpoint, prompt)

        async def wiki(q):
            return "wiki: " + q

        async def go():
            async with floodgate.AsyncClient(LIVE_URL, token=LIVE_TOKEN, timeout=10) as fg:
                h = mod.FloodgateHandler(fg, eps, ask_llm, wiki)

                async def say(user, text):
                    m = message(user + "-" + run, text)
                    await h.on_message(m)
                    self.assertEqual(len(m.replies), 1, m.replies)
                    return m.replies[0]

                self.assertEqual(await say("alice", "hello"), "answer from %s: hello" % eps[0])
                again = await say("alice", "hello again")
                self.assertRegex(again, r"wait \d+s \(cooldown\)")
                self.assertEqual((await fg.peek("alice-" + run)).entries, 1)

                self.assertIn("LLM failed", await say("bob", "please fail"))
                self.assertEqual((await fg.endpoint("llm", eps[0])).state, "open")
                self.assertEqual(await say("carol", "hi"), "answer from %s: hi" % eps[1])  # backed off: the next one

                self.assertEqual(await say("dave", "!wiki floodgate"), "wiki: floodgate")
                self.assertEqual(llm_calls, [eps[0], eps[0], eps[1]])
                self.assertEqual((await fg.slots("llm")).in_use, 0)  # every slot given back
        asyncio.run(go())

    def test_twitchio(self):
        self.scenario("twitchio_bot.py", twitchio_message)

    def test_discord(self):
        self.scenario("discord_bot.py", discord_message)

    def test_twitchapi(self):
        self.scenario("twitchapi_bot.py", twitchapi_message)


if __name__ == "__main__":
    unittest.main()
