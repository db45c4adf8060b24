#!/usr/bin/env python3
"""Figures for the Python clients against a running ``floodgate serve``.

    python3 bench.py --url http://127.0.0.1:8080 [--token T] [--calls 2000]
    python3 bench.py --url http://127.0.0.1:8080 --url unix:///tmp/fg.sock

With two --url (two servers on one Redis, e.g. one on TCP loopback and
one on a unix socket) it prints only the allow p50 of AsyncClient and of
the bare loop over each, alternating rounds, and their ratios.

Prints, from one run (so the ratios compare like with like):

1. allow p50: AsyncClient, a bare asyncio keep-alive loop writing the same
   request bytes on one connection (the floor for Python), and the previous
   urllib client (one connection per call, as floodgate.py was before
   0.2.0); each call a new user, so every call is a real decision.
2. decisions/s: one asyncio process with 64 tasks (AsyncClient,
   max_connections=64) beside the sync Client in 64 threads.
3. event loop: while 50 tasks make 2,000 allow calls, the longest gap of a
   ticker task that wants to run every 1 ms (and, for scale, its longest
   gap with nothing else running: what the OS's scheduling alone costs).

Not a test: timings depend on the machine. Rounds alternate between the
variants so that drift (other load) hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
import urllib.parse
import urllib.request
import uuid
from typing import Callable, List, Optional

import floodgate
from floodgate import _proto


def p50(xs: List[float]) -> float:
    return statistics.median(xs)


async def bare_loop(url: str, token: Optional[str], users: List[str]) -> List[float]:
    """The same request on one kept-alive asyncio connection, nothing else."""
    u = urllib.parse.urlsplit(url)
    if u.scheme == "unix":
        r, w = await asyncio.open_unix_connection(u.path)
    else:
        r, w = await asyncio.open_connection(u.hostname, u.port)
    out = []
    request = _proto.RequestHead("localhost" if u.scheme == "unix" else u.netloc, token)
    try:
        for user in users:
            req = request.encode("POST", "/v1/users/%s/allow" % user, None)
            t0 = time.perf_counter()
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            n = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            json.loads(await r.readexactly(n))
            out.append(time.perf_counter() - t0)
    finally:
        w.close()
    return out


async def async_client(fg: floodgate.AsyncClient, users: List[str]) -> List[float]:
    out = []
    for user in users:
        t0 = time.perf_counter()
        await fg.allow(user)
        out.append(time.perf_counter() - t0)
    return out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # type: ignore[override]
        return None


def urllib_client(url: str, token: Optional[str], users: List[str]) -> List[float]:
    """The previous client's transport: urllib, a new connection per call."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    headers = {"Accept": "application/json", "User-Agent": "floodgate-python/0.1.0"}
    if token:
        headers["Authorization"] = "Bearer " + token
    out = []
    for user in users:
        t0 = time.perf_counter()
        req = urllib.request.Request(url + "/v1/users/%s/allow" % user, headers=headers, method="POST")
        with opener.open(req, timeout=5) as resp:
            floodgate.Decision.from_json(json.loads(resp.read()))
        out.append(time.perf_counter() - t0)
    return out


def sync_threads(url: str, token: Optional[str], threads: int, seconds: float, run: str) -> float:
    fg = floodgate.Client(url, token=token, pool_size=threads)
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            fg.allow("%s-t%d-%d" % (run, i, n))
            n += 1
        done[i] = n

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    fg.close()
    return sum(done) / (time.perf_counter() - t0)


async def async_tasks(url: str, token: Optional[str], tasks: int, seconds: float, run: str) -> float:
    async with floodgate.AsyncClient(url, token=token, max_connections=tasks) as fg:
        loop = asyncio.get_running_loop()
        stop = loop.time() + seconds
        done = [0] * tasks

        async def work(i: int) -> None:
            n = 0
            while loop.time() < stop:
                await fg.allow("%s-a%d-%d" % (run, i, n))
                n += 1
            done[i] = n

        t0 = loop.time()
        await asyncio.gather(*(work(i) for i in range(tasks)))
        return sum(done) / (loop.time() - t0)


async def ticker_gap(url: str, token: Optional[str], tasks: int, calls: int, run: str) -> tuple:
    async with floodgate.AsyncClient(url, token=token, max_connections=tasks) as fg:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        gaps: List[float] = []

        async def ticker() -> None:
            last = loop.time()
            while not stop.is_set():
                await asyncio.sleep(0.001)
                now = loop.time()
                gaps.append(now - last)
                last = now

        left = [calls]

        async def work(i: int) -> None:
            while left[0] > 0:
                left[0] -= 1
                await fg.allow("%s-g%d-%d" % (run, i, left[0]))

        # The ticker alone first, as long: how late the OS alone wakes it.
        t = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.5)
        stop.set()
        await t
        alone = max(gaps)
        stop.clear()
        gaps.clear()
        t = asyncio.ensure_future(ticker())
        t0 = loop.time()
        await asyncio.gather(*(work(i) for i in range(tasks)))
        took = loop.time() - t0
        stop.set()
        await t
        return max(gaps), p50(gaps), took, alone


async def compare(urls: List[str], token: Optional[str], calls: int, run: str) -> None:
    """allow p50 over two servers (transports), alternating rounds."""
    rounds = 10
    per = max(1, calls // rounds)
    lat = {(u, v): [] for u in urls for v in ("async", "bare")}  # type: dict
    clients = [floodgate.AsyncClient(u, token=token) for u in urls]
    for fg in clients:
        await fg.allow("%s-warm" % run)
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            users = lambda v: ["%s-%s%d-%d-%d" % (run, v, i, r, k) for k in range(per)]  # noqa: E731
            lat[(urls[i], "async")] += await async_client(clients[i], users("a"))
            lat[(urls[i], "bare")] += await bare_loop(urls[i], token, users("b"))
    for fg in clients:
        await fg.aclose()
    us = {k: p50(v) * 1e6 for k, v in lat.items()}
    w = max(len(u) for u in urls)
    print("allow p50 over %d calls each, alternating rounds:" % (per * rounds))
    print("  %-*s  AsyncClient  bare loop" % (w, "server"))
    for u in urls:
        print("  %-*s  %8.1f us  %7.1f us" % (w, u, us[(u, "async")], us[(u, "bare")]))
    print("  %-*s  %9.2fx  %8.2fx" % (w, "second/first", us[(urls[1], "async")] / us[(urls[0], "async")],
                                      us[(urls[1], "bare")] / us[(urls[0], "bare")]))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", action="append", help="http(s)://host:port or unix:///path (twice: compare the two)")
    ap.add_argument("--token", default=None)
    ap.add_argument("--calls", type=int, default=2000, help="allow calls per variant for the p50s")
    ap.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    a = ap.parse_args()
    run = uuid.uuid4().hex[:6]
    if a.url and len(a.url) == 2:
        return await compare(a.url, a.token, a.calls, run)
    a.url = (a.url or ["http://127.0.0.1:8080"])[0]
    unix = a.url.startswith("unix:")
    rounds = 5
    per = max(1, a.calls // rounds)
    lat = {"bare": [], "async": [], "urllib": []}  # type: dict
    async with floodgate.AsyncClient(a.url, token=a.token) as fg:
        await fg.allow("%s-warm" % run)
        for r in range(rounds):
            users = lambda v: ["%s-%s-%d-%d" % (run, v, r, i) for i in range(per)]  # noqa: E731
            lat["bare"] += await bare_loop(a.url, a.token, users("b"))
            lat["async"] += await async_client(fg, users("a"))
            if not unix:  # urllib speaks no unix sockets
                lat["urllib"] += await asyncio.get_running_loop().run_in_executor(None, urllib_client, a.url, a.token, users("u"))
    us = {k: p50(v) * 1e6 for k, v in lat.items() if v}
    print("allow p50 over %d calls each (%s):" % (per * rounds, a.url))
    print("  bare asyncio keep-alive loop  %7.1f us" % us["bare"])
    print("  AsyncClient.allow             %7.1f us   %.2fx the bare loop (target <= 1.3x)" % (us["async"], us["async"] / us["bare"]))
    if not unix:
        print("  previous urllib client        %7.1f us   AsyncClient is %.2fx faster (target >= 1.8x)" % (us["urllib"], us["urllib"] / us["async"]))
    at = await async_tasks(a.url, a.token, 64, a.seconds, run)
    st = await asyncio.get_running_loop().run_in_executor(None, sync_threads, a.url, a.token, 64, a.seconds, run)
    print("decisions/s, %.0f s each:" % a.seconds)
    print("  AsyncClient, 1 process, 64 tasks  %8.0f/s" % at)
    print("  Client, 64 threads                %8.0f/s   (async/sync %.2fx)" % (st, at / st))
    worst, med, took, alone = await ticker_gap(a.url, a.token, 50, 2000, run)
    print("event loop while 50 tasks make 2,000 allow calls (%.2f s): ticker (1 ms sleep) longest gap %.1f ms,"
          " median %.2f ms; the ticker alone for 0.5 s: longest gap %.1f ms" % (took, worst * 1e3, med * 1e3, alone * 1e3))


if __name__ == "__main__":
    asyncio.run(main())
