#!/usr/bin/env python3
"""A tiny chat-bot replica that takes its limits from ``floodgate serve``.

Run several at once (or beside the Go replicas): they share every limit.

    FLOODGATE_URL=http://127.0.0.1:8080 python3 example_bot.py

Environment: FLOODGATE_URL, FLOODGATE_HTTP_TOKEN, BOT_MESSAGES (200),
BOT_VIEWERS (30), BOT_SEED (1), BOT_ENDPOINTS ("http://localhost:1234,
https://api.openai.com"), BOT_LLM_SECONDS (0.05), BOT_LLM_FAIL (0.1),
BOT_READY_TIMEOUT (30: seconds to wait for the server). It prints one JSON
line: what it answered and why it held back the rest.
"""

import collections
import json
import os
import random
import time

import floodgate


def main() -> None:
    fg = floodgate.Client(os.environ.get("FLOODGATE_URL", "http://127.0.0.1:8080"),
                          token=os.environ.get("FLOODGATE_HTTP_TOKEN") or None)
    rnd = random.Random(int(os.environ.get("BOT_SEED", "1")))
    viewers = ["viewer%03d" % i for i in range(int(os.environ.get("BOT_VIEWERS", "30")))]
    endpoints = os.environ.get("BOT_ENDPOINTS", "http://localhost:1234,https://api.openai.com").split(",")
    llm_seconds = float(os.environ.get("BOT_LLM_SECONDS", "0.05"))
    llm_fail = float(os.environ.get("BOT_LLM_FAIL", "0.1"))
    tally = collections.Counter()
    deadline = time.monotonic() + float(os.environ.get("BOT_READY_TIMEOUT", "30"))
    while not fg.ready():  # e.g. started beside the server by docker compose
        if time.monotonic() > deadline:
            raise SystemExit("example_bot: %s is not ready" % fg.base_url)
        time.sleep(0.5)

    def fake_llm(prompt: str) -> str:
        time.sleep(llm_seconds)
        if rnd.random() < llm_fail:
            raise ConnectionError("LLM timed out")
        return "reply to " + prompt

    for i in range(int(os.environ.get("BOT_MESSAGES", "200"))):
        user = rnd.choice(viewers)
        d = fg.allow(user)  # per-viewer cooldown and window
        if not d.allowed:
            tally["held_" + d.reason] += 1
            continue
        endpoint, d = fg.pick("llm", *endpoints)  # skip endpoints backing off
        if endpoint is None:
            tally["held_" + d.reason] += 1
            continue
        try:
            with fg.slot("llm", user, timeout=5):  # at most N viewers in the LLM at once
                fg.call("llm", endpoint, fake_llm, "message %d" % i)
            tally["answered"] += 1
        except floodgate.Denied as e:
            tally["held_" + e.reason] += 1
        except ConnectionError:
            tally["llm_failed"] += 1
    print(json.dumps(dict(sorted(tally.items()))))


if __name__ == "__main__":
    main()
