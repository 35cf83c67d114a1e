"""HTTP/2 server side, review fixes (each test fails without its fix): the final GOAWAY lets responses in flight
finish (max-requests, SIGTERM drain), response bytes bounded per connection with a stall deadline,
content-length 0 without END_STREAM bounded by --header-timeout, streams reset before their Session starts never
reach the origin, responses with many fields, until-close framing, resets budgeted against requests.
"""

import http.client
import json
import socket
import struct
import threading
import time

import hpack

import pytest

from conftest import LOOPBACK, http_request, make_config, route, wait_for
from h2_frames import (CANCEL, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, GOAWAY, HEADERS, PING, PREFACE,
                       RST_STREAM, SETTINGS, H2Client, frame)


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    o = origin_module("h2r")
    p = portico_module(make_config([route("main", "/*", o)]), header_timeout=1, keepalive_timeout=2,
                       send_timeout=2)
    return {"p": p, "o": o}


@pytest.mark.parametrize("size", [100000, 1000000])
def test_max_requests_goaway_lets_the_response_finish(origin, portico, size):
    o = origin("gmr")
    p = portico(make_config([route("main", "/*", o)]), http2_max_requests=1)
    with H2Client(p.port, timeout=10) as c:
        sid = c.request("GET", "/bytes/%d" % size)
        r = c.response(sid, timeout=10)
        assert (r.status, len(r.body), r.ended, r.reset) == (200, size, True, None), c.goaways
        assert c.goaways and c.goaways[-1][1] == sid


def test_drain_with_a_response_in_flight_completes_after_its_session_ended(origin, portico):
    # The client opens its window in two steps; between them the stream's Session ends (its access log line),
    # its last bytes still in the codec. The connection must keep reading for the second WINDOW_UPDATE.
    o = origin("gdr")
    p = portico(make_config([route("main", "/*", o)]), drain_timeout=20)
    size = 100000
    with H2Client(p.port, window=0, timeout=10) as c:
        c.h2.acknowledge_received_data = lambda *a, **k: None  # the test opens the windows itself
        c.h2.increment_flow_control_window(4 * size)
        sid = c.request("GET", "/bytes/%d?drainwin=1" % size)
        r = c.responses[sid]
        c.events_until(lambda: r.status is not None, timeout=5)
        p.sigterm()
        c.events_until(lambda: any(last < 2 ** 31 - 1 for _, last in c.goaways), timeout=5)
        c.h2.increment_flow_control_window(size // 2, stream_id=sid)
        c.flush()
        c.events_until(lambda: len(r.body) >= size // 2, timeout=5)
        wait_for(lambda: [ln for ln in p.access_log_lines() if "drainwin=1" in ln], timeout=5)
        c.h2.increment_flow_control_window(size, stream_id=sid)
        c.flush()
        r = c.response(sid, timeout=5)
        assert (r.status, len(r.body), r.ended, r.reset) == (200, size, True, None), c.goaways
    assert p.wait_exit(10) is not None


def rss_kb(p):
    for line in open("/proc/%d/status" % p.proc.pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


class RawZeroWindowClient:
    """Opens streams with raw frames (python-h2 would stop at 128 open streams) on a connection whose window is
    0; a thread reads and drops what the server sends, noting GOAWAY and the close."""

    def __init__(self, port):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=10)
        self.enc = hpack.Encoder()
        self.next_id = 1
        self.goaway = None
        self.goaway_last = None
        self.closed = threading.Event()
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 0)))
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    n = int.from_bytes(buf[:3], "big")
                    if buf[3] == GOAWAY:
                        self.goaway = int.from_bytes(buf[13:17], "big")  # the error code
                        self.goaway_last = int.from_bytes(buf[9:13], "big") & 0x7FFFFFFF
                    buf = buf[9 + n:]
        except OSError:
            pass
        self.closed.set()

    def requests(self, path, n):
        out = b""
        for _ in range(n):
            block = self.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "t.test"),
                                     (":path", path)])
            out += frame(HEADERS, END_HEADERS | END_STREAM, self.next_id, block)
            self.next_id += 2
        try:
            self.sock.sendall(out)
        except OSError:
            pass

    def ping(self):
        try:
            self.sock.sendall(frame(PING, 0, 0, b"portico!"))
        except OSError:
            pass

    def close(self):
        self.sock.close()


def test_zero_window_bytes_are_bounded_per_connection_and_the_stall_closes(origin, portico):
    # Clients that open no window, opening wave after wave of streams: a Session that wrote its last bytes used
    # to end and free its slot with its 60000 bytes left in the codec, so each wave piled up more.
    o = origin("zw")
    p = portico(make_config([route("main", "/*", o)]), keepalive_timeout=60, send_timeout=2)
    before = rss_kb(p)
    clients = [RawZeroWindowClient(p.port) for _ in range(3)]
    try:
        for wave in range(6):
            for c in clients:
                c.requests("/bytes/60000?zw=%d" % wave, 100)
            # Pacing, not synchronisation: each wave finds the previous one's Sessions finished (before the fix).
            time.sleep(0.3)
        grown = rss_kb(p) - before
        print("zero-window RSS growth %d KiB, origin hits %d" % (grown, o.hits("zw=")))
        assert grown < 28 * 1024, grown  # 37 MiB before the fix, 18 MiB after (3 x (1 MiB + 128 Sessions))
        # No byte can go for --send-timeout (2 s): each connection ends with a GOAWAY and a close.
        for c in clients:
            assert c.closed.wait(10)
            assert c.goaway is not None
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("size", [60000, 1000000])
def test_a_client_that_pings_but_opens_no_window_is_closed_after_send_timeout(origin, portico, size):
    # Only DATA is progress. 60000 bytes: the Session finishes, its bytes wait in the codec with no Session
    # behind them; the PING ACKs used to restart the connection's stall clock, so a pinging client held them
    # for as long as it pinged. 1000000: the Session waits for the window and its own send deadline reset the
    # stream, after which the connection had no deadline left (no GOAWAY, open until keep-alive ran out).
    o = origin("zwp")
    p = portico(make_config([route("main", "/*", o)]), keepalive_timeout=60, send_timeout=2)
    c = RawZeroWindowClient(p.port)
    try:
        start = time.monotonic()
        c.requests("/bytes/%d?zwp=1" % size, 1)
        wait_for(lambda: o.hits("zwp=1") == 1, timeout=5)
        # Bounded: 40 pings 0.25 s apart (10 s) unless the connection ends first.
        for _ in range(40):
            if c.closed.wait(0.25):
                break
            c.ping()
        assert c.closed.is_set(), "still open after 10 s of pings with bytes waiting for a window"
        assert (c.goaway_last, c.goaway) == (1, ENHANCE_YOUR_CALM)
        assert time.monotonic() - start < 6
    finally:
        c.close()


def test_content_length_0_without_end_stream_is_408_after_header_timeout(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port, timeout=5) as c:
        start = time.monotonic()
        sid = c.request("POST", "/echo?cl0hold=1", headers=[("content-length", "0")], end_stream=False)
        r = c.response(sid, timeout=5)
        # --header-timeout is 1 s: the request that never ends is answered like a slow HTTP/1.1 head.
        assert r.status == 408 and time.monotonic() - start < 3, (r.status, r.reset, c.goaways)
        # Then nothing is left: the idle deadline (2 s) applies, GOAWAY NO_ERROR and close.
        c.events_until(lambda: c.goaways, timeout=5)
        assert c.goaways and c.goaways[-1][0] == 0
    assert o.hits("cl0hold") == 0


def test_content_length_0_then_end_stream_is_forwarded(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port, timeout=5) as c:
        sid = c.request("POST", "/echo?cl0end=1", headers=[("content-length", "0")], end_stream=False)
        c.send_body(sid, b"", end_stream=True)
        r = c.response(sid, timeout=5)
        assert r.status == 200 and json.loads(bytes(r.body))["body_length"] == 0
    assert o.hits("cl0end") == 1


def test_streams_reset_in_the_same_write_as_their_headers_never_reach_the_origin(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        burst = b""
        sid = 1
        for i in range(20):
            block = c.headers_block([(":method", "GET"), (":scheme", "http"), (":authority", "t.test"),
                                     (":path", "/echo?rstsame=%d" % i)])
            burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, block)
            burst += frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big"))
            sid += 2
        block = c.headers_block([(":method", "GET"), (":scheme", "http"), (":authority", "t.test"),
                                 (":path", "/echo?rstsame=last")])
        c.send_raw(burst + frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
        # The stream after them is served: by then the reset ones have had their chance to start.
        wait_for(lambda: o.hits("rstsame=last") == 1, timeout=5)
        wait_for(lambda: [ln for ln in p.access_log_lines() if "rstsame=last" in ln], timeout=5)
    assert o.hits("rstsame=") == 1


@pytest.mark.parametrize("n", [110, 122, 126])
def test_responses_with_many_fields_are_the_same_over_both_codecs(origin, portico, monkeypatch, n):
    # The origin's fields (up to Portico's 128) plus the ones response-rewrite sets: HTTP/1.1 sends them all,
    # so must HTTP/2 (the re-parse of Portico's own head was limited to 128 fields).
    o = origin("mrh")
    extra = {"X-Add-%d" % i: "v" for i in range(6)}
    p = portico(make_config([route("main", "/*", o, plugins={"response-rewrite": {"headers": {"set": extra}}})]))
    path = "/echo?" + "&".join("rh=X-R%d:v" % i for i in range(n))
    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)
    st, headers, _ = http_request(p.port, "GET", path)
    with H2Client(p.port) as c:
        r = c.response(c.request("GET", path), timeout=5)
    assert (r.status, r.reset) == (st, None)
    if st == 200:
        names = {name for name, _ in r.headers}
        assert {"x-r0", "x-r%d" % (n - 1), "x-add-0", "x-add-5"} <= names
        assert r.ended and json.loads(bytes(r.body))["target"].startswith("/echo?")


@pytest.mark.parametrize("first,then", [(b"PRI * HTTP/2.0\r\n\r\n", b"X"), (b"PRI * HTTP/2.0\r\n\r\nSM\r\n", b"X")])
def test_bytes_leaving_the_h2c_preface_are_answered_at_once(origin, portico, first, then):
    # While the bytes matched the preface they were not parsed; once they diverge they are, at once (before,
    # the answer waited for --header-timeout).
    o = origin("pfx")
    p = portico(make_config([route("main", "/*", o)]), header_timeout=5)
    with socket.create_connection((LOOPBACK, p.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(first)
        time.sleep(0.3)  # two reads: the line ends come while the bytes still match the preface
        start = time.monotonic()
        s.sendall(then)
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5"), answer[:80]
        assert time.monotonic() - start < 3
    # A request that merely starts like it is still parsed as HTTP/1.1.
    st, _, _ = http_request(p.port, "GET", "/id")
    assert st == 200
