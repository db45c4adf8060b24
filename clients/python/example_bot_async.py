#!/usr/bin/env python3
"""A chat-bot replica on asyncio that takes its limits from ``floodgate serve``.

Messages arrive from simulated viewers and are handled concurrently, one
task each, as a chat framework would; no handler blocks the event loop.
Run several at once (or beside the Go and sync Python replicas): they share
every limit.

    FLOODGATE_URL=http://127.0.0.1:8080 python3 example_bot_async.py

Environment: FLOODGATE_URL, FLOODGATE_HTTP_TOKEN, BOT_MESSAGES (200),
BOT_VIEWERS (30), BOT_SEED (1), BOT_ENDPOINTS ("http://localhost:1234,
https://api.openai.com"), BOT_LLM_SECONDS (0.05), BOT_LLM_FAIL (0.1),
BOT_MESSAGE_GAP (0.002: seconds between arriving messages),
BOT_READY_TIMEOUT (30). It prints one JSON line: what it answered and why it
held back the rest.
"""

import asyncio
import collections
import json
import os
import random

import floodgate


async def main() -> None:
    rnd = random.Random(int(os.environ.get("BOT_SEED", "1")))
    viewers = ["viewer%03d" % i for i in range(int(os.environ.get("BOT_VIEWERS", "30")))]
    endpoints = os.environ.get("BOT_ENDPOINTS", "http://localhost:1234,https://api.openai.com").split(",")
    llm_seconds = float(os.environ.get("BOT_LLM_SECONDS", "0.05"))
    llm_fail = float(os.environ.get("BOT_LLM_FAIL", "0.1"))
    gap = float(os.environ.get("BOT_MESSAGE_GAP", "0.002"))
    tally: collections.Counter = collections.Counter()

    async def fake_llm(endpoint: str, prompt: str) -> str:
        await asyncio.sleep(llm_seconds)
        if rnd.random() < llm_fail:
            raise ConnectionError("LLM timed out")
        return "reply to " + prompt

    async with floodgate.AsyncClient(os.environ.get("FLOODGATE_URL", "http://127.0.0.1:8080"),
                                     token=os.environ.get("FLOODGATE_HTTP_TOKEN") or None) as fg:
        deadline = asyncio.get_running_loop().time() + float(os.environ.get("BOT_READY_TIMEOUT", "30"))
        while not await fg.ready():  # e.g. started beside the server by docker compose
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit("example_bot_async: %s is not ready" % fg.base_url)
            await asyncio.sleep(0.5)

        async def on_message(user: str, text: str) -> None:
            d = await fg.allow(user)  # per-viewer cooldown and window
            if not d.allowed:
                tally["held_" + d.reason] += 1
                return
            endpoint, d = await fg.pick("llm", *endpoints)  # skip endpoints backing off
            if endpoint is None:
                tally["held_" + d.reason] += 1
                return
            try:
                async with fg.slot("llm", user, timeout=5):  # at most N viewers in the LLM at once
                    await fg.call("llm", endpoint, fake_llm, endpoint, text)
                tally["answered"] += 1
            except floodgate.Denied as e:
                tally["held_" + e.reason] += 1
            except ConnectionError:
                tally["llm_failed"] += 1

        tasks = []
        for i in range(int(os.environ.get("BOT_MESSAGES", "200"))):
            tasks.append(asyncio.ensure_future(on_message(rnd.choice(viewers), "message %d" % i)))
            await asyncio.sleep(gap)
        await asyncio.gather(*tasks)
    print(json.dumps(dict(sorted(tally.items()))))


if __name__ == "__main__":
    asyncio.run(main())
