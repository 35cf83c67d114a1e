"""Checks of the test origin itself (no portico involved), so proxy test failures can be trusted."""

import concurrent.futures
import hashlib
import json

import pytest

from conftest import PatternChecker, RawConn, pattern_bytes, pattern_sha256, wait_for


@pytest.fixture
def o(origin):
    return origin("self")


def test_echo_content_length_body(o):
    body = b"x" * 100000
    with RawConn(o.port) as c:
        r = c.request("POST", "/echo?a=1", body=body, headers=[("X-Test", "v")])
    assert r.status == 200
    assert r.header("X-Origin-Id") == "self"
    d = r.json()
    assert d["method"] == "POST"
    assert d["target"] == "/echo?a=1"
    assert ["X-Test", "v"] in d["headers"]
    assert d["body_length"] == len(body)
    assert d["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert d["chunked"] is False


def test_echo_chunked_body_with_trailer(o):
    with RawConn(o.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
    d = r.json()
    assert d["chunked"] is True
    assert d["body_length"] == 11
    assert d["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert d["trailers"] == [["X-Trailer", "t"]]


def test_expect_continue(o):
    with RawConn(o.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_available(1.0).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        c.send(b"abc")
        r = c.read_response()
    assert r.status == 200 and r.json()["body_length"] == 3


def test_keepalive_count_and_pipelining(o):
    with RawConn(o.port) as c:
        c.send(b"GET /keepalive-count HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        counts = [int(c.read_response().body) for _ in range(3)]
        assert counts == [1, 2, 3]
        assert int(c.request("GET", "/keepalive-count").body) == 4


def test_bytes_chunked_close(o):
    n = 300000
    with RawConn(o.port) as c:
        r = c.request("GET", "/bytes/%d" % n)
        assert r.header("Content-Length") == str(n) and r.body == pattern_bytes(n)
        r = c.request("GET", "/chunked/%d" % n)
        assert r.header("Transfer-Encoding") == "chunked" and r.body == pattern_bytes(n)
        r = c.request("HEAD", "/bytes/77")
        assert r.header("Content-Length") == "77" and r.body == b""
        r = c.request("GET", "/close/%d" % n)
        assert r.header("Content-Length") is None and r.body == pattern_bytes(n)
        assert c.wait_closed(2)


def test_large_download_streaming_check(o):
    n = 50 * 1024 * 1024 + 7
    chk = PatternChecker()
    with RawConn(o.port) as c:
        r = c.request("GET", "/bytes/%d" % n, keep_body=False, sink=chk)
    assert r.body_length == n and chk.ok
    assert r.body_sha256 == pattern_sha256(n)


def test_status_no_body_and_304_with_length(o):
    with RawConn(o.port) as c:
        r = c.request("GET", "/status/204")
        assert r.status == 204 and r.body == b""
        r = c.request("GET", "/status/304?cl=100")
        assert r.status == 304 and r.header("Content-Length") == "100" and r.body == b""
        r = c.request("GET", "/status/503")
        assert r.status == 503 and r.body == b"status 503\n"


def test_die_mid_stream(o):
    with RawConn(o.port) as c:
        r = c.request("GET", "/die-mid-stream")
    assert r.status == 200 and r.body_length == 1000 and r.complete is False


def test_bad_framing_bytes(o):
    with RawConn(o.port) as c:
        c.send(b"GET /bad-framing HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.read_available(0.5)
    assert b"Content-Length: 5\r\n" in data and b"Transfer-Encoding: chunked\r\n" in data
    with RawConn(o.port) as c:
        c.send(b"GET /bad-framing?kind=dupcl HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.read_available(0.5)
    assert b"Content-Length: 5\r\n" in data and b"Content-Length: 7\r\n" in data


def test_health_toggle_and_fail_mode(o):
    assert o.get("/health")[0] == 200
    o.set_healthy(False)
    assert o.get("/health")[0] == 500
    o.set_healthy(True)
    assert o.get("/health")[0] == 200
    o.fail(502)
    assert o.get("/id")[0] == 502
    o.fail(0)
    st, hdrs, body = o.get("/id")
    assert st == 200 and body == b"self\n" and hdrs["x-origin-id"] == "self"


def test_seen_log_records_heads(o):
    o.reset()
    o.get("/echo?marker=abc123")
    recs = o.seen("abc123")
    assert len(recs) == 1 and recs[0]["complete"] is True and recs[0]["method"] == "GET"
    assert o.seen("nothing-like-this") == []


def test_multi_listener_ids(origin):
    a, b = origin("la", "lb")
    assert a.port != b.port
    assert a.get("/id")[2] == b"la\n"
    assert b.get("/id")[2] == b"lb\n"


def test_slow_headers(o):
    import time
    t0 = time.monotonic()
    st, _, body = o.get("/slow-headers?ms=300")
    assert st == 200 and body == b"slow\n" and time.monotonic() - t0 >= 0.3


def test_many_concurrent_connections(o):
    def one(i):
        with RawConn(o.port) as c:
            for _ in range(20):
                r = c.request("POST", "/echo", body=b"%d" % i)
                assert r.status == 200 and r.json()["body_length"] == len(b"%d" % i)
        return True

    with concurrent.futures.ThreadPoolExecutor(60) as ex:
        assert all(ex.map(one, range(60)))
    wait_for(lambda: o.stats()["connections_open"] <= 1, timeout=5)


def test_wrk_against_origin(o, wrk):
    run = wrk("http://127.0.0.1:%d/id" % o.port, connections=50, duration=2, threads=2)
    res = run.wait()
    assert res["requests"] > 100, res
    assert res["non2xx"] == 0 and res["socket_errors"] == 0, res
    assert json.loads(o.get("/admin/stats")[2])["requests"] >= res["requests"]


def test_drop_mode_closes_without_answer(o):
    o.fail(-1)
    try:
        with RawConn(o.port) as c:
            c.send(b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.wait_closed(2) and not c.buf
    finally:
        o.fail(0)


def test_idle_timeout_closes_idle_connections(o):
    o.set_idle_timeout(200)
    try:
        with RawConn(o.port) as c:
            assert c.request("GET", "/id").status == 200
            assert c.wait_closed(2)
    finally:
        o.set_idle_timeout(0)


def test_websocket_echo(o):
    with RawConn(o.port) as c:
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        r = c.read_response()
        assert r.status == 101
        c.send(b"hello tunnel")
        got = b""
        while len(got) < 12:
            got += c.read_available(1.0)
        assert got == b"hello tunnel"


def test_wrk_counts_non2xx_and_socket_errors(o, wrk):
    """The wrk Lua counters used by the load tests really see failures."""
    res = wrk("http://127.0.0.1:%d/status/503" % o.port, connections=4, duration=1, threads=1).wait()
    assert res["responses"] > 0 and res["non2xx"] == res["responses"], res
    o.fail(-1)  # connections closed without an answer
    try:
        res = wrk("http://127.0.0.1:%d/id" % o.port, connections=2, duration=1, threads=1).wait()
    finally:
        o.fail(0)
    assert res["socket_errors"] > 0, res
