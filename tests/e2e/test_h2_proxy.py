"""HTTP/2 to clients (issue 12): TLS with ALPN h2 and cleartext h2c with prior knowledge, through the same request
path as HTTP/1.1 (routing, plugins, retries, access log, metrics). Real clients: curl (--http2 over TLS,
--http2-prior-knowledge), nghttp, and h2_frames.H2Client (python3-h2) where the test needs the frames.

Covered here: the basic exchange over both entries, SETTINGS the client observes, END_STREAM on trailer-free
responses, plugins (key-auth, proxy-rewrite, a limit-count 429), retries to another node, the access log's
protocol, many concurrent streams on one connection, a 64 MiB upload and a 64 MiB download with Portico's RSS
bounded, a zero-window client reset after --send-timeout, a client's reset cancelling the upstream exchange,
GOAWAY on SIGTERM (in-flight stream completes, new stream refused), --http2 off / --h2c off.
"""

import json
import subprocess
import threading
import time

import h2.settings
import pytest

from conftest import LOOPBACK, RssSampler, free_port, make_config, reserve_dead_port, route, upstream, wait_for
from h2_frames import CANCEL, NO_ERROR, REFUSED_STREAM, H2Client
from tls_certs import make_ca, make_leaf

CA = make_ca()
LEAF = make_leaf(CA, "h2.test", ["h2.test"], kind="ecdsa")
KEYS = {"username": "alice", "plugins": {"key-auth": {"key": "alice-key"}}}


def config(origin, dead_port, **extra):
    cfg = make_config([
        route("key", "/echo", origin, host="key.test", plugins={"key-auth": {}}),
        route("rewrite", "/echo", origin, host="rewrite.test",
              plugins={"proxy-rewrite": {"uri": "/echo", "headers": {"set": {"X-Rewritten": "yes"}}}}),
        route("limited", "/echo", origin, host="limited.test",
              plugins={"limit-count": {"count": 2, "time_window": 60, "rejected_code": 429}}),
        route("retry", "/echo", host="retry.test",
              upstream=upstream("%s:%d" % (LOOPBACK, dead_port), origin, type="roundrobin", retries=1)),
        route("small", "/echo", origin, host="small.test", plugins={"client-control": {"max_body_size": 100}}),
        route("resp", "/*", origin, host="resp.test",
              plugins={"response-rewrite": {"headers": {"set": {"X-Resp": "yes"}, "remove": ["X-Origin"]}}}),
        route("respbody", "/*", origin, host="respbody.test",
              plugins={"response-rewrite": {"status_code": 201, "body": "replaced\n"}}),
        route("main", "/*", origin),
    ])
    cfg["consumers"] = [KEYS]
    cfg["ssls"] = [{"id": "h2", "cert": LEAF.cert, "key": LEAF.key, "snis": ["h2.test"]}]
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def env(origin_module, portico_module, tmp_path_factory):
    o = origin_module("h2o")
    dead, sock = reserve_dead_port()
    tls_port = free_port()
    d = tmp_path_factory.mktemp("h2ca")
    (d / "ca.crt").write_text(CA.cert)
    p = portico_module(config(o, dead), listen_tls="%s:%d" % (LOOPBACK, tls_port), send_timeout=2)
    p.tls_port = tls_port
    p.cafile = str(d / "ca.crt")
    yield {"p": p, "o": o}
    sock.close()


def curl(p, path, *extra, tls=False, host="test.local"):
    if tls:
        url = "https://h2.test:%d%s" % (p.tls_port, path)
        args = ["--http2", "--cacert", p.cafile, "--resolve", "h2.test:%d:%s" % (p.tls_port, LOOPBACK)]
    else:
        url = "http://%s:%d%s" % (LOOPBACK, p.port, path)
        args = ["--http2-prior-knowledge"]
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_version} %{http_code}",
                        "-H", "Host: " + host, *args, *extra, url], capture_output=True, timeout=40)
    out = r.stdout.decode(errors="replace")
    body, _, tail = out.rpartition("\n")
    version, _, code = tail.partition(" ")
    return r.returncode, version, int(code or 0), body, r.stderr.decode(errors="replace")


def test_h2_over_tls_alpn_and_h2c_prior_knowledge(env):
    p = env["p"]
    for tls in (False, True):
        rc, version, code, body, err = curl(p, "/echo", "-d", "hello", tls=tls,
                                            host="h2.test" if tls else "test.local")
        assert rc == 0 and version == "2" and code == 200, (tls, rc, version, code, err)
        echo = json.loads(body)
        assert echo["method"] == "POST" and echo["body_length"] == 5 and echo["version"] == "HTTP/1.1"
        names = [n.lower() for n, _ in echo["headers"]]
        assert "x-forwarded-for" in names
        proto = [v for n, v in echo["headers"] if n == "X-Forwarded-Proto"]
        assert proto == ["https" if tls else "http"]
    # HTTP/1.1 is unchanged on both listeners.
    r = subprocess.run(["curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_version}",
                        "http://%s:%d/id" % (LOOPBACK, p.port)], capture_output=True, text=True, timeout=20)
    assert r.stdout == "1.1"


def test_nghttp_client_and_observed_settings(env):
    p = env["p"]
    r = subprocess.run(["nghttp", "-nv", "http://%s:%d/id" % (LOOPBACK, p.port)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):128" in out, out
    assert "SETTINGS_INITIAL_WINDOW_SIZE(0x04):262144" in out, out
    assert "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):65536" in out, out
    assert ":status: 200" in out


def test_trailer_free_responses_end_with_end_stream(env):
    p = env["p"]
    with H2Client(p.port) as c:
        for path in ("/id", "/chunked/100000", "/status/204", "/bytes/0"):
            sid = c.request("GET", path)
            r = c.response(sid)
            assert r.ended and r.reset is None, (path, r.status, r.reset)
        sid = c.request("HEAD", "/bytes/1000")
        r = c.response(sid)
        assert r.ended and r.status == 200 and r.body == b"" and r.header("content-length") == "1000"
        # No HTTP/1.1 framing fields reach an HTTP/2 client.
        sid = c.request("GET", "/chunked/10")
        r = c.response(sid)
        names = [n for n, _ in r.headers]
        assert "transfer-encoding" not in names and "connection" not in names, r.headers
        assert all(n == n.lower() for n in names)


def test_plugins_over_h2(env):
    p = env["p"]
    assert curl(p, "/echo", host="key.test")[2] == 401
    rc, _, code, body, _ = curl(p, "/echo", "-H", "apikey: alice-key", host="key.test")
    assert code == 200
    assert ["X-Consumer-Username", "alice"] in json.loads(body)["headers"]
    rc, _, code, body, _ = curl(p, "/echo", host="rewrite.test")
    assert code == 200 and ["X-Rewritten", "yes"] in json.loads(body)["headers"]
    codes = [curl(p, "/echo", host="limited.test")[2] for _ in range(3)]
    assert codes == [200, 200, 429], codes


def test_answer_before_the_body_ends_then_reset_no_error(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        sid = c.request("POST", "/echo?toolarge=1", authority="small.test",
                        headers=[("content-length", "1000000")], end_stream=False)
        c.send_body(sid, b"x" * 1000, end_stream=False)
        r = c.response(sid)
        assert r.status == 413 and r.ended
        # Then RST_STREAM NO_ERROR: stop sending the rest (RFC 9113 8.1), the connection stays.
        c.events_until(lambda: r.reset is not None, timeout=5)
        assert r.reset == NO_ERROR
        assert c.response(c.request("GET", "/id")).status == 200
    assert o.hits("toolarge=1") == 0


def test_retry_to_another_node_over_h2(env):
    p = env["p"]
    for _ in range(4):
        assert curl(p, "/echo", host="retry.test")[2] == 200


def test_access_log_and_metrics_say_http2(env):
    p = env["p"]
    before = p.metrics().value("portico_http_requests_total", route="main")
    assert curl(p, "/id?h2log=1")[2] == 200
    line = wait_for(lambda: [ln for ln in p.access_log_lines() if "h2log=1" in ln], timeout=5)[-1]
    rec = json.loads(line)
    assert rec["protocol"] == "HTTP/2.0" and rec["status"] == 200 and rec["route_id"] == "main", rec
    # Per request, as HTTP/1.1 (whose lines stay without the field).
    wait_for(lambda: p.metrics().value("portico_http_requests_total", route="main") > before, timeout=5)
    m = p.metrics()
    assert m.value("portico_http2_streams_total") >= 1 and m.value("portico_http2_connections_total") >= 1
    r = subprocess.run(["curl", "-sS", "--http1.1", "-o", "/dev/null", "http://%s:%d/id?h1log=1" % (LOOPBACK, p.port)],
                       timeout=20)
    line = wait_for(lambda: [ln for ln in p.access_log_lines() if "h1log=1" in ln], timeout=5)[-1]
    assert "protocol" not in json.loads(line)


def test_bytes_sent_counts_what_the_client_received(env):
    # An HTTP/2 stream's bytes_sent is its HEADERS' fields (":status", names and values, before HPACK) plus
    # the DATA payload: not the HTTP/1.1 status line, CRLFs and chunk framing Portico does not send. Over a
    # Content-Length body, a chunked one (framing decoded), a response-rewrite of the head and of the body.
    p = env["p"]
    cases = [("/bytes/3000?bs=1", "test.local", 200), ("/chunked/70000?bs=2", "test.local", 200),
             ("/bytes/10?bs=3", "resp.test", 200), ("/bytes/10?bs=4", "respbody.test", 201)]
    with H2Client(p.port) as c:
        for path, host, status in cases:
            r = c.response(c.request("GET", path, authority=host))
            assert r.status == status and r.ended, (path, r.status, r.reset)
            names = [n for n, _ in r.headers]
            assert "transfer-encoding" not in names and "connection" not in names, r.headers
            if host == "resp.test":
                assert r.header("x-resp") == "yes", r.headers
            if host == "respbody.test":
                assert bytes(r.body) == b"replaced\n" and r.header("content-length") == "9", r.headers
            expected = sum(len(n) + len(v) for n, v in r.headers) + len(r.body)  # headers include :status
            tag = path.rsplit("?", 1)[1]
            line = wait_for(lambda: [ln for ln in p.access_log_lines() if tag in ln], timeout=5)[-1]
            assert int(json.loads(line)["bytes_sent"]) == expected, (path, line, r.headers)


def test_many_concurrent_streams_on_one_connection(env):
    p = env["p"]
    with H2Client(p.port, timeout=20) as c:
        sids = [c.request("GET", "/delay/200?n=%d" % i) for i in range(100)]
        start = time.monotonic()
        rs = [c.response(s) for s in sids]
        assert all(r.status == 200 and r.ended for r in rs), [(r.status, r.reset) for r in rs if r.status != 200]
        # In parallel, not one after the other (100 x 200 ms).
        assert time.monotonic() - start < 10


def test_large_upload_and_download_with_bounded_rss(env):
    p = env["p"]
    size = 64 * 1024 * 1024
    base_kb = p.rss_kb()
    with RssSampler(p.pid) as sampler:
        # Upload: 64 MiB from a pipe (no content-length: chunked to the origin), flow-controlled by Portico.
        gen = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "60", "-T", "-", "-X", "POST",
                            "http://%s:%d/echo" % (LOOPBACK, p.port)], stdin=gen.stdout, capture_output=True,
                           timeout=90)
        gen.wait()
        assert r.returncode == 0, r.stderr
        echo = json.loads(r.stdout)
        assert echo["body_length"] == size and echo["chunked"], echo
        # Download: 64 MiB.
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "60", "-o", "/dev/null",
                            "-w", "%{http_code} %{size_download}",
                            "http://%s:%d/bytes/%d" % (LOOPBACK, p.port, size)],
                           capture_output=True, text=True, timeout=90)
        assert r.stdout == "200 %d" % size, (r.stdout, r.stderr)
    assert sampler.max_kb - base_kb < 32 * 1024, (base_kb, sampler.max_kb)


def test_zero_window_client_is_reset_after_send_timeout(env):
    p = env["p"]
    # A client that never opens its window: Portico holds at most the per-stream cap, then gives up.
    with H2Client(p.port, window=0, timeout=15) as c:
        sid = c.request("GET", "/bytes/%d" % (8 * 1024 * 1024))
        r = c.response(sid, timeout=12)
        assert r.reset is not None or c.closed, (r.status, r.reset, c.closed)
    # The connection that stalled is gone; others are served.
    assert curl(p, "/id")[2] == 200


def test_client_reset_cancels_the_upstream_exchange(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        sid = c.request("GET", "/delay/3000?cancel=1")
        wait_for(lambda: o.hits("cancel=1") == 1, timeout=5)
        start = time.monotonic()
        c.reset_stream(sid, CANCEL)
        # The exchange ends at once (499, as nginx logs a client that gave up), long before the origin answers.
        line = wait_for(lambda: [ln for ln in p.access_log_lines() if "cancel=1" in ln], timeout=2.5)[-1]
        assert json.loads(line)["status"] == 499 and time.monotonic() - start < 2.5
        sid2 = c.request("GET", "/id")
        assert c.response(sid2).status == 200


def test_goaway_on_sigterm_inflight_completes_new_stream_refused(portico, origin):
    o = origin("drain")
    p = portico(make_config([route("main", "/*", o)]), drain_timeout=10)
    with H2Client(p.port, timeout=15) as c:
        sid = c.request("GET", "/delay/1500")
        wait_for(lambda: o.hits("/delay/1500") == 1, timeout=5)
        p.sigterm()
        c.events_until(lambda: len(c.goaways) >= 1, timeout=5)
        assert c.goaways[0][0] == NO_ERROR
        # After the final GOAWAY (last stream id = the in-flight one), a new stream is not served.
        c.events_until(lambda: any(last < 2 ** 31 - 1 for _, last in c.goaways), timeout=5)
        final = [g for g in c.goaways if g[1] < 2 ** 31 - 1][0]
        assert final == (NO_ERROR, sid), c.goaways
        r = c.response(sid)
        assert r.status == 200 and r.ended
        sid2 = c.request("GET", "/id")
        r2 = c.response(sid2, timeout=3)
        assert r2.status is None
        assert o.hits("/id") == 0
    assert p.wait_exit(10) is not None


def test_http2_off_and_h2c_off(portico, origin, tmp_path):
    o = origin("off")
    tls_port = free_port()
    (tmp_path / "ca.crt").write_text(CA.cert)
    p = portico(config(o, 1), listen_tls="%s:%d" % (LOOPBACK, tls_port), http2="off", h2c="off")
    p.tls_port, p.cafile = tls_port, str(tmp_path / "ca.crt")
    rc, version, code, _, err = curl(p, "/id", tls=True, host="h2.test")
    assert rc == 0 and version == "1.1" and code == 200, (version, err)
    # Prior knowledge on a plain listener without h2c: the preface is an HTTP/1.1 request line Portico refuses.
    rc, version, code, _, err = curl(p, "/id")
    assert rc != 0 or code != 200


def test_nghttp_default_window_download_is_not_a_control_frame_flood(env):
    # nghttp -nv keeps the default 64 KiB window and sends a WINDOW_UPDATE per DATA it reads: a 64 MiB download
    # is thousands of them per second, which must not count as a control frame flood.
    p = env["p"]
    size = 64 * 1024 * 1024
    url = "http://%s:%d/bytes/%d" % (LOOPBACK, p.port, size)
    r = subprocess.run(["nghttp", "-nv", url], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-500:]
    assert "ENHANCE_YOUR_CALM" not in r.stdout
    data = sum(int(ln.split("length=")[1].split(",")[0]) for ln in r.stdout.splitlines()
               if "recv DATA frame" in ln)
    assert data == size
