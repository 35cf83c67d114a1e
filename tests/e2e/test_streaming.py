"""Streaming: bodies far larger than the gateway's memory budget pass through with bounded RSS, slow clients are
served through backpressure, and an origin dying mid-response truncates only that response."""

import hashlib
import time

import pytest

from conftest import RawConn, RssSampler, make_config, pattern_bytes, pattern_sha256, route, wait_for

GiB = 1 << 30
MiB = 1 << 20
RSS_LIMIT_KB = 100 * 1024  # 100 MiB

_BIG = pattern_bytes(MiB + 251)


def pattern_view(off, n):
    """memoryview over the pattern at absolute offset `off`, n <= 1 MiB (no copy)."""
    s = off % 251
    return memoryview(_BIG)[s:s + n]


_sha_cache = {}


def expected_sha(n):
    if n not in _sha_cache:
        _sha_cache[n] = pattern_sha256(n)
    return _sha_cache[n]


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    o = origin_module("stream")
    # The body limit is set explicitly so the test does not depend on the listener's default.
    cfg = make_config([route("stream", "/*", o, plugins={"client-control": {"max_body_size": 4 * GiB}})])
    p = portico_module(cfg)
    return p, o


def send_body_or_report(c, chunks):
    """Sends the body pieces; if the gateway answers early and closes, fail with its answer."""
    try:
        for piece in chunks:
            c.sock.sendall(piece)
    except OSError as e:
        try:
            r = c.read_response()
            pytest.fail("gateway stopped the upload (%s) and answered %r" % (e, r))
        except Exception:  # noqa: BLE001
            pytest.fail("gateway stopped the upload: %s" % e)


def test_upload_1gib_with_bounded_rss(env):
    p, o = env
    n = GiB
    digest = hashlib.sha256()

    def pieces():
        off = 0
        while off < n:
            k = min(MiB, n - off)
            v = pattern_view(off, k)
            digest.update(v)
            yield v
            off += k

    with RssSampler(p.pid) as rss, RawConn(p.port, timeout=120) as c:
        c.send(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n)
        send_body_or_report(c, pieces())
        r = c.read_response()
    assert r.status == 200, r
    d = r.json()
    assert d["body_length"] == n
    assert d["body_sha256"] == digest.hexdigest()
    print("1 GiB upload: portico max RSS %d KiB over %d samples" % (rss.max_kb, rss.samples))
    assert rss.samples > 5
    assert rss.max_kb < RSS_LIMIT_KB, "portico RSS peaked at %d KiB during a 1 GiB upload" % rss.max_kb


def test_download_1gib_with_bounded_rss(env):
    p, o = env
    n = GiB
    with RssSampler(p.pid) as rss, RawConn(p.port, timeout=120) as c:
        r = c.request("GET", "/bytes/%d" % n, keep_body=False)
    assert r.status == 200 and r.complete
    assert r.body_length == n
    assert r.body_sha256 == expected_sha(n)
    print("1 GiB download: portico max RSS %d KiB over %d samples" % (rss.max_kb, rss.samples))
    assert rss.samples > 5
    assert rss.max_kb < RSS_LIMIT_KB, "portico RSS peaked at %d KiB during a 1 GiB download" % rss.max_kb


def test_chunked_upload_256mib_with_bounded_rss(env):
    p, o = env
    n = 256 * MiB
    digest = hashlib.sha256()

    def pieces():
        off = 0
        while off < n:
            k = min(MiB, n - off)
            v = pattern_view(off, k)
            digest.update(v)
            yield b"%x\r\n" % k
            yield v
            yield b"\r\n"
            off += k
        yield b"0\r\n\r\n"

    with RssSampler(p.pid) as rss, RawConn(p.port, timeout=120) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        send_body_or_report(c, pieces())
        r = c.read_response()
    assert r.status == 200, r
    d = r.json()
    assert d["body_length"] == n and d["body_sha256"] == digest.hexdigest()
    assert rss.max_kb < RSS_LIMIT_KB, "portico RSS peaked at %d KiB during a chunked upload" % rss.max_kb


def test_stalled_then_slow_client_gets_full_body_with_backpressure(env):
    """The client stops reading for a while (the origin could push the whole body in that time), then reads
    slowly. The gateway must apply backpressure instead of buffering, and the client must get every byte."""
    p, o = env
    n = 256 * MiB
    state = {"got": 0}

    def on_head(resp):
        # Stall with the body pending: RSS is sampled throughout.
        time.sleep(1.5)

    def slow_sink(mv):
        state["got"] += len(mv)
        if state["got"] < 4 * MiB:  # first 4 MiB trickle in
            time.sleep(0.002)

    with RssSampler(p.pid) as rss, RawConn(p.port, timeout=60, rcvbuf=64 * 1024) as c:
        r = c.request("GET", "/bytes/%d" % n, keep_body=False, sink=slow_sink, on_head=on_head)
    assert r.status == 200 and r.complete
    assert r.body_length == n and r.body_sha256 == expected_sha(n)
    print("stalled client: portico max RSS %d KiB" % rss.max_kb)
    assert rss.max_kb < RSS_LIMIT_KB, "portico buffered for a stalled client: RSS peaked at %d KiB" % rss.max_kb


def test_slow_reader_small_reads(env):
    p, o = env
    n = 4 * MiB
    with RawConn(p.port, timeout=30, rcvbuf=16 * 1024) as c:
        c.send(b"GET /bytes/%d HTTP/1.1\r\nHost: a\r\n\r\n" % n)
        head = c._read_head()
        assert head.startswith(b"HTTP/1.1 200")
        got = bytearray(c.buf)
        c.buf.clear()
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            data = c.sock.recv(16 * 1024)
            if not data:
                break
            got += data
            time.sleep(0.001)
    assert len(got) == n
    assert hashlib.sha256(got).hexdigest() == expected_sha(n)


@pytest.mark.parametrize("variant", ["close", "rst"])
def test_origin_dies_mid_stream(env, variant):
    p, o = env
    target = "/die-mid-stream" + ("?rst=1" if variant == "rst" else "")
    with RawConn(p.port, timeout=10) as c:
        c.send(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target.encode())
        r = c.read_response(keep_body=False)
        assert r.status == 200, r
        assert not r.complete, "a truncated upstream body must not look complete to the client"
        assert r.body_length < 1000000
        assert c.wait_closed(5), "the client connection must be closed after a truncated response"
    # The gateway keeps serving, on new and reused connections.
    with RawConn(p.port) as c:
        for _ in range(5):
            r = c.request("GET", "/bytes/1000")
            assert r.status == 200 and r.body == pattern_bytes(1000)


def test_client_abort_mid_upload_releases_upstream(env):
    p, o = env
    m = "abort-up-%d" % time.monotonic_ns()
    with RawConn(p.port, timeout=10) as c:
        c.send(b"POST /echo?m=%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (m.encode(), 100 * MiB))
        for off in range(0, 8 * MiB, MiB):
            c.sock.sendall(pattern_view(off, MiB))
        conn_id = wait_for(lambda: o.seen(m), timeout=5, message="the upload to reach the origin")[0]["conn"]
    # The client is gone: the gateway must drop the upstream side too.
    wait_for(lambda: not o.conn_open(conn_id), timeout=5,
             message="the gateway to close the upstream connection of an aborted upload")
    rec = o.seen(m)
    assert len(rec) == 1 and not rec[0]["complete"]
    assert p.get("/bytes/10").status == 200


def test_client_abort_mid_download_stops_upstream(env):
    p, o = env
    m = "abort-down-%d" % time.monotonic_ns()
    with RssSampler(p.pid) as rss:
        with RawConn(p.port, timeout=10) as c:
            c.send(b"GET /bytes/%d?m=%s HTTP/1.1\r\nHost: a\r\n\r\n" % (GiB, m.encode()))
            got = 0
            while got < 4 * MiB:
                got += len(c.sock.recv(MiB))
        conn_id = o.seen(m)[0]["conn"]
        wait_for(lambda: not o.conn_open(conn_id), timeout=5,
                 message="the gateway to close the upstream connection of an aborted download")
    assert rss.max_kb < RSS_LIMIT_KB
    assert p.get("/bytes/10").status == 200
