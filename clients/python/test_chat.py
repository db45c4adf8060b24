"""ChatReplies (floodgate/_chat.py): the reply text for every outcome of a
message, against a stand-in AsyncClient that answers as told and records
the calls. The recipes run it against a real server (test_recipes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import unittest

import floodgate

OK = floodgate.Decision(allowed=True)


def denied(reason, retry_after):
    return floodgate.Decision(allowed=False, reason=reason, retry_after=retry_after)


class StandIn:
    """The AsyncClient calls ChatReplies makes; each answers with what the
    test set (a Decision, or an exception to raise)."""

    def __init__(self, allow=OK, wait=OK, pick=("ep-a", OK), slot=None, call=None, release=None):
        self.answers = dict(allow=allow, wait=wait, pick=pick, slot=slot, call=call, release=release)
        self.calls = []

    def _answer(self, what, *args):
        self.calls.append((what,) + args)
        got = self.answers[what]
        if isinstance(got, BaseException):
            raise got
        return got

    async def allow(self, user):
        return self._answer("allow", user)

    async def wait(self, name, timeout=None):
        return self._answer("wait", name, timeout)

    async def pick(self, name, *endpoints):
        return self._answer("pick", name)

    @contextlib.asynccontextmanager
    async def slot(self, name, holder, timeout=None):
        self._answer("slot", name, holder, timeout)
        yield
        self._answer("release", name, holder)

    async def abandon(self, name, endpoint, token):
        self.calls.append(("abandon", name, endpoint, token))

    async def call(self, name, endpoint, fn, *args):
        self._answer("call", name, endpoint)
        return await fn(*args)


async def ask_llm(endpoint, text):
    if text == "fail":
        raise ConnectionError("LLM timed out")
    return f"{endpoint} says hi to {text!r}"


async def wiki(query):
    return "wiki: " + query


def reply(fg, text, **kwargs):
    return asyncio.run(floodgate.ChatReplies(fg, ["ep-a", "ep-b"], ask_llm, wiki).reply("u1", text, **kwargs))


class ChatRepliesTest(unittest.TestCase):
    def test_an_allowed_message_gets_the_llm_answer_inside_a_slot(self):
        fg = StandIn()
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("ep-a says hi to 'hello'", True))
        self.assertEqual(fg.calls, [("allow", "u1"), ("pick", "llm"), ("slot", "llm", "u1", 10),
                                    ("call", "llm", "ep-a"), ("release", "llm", "u1")])

    def test_a_denied_user_is_told_the_wait_and_the_reason(self):
        fg = StandIn(allow=denied("cooldown", 6.0))
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("wait 6s (cooldown)", False))
        self.assertEqual(fg.calls, [("allow", "u1")])
        # Rounded up: "wait 6s" at 6.2 s left would be refused again, and
        # 0.3 s left is "1s", never "0s".
        for left, said in ((6.2, "wait 7s (cooldown)"), (0.3, "wait 1s (cooldown)")):
            self.assertEqual(reply(StandIn(allow=denied("cooldown", left)), "hello"), floodgate.Reply(said, False))

    def test_wiki_takes_a_bucket_token_first(self):
        fg = StandIn()
        self.assertEqual(reply(fg, "!wiki Redis"), floodgate.Reply("wiki: Redis", True))
        self.assertEqual(fg.calls, [("allow", "u1"), ("wait", "wikipedia", 2)])
        fg = StandIn(wait=denied("rate", 1.4))
        self.assertEqual(reply(fg, "!wiki Redis"), floodgate.Reply("the wiki is busy, retry in 2s", False))

    def test_without_wiki_a_wiki_command_goes_to_the_llm(self):
        fg = StandIn()
        got = asyncio.run(floodgate.ChatReplies(fg, ["ep-a"], ask_llm).reply("u1", "!wiki Redis"))
        self.assertEqual(got, floodgate.Reply("ep-a says hi to '!wiki Redis'", True))

    def test_every_endpoint_backing_off(self):
        fg = StandIn(pick=(None, denied("backoff", 3.0)))
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("the LLM is resting, retry in 3s", False))
        self.assertNotIn("slot", [c[0] for c in fg.calls])

    def test_a_probe_pick_took_is_handed_back_before_call_checks(self):
        # Else call's own check is denied (reason "probing") by the probe
        # pick holds, and a bot with one endpoint never asks the LLM again.
        probe = floodgate.Decision(allowed=True, probe=True, token="P1")
        fg = StandIn(pick=("ep-a", probe))
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("ep-a says hi to 'hello'", True))
        self.assertEqual(fg.calls, [("allow", "u1"), ("pick", "llm"), ("abandon", "llm", "ep-a", "P1"),
                                    ("slot", "llm", "u1", 10), ("call", "llm", "ep-a"), ("release", "llm", "u1")])

    def test_no_slot_in_time_is_busy(self):
        fg = StandIn(slot=floodgate.Denied(denied("slots", 4.0), "slot of 'llm'"))
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("busy (slots), retry in 4s", False))

    def test_a_failed_llm_call_or_server_error_is_answered(self):
        fg = StandIn()
        self.assertEqual(reply(fg, "fail"), floodgate.Reply("the LLM failed, try again later", False))
        self.assertEqual(fg.calls[-1], ("call", "llm", "ep-a"))  # the LLM was asked
        fg = StandIn(slot=floodgate.TransportError("down"))
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("the LLM failed, try again later", False))

    def test_an_answer_stands_when_only_the_release_after_it_failed(self):
        fg = StandIn(release=floodgate.LeaseLost(409, "lease not held"))
        self.assertEqual(reply(fg, "hello"), floodgate.Reply("ep-a says hi to 'hello'", True))
        self.assertEqual(fg.calls[-1], ("release", "llm", "u1"))
        self.assertEqual(reply(StandIn(release=floodgate.LeaseLost(409, "lease not held")), "fail"),
                         floodgate.Reply("the LLM failed, try again later", False))

    def test_errors_before_the_llm_are_raised(self):
        with self.assertRaises(floodgate.TransportError):
            reply(StandIn(allow=floodgate.TransportError("down")), "hello")

    def test_typing_is_entered_around_the_llm_call(self):
        fg = StandIn()

        @contextlib.asynccontextmanager
        async def typing():
            fg.calls.append(("typing",))
            yield
            fg.calls.append(("typed",))
        reply(fg, "hello", typing=typing)
        names = [c[0] for c in fg.calls]
        self.assertEqual(names[names.index("slot"):], ["slot", "typing", "call", "typed", "release"])

    def test_endpoints_must_be_a_list(self):
        for bad in ([], "http://localhost:1234"):
            with self.assertRaises(ValueError):
                floodgate.ChatReplies(StandIn(), bad, ask_llm)


if __name__ == "__main__":
    unittest.main()
