"""Test helpers shared by the test files (not part of the package).

blocking_async_client drives a floodgate.AsyncClient from a test's thread:
its coroutines run on an event loop in a thread of their own, so that every
FakeServerTest and LiveServerTest runs unchanged against both clients.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from typing import Any, List

import floodgate

HERE = os.path.dirname(os.path.abspath(__file__))


def sources() -> List[str]:
    """Every .py file of the client, its examples and recipes."""
    out = []
    for root, dirs, files in os.walk(HERE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_", "build")) and not d.endswith(".egg-info")]
        out += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(out)


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        async def box():
            try:
                return True, await coro
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                return False, e

        ok, v = asyncio.run_coroutine_threadsafe(box(), self.loop).result()
        if not ok:
            raise v
        return v

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class _Blocking:
    """Calls an async object's coroutine methods as blocking ones."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def _wrap(self, v: Any) -> Any:
        if isinstance(v, (floodgate.AsyncLease, floodgate.AsyncReservation)):
            return _Blocking(v, self._loop)
        if isinstance(v, tuple):
            return tuple(self._wrap(x) for x in v)
        return v

    def __repr__(self) -> str:
        return repr(self._target)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name in ("slot", "budget_call"):
            return lambda *a, **k: _BlockingCM(attr(*a, **k), self)
        if name == "call":
            def call(bname: Any, endpoint: Any, fn: Any, *a: Any, **k: Any) -> Any:
                return self._loop.run(attr(bname, endpoint, fn, *a, **k))
            return call
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._wrap(self._loop.run(attr(*a, **k)))
        if callable(attr):
            return lambda *a, **k: self._wrap(attr(*a, **k))  # e.g. lease() gives an AsyncLease
        return attr


class _BlockingCM:
    def __init__(self, cm: Any, owner: _Blocking) -> None:
        self._cm = cm
        self._owner = owner

    def __enter__(self) -> Any:
        return self._owner._wrap(self._owner._loop.run(self._cm.__aenter__()))

    def __exit__(self, *exc: Any) -> Any:
        return self._owner._loop.run(self._cm.__aexit__(*exc))


def blocking_async_client(test: Any, *args: Any, **kwargs: Any) -> Any:
    loop = _Loop()
    box: List[Any] = []

    async def make() -> None:
        box.append(floodgate.AsyncClient(*args, **kwargs))

    try:
        loop.run(make())
    except BaseException:
        loop.close()
        raise
    test.addCleanup(loop.close)
    test.addCleanup(lambda: loop.run(box[0].aclose()))
    return _Blocking(box[0], loop)
