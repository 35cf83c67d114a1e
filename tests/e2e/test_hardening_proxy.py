"""Proxy hardening: request smuggling through the Connection header, and slow heads (slowloris) on both sides.

- A request whose Connection header names Content-Length, Transfer-Encoding or Host is answered 400 and never
  reaches the origin (a proxy that honoured the option would drop the field: the body would reach the origin
  as a second request). The origin records every request head it parses (/admin/seen), which proves it.
- An origin's Connection header naming Content-Length or Transfer-Encoding does not cost the client its framing.
- Fields Portico adds (X-Forwarded-For, X-Real-IP) cannot be removed through Connection, nor supplied by the
  client in an underscore spelling; a field named in Connection (hence not forwarded) cannot select a route.
- --header-timeout is a deadline for the whole request head from its first byte: a client trickling one byte at
  a time is answered 408 and closed in time. The route's read timeout bounds an upstream response head the same
  way (504).
- Lingering close: after an error answer to a client still sending (a body over the limit, a malformed head,
  requests pipelined behind), Portico half-closes and drops the client's input for a bounded time and amount
  instead of closing at once, so no reset destroys the answer; the bounds and the drain still end it.
"""

import json
import socket
import threading
import time
import uuid

import pytest

from conftest import LOOPBACK, ConnectionClosed, RawConn, Response, make_config, route, wait_for


def marker(case):
    return "/m/%s-%s" % (case, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    o, gold = origin_module("hardening", "gold")
    p = portico_module(make_config([
        route("gold", "/tier/*", gold, vars=[["http_x_tier", "==", "gold"]]),
        route("all", "/*", o),
    ]))
    return p, o


# ---- Connection naming framing fields -----------------------------------------------------------------------

def _smuggling_cl(m, connection):
    inner = b"GET %s-smuggled HTTP/1.1\r\nHost: a\r\n\r\n" % m
    return (b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
            % (m, len(inner), connection)) + inner


def _smuggling_te(m, connection):
    inner = b"GET %s-smuggled HTTP/1.1\r\nHost: a\r\n\r\n" % m
    return (b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: %s\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (m, connection, len(inner), inner))


SMUGGLING = [
    ("cl", lambda m: _smuggling_cl(m, b"Content-Length")),
    ("cl_lower_in_list", lambda m: _smuggling_cl(m, b"keep-alive, content-length")),
    ("cl_second_connection_field", lambda m: _smuggling_cl(m, b"keep-alive\r\nConnection: X-A, CONTENT-LENGTH")),
    ("te", lambda m: _smuggling_te(m, b"Transfer-Encoding")),
    ("host", lambda m: b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n" % m),
]


@pytest.mark.parametrize("case,build", SMUGGLING, ids=[c[0] for c in SMUGGLING])
def test_connection_naming_framing_field_is_rejected(env, case, build):
    p, o = env
    m = marker("conn-" + case).encode()
    with RawConn(p.port, timeout=5) as c:
        c.send(build(m))
        r = c.read_response()
        assert r.status == 400, "%s: expected 400, got %r" % (case, r)
        assert json.loads(r.body)["error_msg"], r.body
        assert "close" in r.connection_tokens(), r
        assert c.wait_closed(3), "%s: connection left open after the 400" % case
        assert c.buf == b"", "%s: a second response followed the 400: %r" % (case, bytes(c.buf))
    # Neither the request nor the one hidden in its body reached the origin.
    assert o.seen(m.decode()) == [], o.seen(m.decode())


def test_connection_naming_other_fields_is_forwarded(env):
    """The counterpart: Connection naming end-to-end fields is legal; those fields are dropped, the body kept."""
    p, o = env
    m = marker("conn-ok")
    with RawConn(p.port, timeout=5) as c:
        r = c.request("POST", "/echo?" + m, headers=[("Connection", "X-Drop, TE"), ("X-Drop", "1"),
                                                   ("TE", "trailers"), ("X-Keep", "2")], body=b"hello")
        assert r.status == 200, r
        echo = r.json()
        names = {k.lower(): v for k, v in echo["headers"]}
        assert "x-drop" not in names and "te" not in names, echo["headers"]
        assert names.get("x-keep") == "2" and names.get("content-length") == "5", echo["headers"]
        assert echo["body_length"] == 5
        # Keep-alive still works: the next request on the connection is served.
        assert c.request("GET", "/id").status == 200
    assert len(o.seen(m)) == 1


def test_routing_ignores_fields_named_in_connection(env):
    """A field named in Connection is not forwarded, so it cannot select the route either: otherwise a route
    chosen for `X-Tier: gold` would serve a request its origin sees without it."""
    p, _ = env
    r = p.get("/tier/echo", headers=[("X-Tier", "gold")])
    assert r.status == 404 and r.header("X-Origin-Id") == "gold", r
    r = p.get("/tier/echo", headers=[("X-Tier", "gold"), ("Connection", "X-Tier")])
    assert r.header("X-Origin-Id") == "hardening", r


def test_connection_cannot_remove_fields_portico_adds(env):
    p, _ = env
    r = p.get("/echo", headers=[("Connection", "X-Forwarded-For, X-Real-IP, X-Forwarded-Proto"),
                                ("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "6.6.6.6")])
    assert r.status == 200, r
    names = {}
    for k, v in r.json()["headers"]:
        names.setdefault(k.lower(), []).append(v)
    assert names.get("x-forwarded-for") == [LOOPBACK], names
    assert names.get("x-real-ip") == [LOOPBACK], names
    assert names.get("x-forwarded-proto") == ["http"], names


def test_underscore_spellings_of_portico_fields_are_dropped(env):
    """CGI-style origins read X_Real_IP as X-Real-IP: a client must not supply Portico's identity fields that
    way either."""
    p, _ = env
    r = p.get("/echo", headers=[("X_Forwarded_For", "6.6.6.6"), ("X_Real_IP", "6.6.6.6"),
                                ("X_Forwarded_Host", "evil"), ("X_Other", "kept")])
    assert r.status == 200, r
    headers = r.json()["headers"]
    assert not any(v in ("6.6.6.6", "evil") for _, v in headers), headers
    names = {k.lower(): v for k, v in headers}
    assert names.get("x-real-ip") == LOOPBACK and names.get("x_other") == "kept", headers


def test_origin_connection_naming_content_length_keeps_framing(env):
    """An origin's `Connection: Content-Length` must not make Portico send the body without its length (the
    client would wait for a close that never comes, and the connection would be out of step)."""
    p, _ = env
    with RawConn(p.port, timeout=5) as c:
        for _ in range(2):
            r = c.request("GET", "/echo?rh=Connection:Content-Length")
            assert r.status == 200 and r.complete, r
            assert r.header_all("Content-Length") == [str(len(r.body))], r.headers
            assert r.header("Transfer-Encoding") is None, r.headers
            assert "content-length" not in r.connection_tokens(), r.headers
            assert r.json()["target"].startswith("/echo")


# ---- slow request heads ----------------------------------------------------------------------------------------

HEADER_TIMEOUT = 2.0
INTERVAL = 0.4          # one byte per interval: far shorter than the timeout
MARGIN = 2.5            # scheduling slack on a loaded 2-core machine


def _trickle(c, data, limit):
    """Sends `data` one byte per INTERVAL (the wait for an answer is the pacing) until the peer answers or
    closes, or `limit` seconds pass. Returns (seconds from the first byte to the answer or None, bytes sent)."""
    t0 = time.monotonic()
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except OSError:
            break
        c.settimeout(INTERVAL)
        try:
            got = c.sock.recv(65536)
        except socket.timeout:
            got = None
        except ConnectionResetError:
            c.eof = True
            break
        if got is not None:
            if not got:
                c.eof = True
            c.buf += got
            break
        if time.monotonic() - t0 > limit:
            return None, i + 1
    return time.monotonic() - t0, None


@pytest.fixture(scope="module")
def slow_env(origin_module, portico_module):
    o = origin_module("slowhead")
    p = portico_module(make_config([route("all", "/*", o)]), header_timeout=HEADER_TIMEOUT)
    return p, o


@pytest.mark.parametrize("prelude", ["first_request", "after_keepalive_request", "empty_lines"])
def test_trickled_request_head_gets_408(slow_env, prelude):
    p, o = slow_env
    m = marker("slowloris-" + prelude)
    head = b"GET %s HTTP/1.1\r\nHost: a\r\nX-Pad: %s" % (m.encode(), b"p" * 200)
    before = p.metrics().value("portico_http_bad_requests_total")
    logged_before = len(_entries_408(p))
    with RawConn(p.port, timeout=10) as c:
        if prelude == "after_keepalive_request":
            assert c.request("GET", "/id").status == 200
        if prelude == "empty_lines":
            # RFC 9112 2.2: empty lines before the request-line are not head bytes. They leave the connection
            # idle, so the head deadline runs from the request line's first byte, not from them.
            c.send(b"\r\n" * 3)
            assert c.read_available(HEADER_TIMEOUT / 2) == b"" and not c.eof
        took, sent = _trickle(c, head, HEADER_TIMEOUT + MARGIN)
        assert took is not None, ("head trickled for %.1fs (%d bytes) with --header-timeout %s and the "
                                  "connection is still open" % (HEADER_TIMEOUT + MARGIN, sent, HEADER_TIMEOUT))
        assert c.wait_closed(3), "connection left open after the head deadline"
    assert HEADER_TIMEOUT - 0.5 <= took <= HEADER_TIMEOUT + MARGIN, took
    data = bytes(c.buf)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"connection: close" in data.lower(), data[:300]
    assert o.seen(m) == []
    assert p.metrics().value("portico_http_bad_requests_total") >= before + 1
    # Logged as its own request: nothing of a previous exchange on the connection leaks into the record.
    entries = wait_for(lambda: len(_entries_408(p)) > logged_before and _entries_408(p), timeout=5,
                       message="an access log line for the 408")
    entry = entries[-1]
    assert entry["bytes_sent"] == len(data) and entry["upstream_addr"] == "", entry
    assert entry["upstream_status"] is None, entry


def _entries_408(p):
    return [e for e in map(json.loads, p.access_log_lines()) if e.get("status") == 408]


def test_slow_head_within_the_deadline_is_served(slow_env):
    """The deadline is for the whole head, not a per-byte rule: a head that arrives in pieces in time is fine."""
    p, o = slow_env
    m = marker("slow-ok")
    head = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % m.encode()
    with RawConn(p.port, timeout=10) as c:
        pieces = [head[:5], head[5:20], head[20:]]
        for piece in pieces[:-1]:
            c.send(piece)
            assert c.read_available(0.3) == b"" and not c.eof  # nothing answered yet: the wait is the pacing
        c.send(pieces[-1])
        r = c.read_response()
        assert r.status == 404 and r.header("X-Origin-Id") == "slowhead", r
    assert len(o.seen(m)) == 1


# ---- empty lines between requests -------------------------------------------------------------------------------
# A client may send a stray CRLF after a request (after its body, typically). RFC 9112 2.2: a server SHOULD
# ignore at least one empty line before a request-line. It must not start the head deadline: a 408 sent on an
# idle connection can be read by the client as the answer to the next request it sends on it.

IDLE_HEADER_TIMEOUT = 1.0
IDLE_KEEPALIVE = 4.0
MAX_EMPTY_LINE_BYTES = 256  # kMaxEmptyLineBytes in src/proxy/session.cc


@pytest.fixture(scope="module")
def idle_env(origin_module, portico_module):
    o = origin_module("idle")
    p = portico_module(make_config([route("all", "/*", o)]), header_timeout=IDLE_HEADER_TIMEOUT,
                       keepalive_timeout=IDLE_KEEPALIVE)
    return p, o


def _post_with_trailing_crlf(c, same_write):
    request = b"POST /id HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    if same_write:
        c.send(request + b"\r\n")
        r = c.read_response()
    else:
        c.send(request)
        r = c.read_response()
        c.send(b"\r\n")
    assert r.status == 200 and r.header("X-Origin-Id") == "idle", r


@pytest.mark.parametrize("same_write", [True, False], ids=["after_body_same_write", "own_write"])
def test_empty_line_after_request_keeps_connection_idle(idle_env, same_write):
    p, o = idle_env
    m = marker("crlf-idle")
    before = p.metrics().value("portico_http_bad_requests_total")
    with RawConn(p.port, timeout=10) as c:
        _post_with_trailing_crlf(c, same_write)
        # Past --header-timeout, well before --keepalive-timeout: nothing is sent, the connection stays open.
        got = c.read_available(IDLE_HEADER_TIMEOUT + 1.0)
        assert got == b"" and not c.eof, "after an empty line: %r (eof %s)" % (got[:200], c.eof)
        r = c.request("GET", m)
        assert r.status == 404 and r.header("X-Origin-Id") == "idle", r
        r = c.request("GET", "/id")
        assert r.status == 200, r
    assert len(o.seen(m)) == 1
    assert p.metrics().value("portico_http_bad_requests_total") == before


def test_only_empty_lines_close_silently_at_keepalive_timeout(idle_env):
    """Empty lines alone leave the connection idle: closed without a byte at --keepalive-timeout, counted from
    the end of the last response; more empty lines do not extend it."""
    p, _ = idle_env
    before = p.metrics().value("portico_http_bad_requests_total")
    with RawConn(p.port, timeout=10) as c:
        _post_with_trailing_crlf(c, True)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < IDLE_KEEPALIVE + MARGIN:
            if c.wait_closed(0.8):
                closed = True
                break
            try:
                c.send(b"\r\n")
            except OSError:
                closed = c.wait_closed(1)
                break
        took = time.monotonic() - t0
        assert closed, "connection still open %.1fs after its last response" % took
    assert bytes(c.buf) == b"", bytes(c.buf)[:200]
    assert IDLE_KEEPALIVE - 0.5 <= took <= IDLE_KEEPALIVE + MARGIN, took
    assert p.metrics().value("portico_http_bad_requests_total") == before


def test_too_many_empty_lines_get_400(idle_env):
    p, _ = idle_env
    before = p.metrics().value("portico_http_bad_requests_total")
    with RawConn(p.port, timeout=10) as c:
        c.send(b"\r\n" * (MAX_EMPTY_LINE_BYTES // 2 + 1))
        r = c.read_response()
        assert r.status == 400 and "empty lines" in json.loads(r.body)["error_msg"], r
        assert "close" in r.connection_tokens(), r
        assert c.wait_closed(3)
    assert p.metrics().value("portico_http_bad_requests_total") == before + 1
    # Within the bound, empty lines are dropped and the request behind them is served.
    with RawConn(p.port, timeout=10) as c:
        c.send(b"\r\n" * (MAX_EMPTY_LINE_BYTES // 2) + b"GET /id HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 200


# ---- slow response heads ---------------------------------------------------------------------------------------

class ScriptedOrigin:
    """An origin answering every request head it reads with the fixed bytes `response`, on keep-alive
    connections, one connection at a time; loopback only. With `interval`, the bytes go out one per `interval`
    seconds for at most `limit` seconds (a trickled head). With `steps`, a list of (delay, bytes), each piece
    goes out `delay` seconds after the previous one, then `response`."""

    def __init__(self, response, interval=None, limit=8.0, steps=()):
        self.response = response
        self.interval = interval
        self.limit = limit
        self.steps = list(steps)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.node = "%s:%d" % (LOOPBACK, self.port)
        self.conn = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conn = conn
            with conn:
                try:
                    self._serve(conn)
                except OSError:
                    pass

    def _serve(self, conn):
        conn.settimeout(self.limit)
        data = b""
        while not self.stop.is_set():
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            data = data[data.index(b"\r\n\r\n") + 4:]  # GET requests only: no body
            for delay, piece in self.steps:
                if self.stop.wait(delay):
                    return
                conn.sendall(piece)
            if self.interval is None:
                conn.sendall(self.response)
                continue
            t0 = time.monotonic()
            for i in range(len(self.response)):
                if self.stop.wait(self.interval) or time.monotonic() - t0 > self.limit:
                    return
                conn.sendall(self.response[i:i + 1])

    def close(self):
        self.stop.set()
        self.sock.close()
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked on a pooled keep-alive connection
            except OSError:
                pass
        self.thread.join(5)
        assert not self.thread.is_alive(), "scripted origin thread did not stop"


def test_origin_connection_naming_transfer_encoding_keeps_framing(portico):
    origin = ScriptedOrigin(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                            b"Connection: Transfer-Encoding, Content-Length\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    try:
        p = portico(make_config([route("r", "/*", origin.node)]))
        with RawConn(p.port, timeout=5) as c:
            for _ in range(2):
                r = c.request("GET", "/te")
                assert r.status == 200 and r.complete and r.body == b"hello", r
                assert r.header_all("Transfer-Encoding") == ["chunked"], r.headers
                assert r.header("Content-Length") is None, r.headers
    finally:
        origin.close()


def test_trickled_response_head_gets_504(portico):
    read_timeout = 1.0
    origin = ScriptedOrigin(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"t" * 1000, interval=0.2, limit=8.0)
    try:
        p = portico(make_config([route("r", "/*", origin.node,
                                       timeout={"connect": 1, "send": 1, "read": read_timeout})]))
        t0 = time.monotonic()
        with RawConn(p.port, timeout=10) as c:
            c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            c.settimeout(read_timeout + MARGIN + 1)
            try:
                r = c.read_response()
            except socket.timeout:
                r = None
        took = time.monotonic() - t0
        assert r is not None, "no answer %.1fs after the request with a %.1fs read timeout" % (took, read_timeout)
        assert r.status == 504, r
        assert took <= read_timeout + MARGIN, took
    finally:
        origin.close()


def test_interim_responses_restart_the_response_head_deadline(portico):
    """An origin doing long work may keep the request alive with a 102 Processing every so often (nginx's
    per-read proxy_read_timeout allows it): each complete interim response is progress and restarts the read
    timeout, so the final response arrives, long after one read timeout. Silence after the last 1xx still gets
    the 504 (test_trickled_response_head_gets_504 covers a trickled head)."""
    read_timeout = 2.0
    interval, count = 0.5, 7  # 3.5 s of 102s: longer than the read timeout, each gap far shorter
    origin = ScriptedOrigin(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone",
                            steps=[(interval, b"HTTP/1.1 102 Processing\r\n\r\n")] * count + [(interval, b"")])
    try:
        p = portico(make_config([route("r", "/*", origin.node,
                                       timeout={"connect": 1, "send": 1, "read": read_timeout})]))
        t0 = time.monotonic()
        with RawConn(p.port, timeout=count * interval + read_timeout + MARGIN) as c:
            c.send(b"GET /long HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 200 and r.body == b"done", r
        assert took >= (count + 1) * interval - 0.1, took
    finally:
        origin.close()


def test_silence_after_interim_response_gets_504(portico):
    read_timeout = 1.0
    origin = ScriptedOrigin(b"", steps=[(0.2, b"HTTP/1.1 102 Processing\r\n\r\n"), (read_timeout + MARGIN + 2, b"")])
    try:
        p = portico(make_config([route("r", "/*", origin.node,
                                       timeout={"connect": 1, "send": 1, "read": read_timeout})]))
        t0 = time.monotonic()
        with RawConn(p.port, timeout=read_timeout + MARGIN + 1) as c:
            c.send(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.2 + read_timeout - 0.3 <= took <= 0.2 + read_timeout + MARGIN, took
    finally:
        origin.close()


# ---- lingering close -------------------------------------------------------------------------------------------
# After an error answer Portico closes; a client may still be sending (a body Portico refused to read, requests
# pipelined behind). Closing a socket with unread input makes the kernel send a reset, which discards the
# response still queued for the client and breaks the client's sending: the client sees a reset instead of
# the 4xx. Portico half-closes, then reads and drops the client's input for a bounded time and amount.

SMALL_BODY_LIMIT = 1024
BIG_BODY = 10 * 1000 * 1000     # under Portico's lingering byte bound (16 MiB)
LINGER_TRIES = 20               # without the fix the reset is a race: lost in some of the tries, not all
LINGER_IDLE = 2.0               # Portico's lingering bounds (session.cc)
LINGER_TOTAL = 10.0
LINGER_WHILE_DRAINING = 1.0
LINGER_MAX_BYTES = 16 * 1024 * 1024


def _linger_config(o):
    return make_config([
        route("small", "/small/*", o, plugins={"client-control": {"max_body_size": SMALL_BODY_LIMIT}}),
        route("all", "/*", o),
    ])


@pytest.fixture(scope="module")
def linger_env(origin_module, portico_module):
    o = origin_module("linger")
    return portico_module(_linger_config(o)), o


def _bad_413(m):
    return b"POST /small%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (m, BIG_BODY)


def _bad_400(m):
    # A malformed second header line (space in the field name): the head is rejected before its body is read.
    return b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nBad Header: x\r\n\r\n" % (m, BIG_BODY)


LINGER_CASES = [("413_body_over_limit", _bad_413, 413), ("400_malformed_header", _bad_400, 400)]
LINGER_IDS = [c[0] for c in LINGER_CASES]


class BodyWriter:
    """Writes `size` body bytes on `c` from a thread (the client keeps sending while the test reads), stopping
    at the first send error, `size`, or `limit` seconds."""

    def __init__(self, c, size, limit=20.0, prefix=b""):
        self.c, self.size, self.limit, self.prefix = c, size, limit, prefix
        self.sent = 0
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        chunk = b"b" * 65536
        deadline = time.monotonic() + self.limit
        try:
            if self.prefix:
                self.c.sock.sendall(self.prefix)
            while self.sent < self.size and not self.stop.is_set() and time.monotonic() < deadline:
                self.sent += self.c.sock.send(chunk[:min(len(chunk), self.size - self.sent)])
        except OSError as e:
            self.error = e

    def join(self):
        self.stop.set()
        self.thread.join(self.limit)
        assert not self.thread.is_alive(), "body writer thread did not stop"


def _read_or_error(c, **kw):
    try:
        return c.read_response(**kw)
    except (ConnectionClosed, OSError) as e:
        return e


@pytest.mark.parametrize("case,build,status", LINGER_CASES, ids=LINGER_IDS)
def test_error_after_pipelined_response_survives_unread_body(linger_env, case, build, status):
    """A response pipelined before the bad request is still queued in Portico's socket when the error answer
    is written (the client reads through a small receive buffer): a reset on close would discard it."""
    p, o = linger_env
    failures = []
    for i in range(LINGER_TRIES):
        m = marker("linger-%s-%d" % (case, i)).encode()
        first = b"GET /bytes/300000 HTTP/1.1\r\nHost: a\r\n\r\n"
        with RawConn(p.port, timeout=10, rcvbuf=8192) as c:
            w = BodyWriter(c, BIG_BODY, prefix=first + build(m))
            r1 = _read_or_error(c, keep_body=False)
            r2 = _read_or_error(c) if isinstance(r1, Response) and r1.complete else None
            w.join()
        ok1 = isinstance(r1, Response) and r1.status == 200 and r1.complete and r1.body_length == 300000
        ok2 = isinstance(r2, Response) and r2.status == status and r2.complete and b"error_msg" in r2.body
        if not (ok1 and ok2):
            failures.append("try %d: first %r, then %r (body bytes sent %d)" % (i, r1, r2, w.sent))
        assert o.seen(m.decode()) == []
    assert failures == [], "%d of %d tries lost a response:\n%s" % (len(failures), LINGER_TRIES,
                                                                    "\n".join(failures))


@pytest.mark.parametrize("case,build,status", LINGER_CASES, ids=LINGER_IDS)
def test_client_sending_its_whole_request_reads_the_error(linger_env, case, build, status):
    """A client that writes its whole request before reading (as most HTTP clients do) can finish writing,
    then reads the answer and the end of the connection, instead of a broken pipe in the middle of its body."""
    p, o = linger_env
    for i in range(5):
        m = marker("linger-seq-%s-%d" % (case, i)).encode()
        with RawConn(p.port, timeout=10) as c:
            c.send(build(m))
            try:
                c.send(b"b" * BIG_BODY)
            except OSError as e:
                pytest.fail("try %d: sending the body failed (%r): the connection was reset" % (i, e))
            r = c.read_response()
            assert r.status == status and r.complete, r
            assert "close" in r.connection_tokens(), r
            assert c.wait_closed(3), "no end of the connection after the answer"  # the half-close
    assert o.seen("linger-seq") == []


def _answered_413(c):
    c.send(_bad_413(b"/bound"))
    r = c.read_response()
    assert r.status == 413 and r.complete, r
    assert c.wait_closed(3), "Portico did not half-close after its answer"


def _fully_closed(c, timeout):
    """True once a byte sent on `c` is answered by a reset (Portico closed its socket), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c.sock.send(b"x")
            c.sock.settimeout(0.2)
            c.sock.recv(1)  # EOF was already seen: returns b"" while lingering, raises once reset
        except socket.timeout:
            continue
        except OSError:
            return True
        time.sleep(0.2)  # pacing of the probe bytes (each one also restarts the linger's idle bound)
    return False


def test_lingering_close_ends_after_idle_bound(linger_env):
    p, o = linger_env
    with RawConn(p.port, timeout=10) as c:
        _answered_413(c)
        # The client stays silent past the idle bound (this wait is what is tested, not a synchronisation);
        # then Portico's socket is gone, so the next byte is answered with a reset.
        time.sleep(LINGER_IDLE + MARGIN)
        assert _fully_closed(c, 1.0), "Portico still lingering %.1fs after the client fell silent" % (
            LINGER_IDLE + MARGIN)


def test_lingering_close_ends_after_byte_bound(linger_env):
    p, o = linger_env
    with RawConn(p.port, timeout=10) as c:
        w = BodyWriter(c, 4 * LINGER_MAX_BYTES, limit=LINGER_TOTAL, prefix=_bad_413(b"/bytes-bound"))
        r = c.read_response()
        assert r.status == 413 and r.complete, r
        w.thread.join(LINGER_TOTAL + 1)
        assert w.error is not None, "Portico read %d bytes after its answer without closing" % w.sent
        # What the kernels' buffers hold on both sides comes on top of the bound.
        assert w.sent < LINGER_MAX_BYTES + 16 * 1024 * 1024, w.sent
        w.join()


def test_lingering_close_ends_after_total_bound(linger_env):
    p, o = linger_env
    with RawConn(p.port, timeout=10) as c:
        _answered_413(c)
        t0 = time.monotonic()
        # A byte every 0.2 s keeps the idle bound from ending it: the total bound does.
        closed = _fully_closed(c, LINGER_TOTAL + MARGIN)
        took = time.monotonic() - t0
    assert closed, "Portico still lingering %.1fs after its answer" % took
    assert took >= LINGER_TOTAL - 1, "the linger ended after %.1fs although the client kept sending" % took


def test_drain_ends_lingering_connections_promptly(origin, portico):
    o = origin("linger-drain")
    p = portico(_linger_config(o), drain_delay=0, drain_timeout=30)
    with RawConn(p.port, timeout=10) as c:
        _answered_413(c)
        t0 = time.monotonic()
        p.sigterm()
        # The client keeps sending (the linger would last LINGER_TOTAL): the drain cuts it short.
        assert _fully_closed(c, LINGER_WHILE_DRAINING + MARGIN), "lingering connection outlived the drain"
        assert p.wait_exit(LINGER_WHILE_DRAINING + MARGIN) == 0, "portico did not exit promptly"
    assert time.monotonic() - t0 <= LINGER_WHILE_DRAINING + MARGIN + 1
