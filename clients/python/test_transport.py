"""Connections: keep-alive, a bounded pool, connections the server closed,
never sending a counting request twice, cancellation, unix sockets, TLS,
base URLs with a path prefix (the paths the Node client sends).

python3 -m unittest -v (in clients/python). The TLS tests need a CA and a
server certificate: FLOODGATE_TEST_TLS_DIR (ca.crt, server.crt, server.key;
integration_test/python_test.go makes them) or the openssl command.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import ThreadingHTTPServer

import floodgate
from test_floodgate import DECISION_OK, FakeServer, _client, _Handler

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s")


def _answer(body=b'{"allowed":true,"reason":"none","remaining":19}'):
    return ANSWER % (len(body), body)


class RawServer:
    """A TCP server that runs script(conn_no, request_no) -> action per request:
    "answer", "answer+close" (answer, then close while idle), "drop" (read the
    request whole, close without answering). It counts every request read."""

    def __init__(self, script):
        self.script = script
        self.requests = []  # (conn_no, "METHOD /path")
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c, self.conns), daemon=True).start()

    def _serve(self, c, conn_no):
        f = c.makefile("rb")
        n = 0
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                length = 0
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if length:
                    f.read(length)
                n += 1
                with self.lock:
                    self.requests.append((conn_no, " ".join(line.decode().split()[:2])))
                action = self.script(conn_no, n)
                if action == "drop":
                    return
                c.sendall(_answer())
                if action == "answer+close":
                    time.sleep(0.05)  # the answer is read; then the "idle timeout" fires
                    return
        finally:
            f.close()
            c.close()

    def close(self):
        self.sock.close()


# A base URL's path after host:port -> the prefix of every request path:
# trailing slashes dropped, "." and ".." resolved, quoted as Node's URL does.
PREFIXES = {
    "": "",
    "/": "",
    "//": "",
    "/fg/": "/fg",
    "/a/./b/../c//": "/a/c",
    "/a/..": "",
    "/%2e%2E/x": "/x",
    "/a\\b": "/a/b",
    "/a b/\u00e9/<`{}>": "/a%20b/%C3%A9/%3C%60%7B%7D%3E",
    "/a%2Fb;c=d/'[]^|": "/a%2Fb;c=d/'[]^|",
    "/fg?": "/fg",
}
# Refused by both clients (ValueError, TypeError in Node), naming the URL.
REFUSED = ("http://h:8080/fg?x=1", "http://h:8080/fg/#top", "http://user:pw@h:8080/fg")


class ConnectionTest(unittest.TestCase):
    """Runs with Client; AsyncConnectionTest runs it again with AsyncClient."""

    cls = floodgate.Client

    def make(self, *args, **kwargs):
        return _client(self, self.cls, *args, **kwargs)

    def raw(self, script):
        srv = RawServer(script)
        self.addCleanup(srv.close)
        return srv

    def test_calls_share_one_kept_alive_connection(self):
        fake = FakeServer()
        self.addCleanup(fake.close)
        fg = self.make(fake.url)
        for i in range(20):
            self.assertTrue(fg.allow("v%d" % i).allowed)
        self.assertEqual(len({r["conn"] for r in fake.requests}), 1)
        self.assertEqual(len(fake.requests), 20)

    def test_connection_closed_by_the_server_while_idle_is_not_an_error(self):
        srv = self.raw(lambda conn, n: "answer+close")
        fg = self.make(srv.url)
        for i in range(3):
            self.assertTrue(fg.allow("v").allowed)
            time.sleep(0.2)  # the server closes the connection meanwhile
            self.assertTrue(fg.peek("v") is not None)
            time.sleep(0.2)
        self.assertEqual([r[1] for r in srv.requests], ["POST /v1/users/v/allow", "GET /v1/users/v"] * 3)
        self.assertEqual(srv.conns, 6)  # one request on each, none sent twice

    def test_a_counting_request_is_never_sent_twice(self):
        # The connection carried one answer, then the server reads the next
        # request whole and closes without answering: it may have counted
        # it, so the client reports an error instead of sending it again.
        srv = self.raw(lambda conn, n: "answer" if n == 1 else "drop")
        fg = self.make(srv.url)
        self.assertTrue(fg.allow("v").allowed)
        with self.assertRaises(floodgate.TransportError):
            fg.allow("v")
        self.assertEqual(srv.requests, [(1, "POST /v1/users/v/allow")] * 2)

    def test_a_request_that_counts_nothing_is_sent_again_when_the_connection_dropped(self):
        # The same for a GET, and for the reports that count nothing and
        # are idempotent (as in the Node client): asked again on a new connection.
        for call, sent in (
            (lambda fg: fg.peek("v"), "GET /v1/users/v"),
            (lambda fg: fg.success("llm", "ep"), "POST /v1/backoff/llm/endpoints/ep/success"),
            (lambda fg: fg.abandon("llm", "ep", "0123456789abcdef"), "POST /v1/backoff/llm/endpoints/ep/abandon"),
            (lambda fg: fg.lease("llm", "L1").refresh(), "POST /v1/slots/llm/refresh"),
        ):
            with self.subTest(sent):
                srv = self.raw(lambda conn, n: "answer" if conn > 1 or n == 1 else "drop")
                fg = self.make(srv.url)
                self.assertTrue(fg.allow("v").allowed)
                call(fg)
                self.assertEqual(srv.requests, [(1, "POST /v1/users/v/allow"), (1, sent), (2, sent)])

    def test_per_call_timeout(self):
        fake = FakeServer()
        self.addCleanup(fake.close)
        fake.reply = lambda m, p, b: (200, {}, DECISION_OK, 0.5)
        fg = self.make(fake.url, timeout=5)
        t0 = time.monotonic()
        with self.assertRaisesRegex(floodgate.TransportError, "timed out"):
            fg.allow("v", timeout=0.1)
        self.assertLess(time.monotonic() - t0, 0.45)
        self.assertTrue(fg.allow("v").allowed)  # the half-read connection was not reused

    def test_unix_socket(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)

        class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):
                c, _ = self.socket.accept()
                return c, ("unix", 0)

        fake = FakeServer(UnixHTTPServer(os.path.join(d, "floodgate.sock"), _Handler))
        self.addCleanup(fake.close)
        self.assertTrue(fake.url.startswith("unix:///"))
        fg = self.make(fake.url, token="t0k")
        self.assertTrue(fg.allow("a/b").allowed)
        self.assertTrue(fg.healthy())
        self.assertEqual([r["path"] for r in fake.requests], ["/v1/users/a%2Fb/allow", "/healthz"])
        self.assertEqual(fake.requests[0]["headers"]["Host"], "localhost")
        self.assertEqual(fake.requests[0]["headers"]["Authorization"], "Bearer t0k")
        self.assertEqual(len({r["conn"] for r in fake.requests}), 1)
        with self.assertRaises(floodgate.TransportError):
            self.make("unix://" + os.path.join(d, "nothing.sock")).allow("v")

    def test_a_base_url_prefix_goes_before_every_request_path(self):
        fake = FakeServer()
        self.addCleanup(fake.close)
        fake.reply = lambda m, p, b: (200, {}, DECISION_OK if m == "POST" else None, 0)
        for tail, prefix in (("", ""), ("/", ""), ("/fg", "/fg"), ("/fg/", "/fg"), ("/a/fg//", "/a/fg")):
            fake.requests.clear()
            fg = self.make(fake.url + tail)
            self.assertEqual(fg.base_url, (fake.url + tail).rstrip("/"))
            self.assertTrue(fg.allow("a/b").allowed)
            fg.reset("a/b")
            self.assertTrue(fg.healthy())
            self.assertTrue(fg.ready())
            self.assertEqual([(r["method"], r["path"]) for r in fake.requests],
                             [("POST", prefix + "/v1/users/a%2Fb/allow"), ("DELETE", prefix + "/v1/users/a%2Fb"),
                              ("GET", prefix + "/healthz"), ("GET", prefix + "/readyz")], tail)
            self.assertEqual(len({r["conn"] for r in fake.requests}), 1, tail)  # still kept alive

    def test_a_prefixed_counting_request_is_still_never_sent_twice(self):
        srv = self.raw(lambda conn, n: "drop")
        fg = self.make(srv.url + "/fg/")
        with self.assertRaisesRegex(floodgate.TransportError, re.escape("POST %s/fg/v1/users/v/allow: " % srv.url)):
            fg.allow("v")
        self.assertEqual(srv.requests, [(1, "POST /fg/v1/users/v/allow")])

    def test_base_url_prefixes_are_normalised_as_node_does(self):
        for tail, prefix in PREFIXES.items():  # NodeParityTest sends each through both clients
            self.assertEqual(self.cls("http://h:1" + tail)._target.prefix, prefix, tail)
        self.assertEqual(self.cls("HTTPS://[::1]:1/Fg")._target.prefix, "/Fg")
        self.assertEqual(self.cls("unix:///run/fg.sock/")._target.path, "/run/fg.sock/")  # the socket, as given
        self.assertEqual(self.cls("unix:///run/fg.sock/")._target.prefix, "")

    def test_bad_base_urls(self):
        for bad in ("unix://host/x.sock", "unix://", "http://h:notaport", "https://h?x=1", "http://user:pw@h:8080",
                    "ftp://h/fg", "http:///fg", "http://h/\ud800") + REFUSED:
            with self.assertRaisesRegex(ValueError, "^floodgate: .*" + re.escape(repr(bad)), msg=bad):
                self.cls(bad)
        with self.assertRaisesRegex(ValueError, "https"):
            self.cls("http://127.0.0.1:1", ca_file="/nonexistent")
        with self.assertRaisesRegex(ValueError, "token"):  # no header injection
            self.cls("http://127.0.0.1:1", token="abc\r\nX-Evil: 1")


class SyncPoolTest(unittest.TestCase):
    def test_pool_size_bounds_the_idle_connections(self):
        fake = FakeServer()
        self.addCleanup(fake.close)
        for size, conns in ((0, 5), (1, 1)):
            fg = floodgate.Client(fake.url, pool_size=size)
            self.addCleanup(fg.close)
            fake.requests.clear()
            for i in range(5):
                fg.allow("v%d" % i)
            self.assertEqual(len({r["conn"] for r in fake.requests}), conns, size)
        with self.assertRaises(ValueError):
            floodgate.Client(fake.url, pool_size=-1)


class AsyncConnectionTest(ConnectionTest):
    cls = floodgate.AsyncClient  # type: ignore[assignment]


NODE_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node", "index.js")


class NodeParityTest(unittest.TestCase):
    def test_the_python_and_node_clients_send_the_same_prefixed_paths(self):
        if not os.path.exists(NODE_CLIENT):
            self.skipTest("clients/node is not next to this directory (an installed copy of the tests)")
        node = shutil.which("node")
        if not node:
            if os.environ.get("CI"):
                self.fail("CI is set but node is missing")
            self.skipTest("node is missing")
        fake = FakeServer()
        self.addCleanup(fake.close)
        fake.reply = lambda m, p, b: (200, {}, None, 0)
        urls = [fake.url + tail for tail in PREFIXES]
        # One line per URL: /healthz and /readyz answered, or the constructor's error.
        script = ("import { pathToFileURL } from 'node:url';"
                  "const { Client } = await import(pathToFileURL(process.argv[1]).href);"
                  "for (const u of process.argv.slice(2)) { let c; try { c = new Client({ baseUrl: u }); }"
                  " catch (e) { console.log(e.message); continue; } console.log(await c.healthy() && await c.ready()); c.close(); }")
        out = subprocess.run([node, "--input-type=module", "-e", script, NODE_CLIENT] + urls + list(REFUSED),
                             check=True, timeout=60, capture_output=True, text=True).stdout.splitlines()
        self.assertEqual(out[:len(urls)], ["true"] * len(urls))
        for bad, msg in zip(REFUSED, out[len(urls):]):
            self.assertRegex(msg, "^floodgate: .*" + re.escape(json.dumps(bad)))
        self.assertEqual(len(out), len(urls) + len(REFUSED))
        by_node = [r["path"] for r in fake.requests]
        fake.requests.clear()
        for u in urls:
            for cls in (floodgate.Client, floodgate.AsyncClient):
                fg = _client(self, cls, u)
                self.assertTrue(fg.healthy() and fg.ready(), u)
        by_python = [r["path"] for r in fake.requests]
        want = [[prefix + "/healthz", prefix + "/readyz"] for prefix in PREFIXES.values()]
        self.assertEqual(by_node, [p for pair in want for p in pair])
        self.assertEqual(by_python, [p for pair in want for p in pair * 2])


def _tls_files():
    """(ca, cert, key) paths, or None."""
    d = os.environ.get("FLOODGATE_TEST_TLS_DIR")
    if d:
        return tuple(os.path.join(d, n) for n in ("ca.crt", "server.crt", "server.key"))
    if not shutil.which("openssl"):
        return None
    d = tempfile.mkdtemp()
    ca, ca_key, crt, key, csr, ext = (os.path.join(d, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key", "s.csr", "ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n")
    q = dict(check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=floodgate test CA",
                    # Python 3.13 verifies strictly: a CA must say what its key is for.
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], **q)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=localhost"], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", crt, "-days", "1", "-extfile", ext], **q)
    return ca, crt, key


class TLSTest(unittest.TestCase):
    """https: verified by default, a private CA through ca_file or ssl_context."""

    cls = floodgate.Client

    def setUp(self):
        files = _tls_files()
        if files is None:
            self.skipTest("no FLOODGATE_TEST_TLS_DIR and no openssl command")
        self.ca, crt, key = files
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        # 127.0.0.2 is loopback too, but not a name in the certificate.
        host = "127.0.0.2" if self._testMethodName == "test_hostname_is_checked" else "127.0.0.1"
        httpd = ThreadingHTTPServer((host, 0), _Handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.fake = FakeServer(httpd, scheme="https")
        self.addCleanup(self.fake.close)

    def make(self, *args, **kwargs):
        return _client(self, self.cls, *args, **kwargs)

    def test_unknown_ca_is_refused(self):
        with self.assertRaisesRegex(floodgate.TransportError, "CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            self.make(self.fake.url).allow("v")
        self.assertEqual(self.fake.requests, [])

    def test_ca_file_and_ssl_context(self):
        fg = self.make(self.fake.url, token="secret", ca_file=self.ca)
        self.assertTrue(fg.allow("v").allowed)
        self.assertTrue(fg.allow("w").allowed)
        self.assertEqual(len({r["conn"] for r in self.fake.requests}), 1)  # kept alive over TLS too
        ctx = ssl.create_default_context(cafile=self.ca)
        self.assertTrue(self.make(self.fake.url, ssl_context=ctx).allow("v").allowed)
        with self.assertRaises(ValueError):
            self.cls(self.fake.url, ca_file=self.ca, ssl_context=ctx)

    def test_hostname_is_checked(self):
        # The certificate names localhost and 127.0.0.1, not 127.0.0.2.
        url = self.fake.url
        self.assertIn("127.0.0.2", url)
        with self.assertRaisesRegex(floodgate.TransportError, "match|mismatch|CERTIFICATE_VERIFY_FAILED"):
            self.make(url, ca_file=self.ca).allow("v")


class AsyncTLSTest(TLSTest):
    cls = floodgate.AsyncClient  # type: ignore[assignment]


class AsyncCancellationTest(unittest.TestCase):
    """What a cancelled task leaves behind, with a real event loop."""

    def setUp(self):
        self.fake = FakeServer()
        self.addCleanup(self.fake.close)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 10))

    def test_cancelled_mid_request_never_pools_the_connection(self):
        self.fake.reply = lambda m, p, b: (200, {}, dict(DECISION_OK, remaining=1 if "slow" in p else 2),
                                           0.5 if "slow" in p else 0)

        async def go():
            async with floodgate.AsyncClient(self.fake.url) as fg:
                t = asyncio.ensure_future(fg.allow("slow"))
                await asyncio.sleep(0.1)
                t.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await t
                self.assertEqual(fg._idle, [])
                d = await fg.allow("fast")
                self.assertEqual(d.remaining, 2)  # its own answer, not the slow one's
        self.run_async(go())
        self.assertEqual(len({r["conn"] for r in self.fake.requests}), 2)

    def cancel_twice(self, take, granted, work, pause, give_back):
        """work(fg, started) takes something (the fake answers its request
        .../take with granted), sets started and waits inside. Its task is
        cancelled, then cancelled again pause seconds later while it gives the
        thing back (.../give_back, answered slowly): that still reaches the
        server, and the task ends cancelled."""
        def reply(m, p, b):
            if p.endswith("/" + take):
                return 200, {}, granted, 0
            return 204, {}, b"", 0.1  # a slow give-back: the second cancel must not cut it short
        self.fake.reply = reply

        async def go():
            async with floodgate.AsyncClient(self.fake.url) as fg:
                started = asyncio.Event()
                t = asyncio.ensure_future(work(fg, started))
                await started.wait()
                t.cancel()
                await asyncio.sleep(pause)
                t.cancel()  # cancelled again while giving back
                with self.assertRaises(asyncio.CancelledError):
                    await t
        self.run_async(go())
        self.assertEqual([r["path"].rsplit("/", 1)[1] for r in self.fake.requests], [take, give_back])

    def test_slot_is_released_when_the_task_is_cancelled(self):
        async def work(fg, started):
            async with fg.slot("llm", "viewer"):
                started.set()
                await asyncio.sleep(30)
        self.cancel_twice("acquire", {"acquired": True, "token": "L9", "lease_ms": 30000}, work, 0.02, "release")
        self.assertIn(b'"L9"', self.fake.last()["body"])

    def test_call_abandons_the_held_probe_when_cancelled(self):
        async def work(fg, started):
            async def llm():
                started.set()
                await asyncio.sleep(30)
            await fg.call("llm", "ep", llm)
        self.cancel_twice("check", dict(DECISION_OK, probe=True, token="P1"), work, 0, "abandon")
        self.assertIn(b'"P1"', self.fake.last()["body"])

    def test_a_probe_report_runs_to_its_end_when_cancelled_meanwhile(self):
        # A success or abandon cut short would leave the probe held until
        # its lease ends: each must read its answer (its connection then
        # goes back to the pool and carries the next request).
        for ops, start in (
            (["check", "success"], lambda fg: fg.call("llm", "ep", lambda: "answer")),
            (["abandon"], lambda fg: fg.abandon("llm", "ep", "0123456789abcdef")),
        ):
            with self.subTest(ops[-1]):
                self.fake.requests.clear()
                self.fake.reply = lambda m, p, b: ((204, {}, b"", 0.3) if p.endswith(("/success", "/abandon"))
                                                   else (200, {}, dict(DECISION_OK, probe=True, token="P1"), 0))

                async def go():
                    async with floodgate.AsyncClient(self.fake.url, max_connections=1) as fg:
                        t = asyncio.ensure_future(start(fg))
                        while len(self.fake.requests) < len(ops):  # the report is on its way
                            await asyncio.sleep(0.01)
                        t.cancel()
                        with self.assertRaises(asyncio.CancelledError):
                            await t
                        await asyncio.sleep(0.5)
                        self.assertEqual(len(fg._idle), 1)  # it read its answer: its connection went back
                        await fg.allow("v")
                self.run_async(go())
                self.assertEqual([r["path"].rsplit("/", 1)[1] for r in self.fake.requests], ops + ["allow"])
                self.assertEqual(len({r["conn"] for r in self.fake.requests}), 1)

    def test_pool_is_bounded(self):
        self.fake.reply = lambda m, p, b: (200, {}, DECISION_OK, 0.02)

        async def go():
            async with floodgate.AsyncClient(self.fake.url, max_connections=3) as fg:
                got = await asyncio.gather(*(fg.allow("v%d" % i) for i in range(40)))
                self.assertTrue(all(d.allowed for d in got))
        self.run_async(go())
        self.assertEqual(len(self.fake.requests), 40)
        self.assertLessEqual(len({r["conn"] for r in self.fake.requests}), 3)

    def test_a_close_the_loop_has_not_read_yet_is_noticed(self):
        # The server closes the idle connection while the loop is busy (the
        # blocking sleep), so asyncio has not read the FIN when the next
        # allow picks the connection: the socket itself must be asked.
        srv = RawServer(lambda conn, n: "answer+close")
        self.addCleanup(srv.close)

        async def go():
            async with floodgate.AsyncClient(srv.url) as fg:
                self.assertTrue((await fg.allow("v")).allowed)
                time.sleep(0.3)
                self.assertTrue((await fg.allow("v")).allowed)
        self.run_async(go())
        self.assertEqual([r[1] for r in srv.requests], ["POST /v1/users/v/allow"] * 2)
        self.assertEqual(srv.conns, 2)

    def test_a_client_made_outside_the_loop_works_inside_it(self):
        fg = floodgate.AsyncClient(self.fake.url)

        async def go():
            self.assertTrue((await fg.allow("v")).allowed)
            await fg.aclose()
            with self.assertRaises(floodgate.TransportError):
                await fg.allow("v")
        self.run_async(go())


if __name__ == "__main__":
    unittest.main()
