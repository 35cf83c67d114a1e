"""HTTP/2 downgrade rules and defenses, each pinned by a test that sends the frames itself (h2_frames.py).

Downgrade (HTTP/2 -> HTTP/1.1 is where smuggling hides): connection-specific fields, TE other than trailers,
missing or unknown pseudo-headers, upper-case names, :authority and host differing are stream errors that never
reach the origin; content-length disagreeing with DATA never reaches it as a complete body; CONNECT is 501 and
a request without any authority 400, as over HTTP/1.1.

Defenses: rapid reset (CVE-2023-44487), an HPACK bomb, a CONTINUATION flood (CVE-2024-27316), PING and SETTINGS
floods, an incomplete header block (slowloris), an idle connection (GOAWAY then close).
"""

import socket
import ssl
import time

import hpack
import pytest
from hyperframe.frame import Frame

from conftest import LOOPBACK, free_port, make_config, route, wait_for
from h2_frames import (PREFACE, CONTINUATION, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, HEADERS, NO_ERROR, PING,
                       PROTOCOL_ERROR, RST_STREAM, SETTINGS, CANCEL, H2Client, frame)


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    o = origin_module("h2d")
    p = portico_module(make_config([route("main", "/*", o)]), header_timeout=1, keepalive_timeout=2)
    return {"p": p, "o": o}


def refused(c, sid):
    r = c.response(sid, timeout=5)
    return r.reset is not None or (r.status is not None and r.status >= 400)


@pytest.mark.parametrize("name,headers", [
    ("connection", [("connection", "keep-alive")]),
    ("keep-alive", [("keep-alive", "timeout=5")]),
    ("transfer-encoding", [("transfer-encoding", "chunked")]),
    ("upgrade", [("upgrade", "websocket")]),
    ("te-gzip", [("te", "gzip")]),
    ("uppercase", [("X-Upper", "1")]),
    ("host-differs", [("host", "other.test")]),
    ("unknown-pseudo", [(":foo", "bar")]),
    ("pseudo-after-regular", [("x-a", "1"), (":authority", "late.test")]),
    ("newline-in-value", [("x-a", "a\r\nx-smuggled: 1")]),
])
def test_downgrade_rules_refuse_and_never_forward(env, name, headers):
    p, o = env["p"], env["o"]
    marker = "/echo?downgrade=" + name
    with H2Client(p.port) as c:
        sid = c.request("GET", marker, headers=headers)
        assert refused(c, sid), name
        # The connection is still usable: a stream error, not a connection error.
        ok = c.request("GET", "/id")
        assert c.response(ok).status == 200
    assert o.hits("downgrade=" + name) == 0


def test_missing_path_is_refused(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        sid = c.h2.get_next_available_stream_id()
        from h2_frames import Response
        c.responses[sid] = Response()
        c.h2.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "nopath.test")],
                          end_stream=True)
        c.flush()
        assert refused(c, sid)
    assert o.hits("nopath") == 0


def test_te_trailers_is_accepted(env):
    p = env["p"]
    with H2Client(p.port) as c:
        sid = c.request("GET", "/id", headers=[("te", "trailers")])
        assert c.response(sid).status == 200


@pytest.mark.parametrize("declared,sent", [(10, 5), (5, 10), (0, 3)])
def test_content_length_disagreeing_with_data_is_never_complete_upstream(env, declared, sent):
    p, o = env["p"], env["o"]
    tag = "cl=%d-%d" % (declared, sent)
    with H2Client(p.port) as c:
        sid = c.request("POST", "/echo?" + tag, headers=[("content-length", str(declared))], end_stream=False)
        c.send_body(sid, b"x" * sent, end_stream=True)
        r = c.response(sid)
        assert r.status is None or r.status >= 400, (r.status, bytes(r.body))
        assert r.reset is not None or r.status is not None
    assert not o.seen(tag, complete_only=True)


def test_connect_is_501_and_missing_authority_reset(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        sid = c.h2.get_next_available_stream_id()
        from h2_frames import Response
        c.responses[sid] = Response()
        c.h2.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
        c.flush()
        assert c.response(sid).status == 501
        # No :authority and no host with scheme http: nghttp2's messaging check resets the stream
        # PROTOCOL_ERROR (were it let through, the HTTP/1.1 head would have no Host: a 400).
        sid = c.request("GET", "/echo?noauthority=1", authority=None)
        r = c.response(sid)
        assert (r.status, r.reset) == (None, PROTOCOL_ERROR)
    assert o.hits("noauthority") == 0


def test_rapid_reset_ends_in_goaway_enhance_your_calm(env):
    p, o = env["p"], env["o"]
    before = o.hits("/delay/2000")
    with H2Client(p.port, timeout=10) as c:
        sid = 1
        burst = b""
        for _ in range(1000):
            block = c.headers_block([(":method", "GET"), (":scheme", "http"), (":authority", "rr.test"),
                                     (":path", "/delay/2000")])
            burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, block)
            burst += frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big"))
            sid += 2
        c.send_raw(burst)
        frames = c.read_frames(timeout=3)
        goaways = [f for f in frames if f.type == 0x7]
        assert goaways and goaways[-1].error_code == ENHANCE_YOUR_CALM, [f.type for f in frames][:20]
    # Streams reset in the read that brought their HEADERS never start; a pair split across two reads may.
    assert o.hits("/delay/2000") - before <= 128
    with H2Client(p.port) as c:
        assert c.response(c.request("GET", "/id")).status == 200


def test_steady_resets_are_budgeted_against_requests_and_never_started(env):
    # ~150 streams/s reset in the same write as their HEADERS, plus ~150/s reset a tick after they started, for
    # 3 s: 300 resets/s against 300 requests/s is a busy client cancelling, not a flood (no GOAWAY); the first
    # kind never reaches the origin. (The origin's open connections do not measure concurrency: a sleeping
    # /delay handler notices Portico's close only when it writes.)
    p, o = env["p"], env["o"]
    with H2Client(p.port, timeout=10) as c:
        sid, late = 1, None
        end = time.monotonic() + 3
        i = 0
        while time.monotonic() < end:
            out = b""
            if late is not None:
                out += frame(RST_STREAM, 0, late, CANCEL.to_bytes(4, "big"))
            for path, reset in (("/delay/2000?steady=same%d" % i, True), ("/delay/2000?steady=late%d" % i, False)):
                block = c.headers_block([(":method", "GET"), (":scheme", "http"), (":authority", "rr.test"),
                                         (":path", path)])
                out += frame(HEADERS, END_HEADERS | END_STREAM, sid, block)
                if reset:
                    out += frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big"))
                else:
                    late = sid
                sid += 2
            c.send_raw(out)
            c.pump(1 / 150)
            i += 1
        assert not c.goaways, c.goaways
        assert not c.closed
    assert o.hits("steady=same") == 0
    assert o.hits("steady=late") > 0  # the test does exercise streams reset after they started


def test_hpack_bomb_is_refused_while_decoding(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        enc = hpack.Encoder()
        # One 4000-byte field goes into the dynamic table, then 1000 one-byte references to it: 4 MB decoded.
        block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "bomb.test"),
                            (":path", "/echo?bomb=1"), ("x-bomb", "a" * 4000)])
        block += b"\xbe" * 1000
        # h2's own encoder has not seen this block: the raw connection uses its own from here on.
        c.send_raw(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        frames = c.read_frames(timeout=2)
        heads = [f for f in frames if f.type == 0x1 and f.stream_id == 1]
        resets = [f for f in frames if f.type == 0x3 and f.stream_id == 1]
        assert heads or resets
        if heads:
            status = dict(hpack.Decoder().decode(heads[0].data))[":status"]
            assert status == "431"
        # Refused by the codec while decoding: no Session ever saw it (Portico's HTTP/1.1 parse of the head
        # would answer 431 as well, after the whole block was decoded and kept).
    with H2Client(p.port) as c:
        assert c.response(c.request("GET", "/id?aftertest=hpack")).status == 200
    wait_for(lambda: [ln for ln in p.access_log_lines() if "aftertest=hpack" in ln], timeout=5)
    assert not [ln for ln in p.access_log_lines() if "bomb=1" in ln]
    assert o.hits("bomb=1") == 0


def test_continuation_flood_ends_the_connection(env):
    p, o = env["p"], env["o"]
    with H2Client(p.port) as c:
        block = c.headers_block([(":method", "GET"), (":scheme", "http"), (":authority", "cont.test"),
                                 (":path", "/echo?cont=1")])
        data = frame(HEADERS, 0, 1, block[:1])
        for i in range(1, len(block)):
            data += frame(CONTINUATION, 0, 1, block[i:i + 1])
        # Then empty CONTINUATION frames without end (each costs the server a frame, never a stream).
        data += frame(CONTINUATION, 0, 1, b"") * 200
        c.send_raw(data)
        frames = c.read_frames(timeout=2)
        goaways = [f for f in frames if f.type == 0x7]
        assert goaways and goaways[-1].error_code != NO_ERROR, [f.type for f in frames]
        assert c.wait_closed(timeout=3)
    assert o.hits("cont=1") == 0


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_flood_ends_in_enhance_your_calm(env, kind):
    p = env["p"]
    with H2Client(p.port) as c:
        if kind == "ping":
            one = frame(PING, 0, 0, b"12345678")
        else:
            one = frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (65535).to_bytes(4, "big"))
        c.send_raw(one * 5000)
        frames = c.read_frames(timeout=2)
        goaways = [f for f in frames if f.type == 0x7]
        assert goaways and goaways[-1].error_code == ENHANCE_YOUR_CALM, len(frames)
        assert c.wait_closed(timeout=3)
    assert p.metrics().value("portico_http2_connection_errors_total") >= 1


def test_incomplete_header_block_is_closed_after_header_timeout(env):
    p = env["p"]
    with H2Client(p.port, timeout=5) as c:
        block = c.headers_block([(":method", "GET"), (":scheme", "http"), (":authority", "slow.test"),
                                 (":path", "/id")])
        c.send_raw(frame(HEADERS, 0, 1, block[:2]))  # no END_HEADERS, and nothing more
        start = time.monotonic()
        frames = c.read_frames(timeout=3)
        assert any(f.type == 0x7 for f in frames)
        assert c.wait_closed(timeout=3)
        assert time.monotonic() - start < 3.5


def test_idle_connection_gets_goaway_no_error_then_close(env):
    p = env["p"]
    with H2Client(p.port, timeout=6) as c:
        assert c.response(c.request("GET", "/id")).status == 200
        start = time.monotonic()
        c.events_until(lambda: c.goaway is not None, timeout=5)
        assert c.goaway[0] == NO_ERROR
        assert c.wait_closed(timeout=3)
        assert 1.5 < time.monotonic() - start < 5


def test_h2c_preface_split_across_reads(env):
    p = env["p"]
    s = socket.create_connection((LOOPBACK, p.port), timeout=5)
    try:
        s.sendall(PREFACE[:10])
        s.sendall(PREFACE[10:] + frame(SETTINGS, 0, 0))
        f, _ = Frame.parse_frame_header(memoryview(s.recv(9)))
        assert f.type == 0x4  # the server's SETTINGS: HTTP/2 it is
    finally:
        s.close()


def test_tls_h2_without_preface_is_closed_after_header_timeout(portico, origin, tmp_path):
    from tls_certs import make_ca, make_leaf
    ca = make_ca()
    leaf = make_leaf(ca, "p.test", ["p.test"], kind="ecdsa")
    (tmp_path / "ca.crt").write_text(ca.cert)
    o = origin("tlsp")
    tls_port = free_port()
    cfg = make_config([route("main", "/*", o)])
    cfg["ssls"] = [{"id": "p", "cert": leaf.cert, "key": leaf.key, "snis": ["p.test"]}]
    p = portico(cfg, listen_tls="%s:%d" % (LOOPBACK, tls_port), header_timeout=1)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    s = ctx.wrap_socket(socket.create_connection((LOOPBACK, tls_port), timeout=5), server_hostname="p.test")
    try:
        assert s.selected_alpn_protocol() == "h2"
        start = time.monotonic()
        data = b""
        while True:  # the server's SETTINGS may come first; then the close
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert 0.5 < time.monotonic() - start < 4
    except (ConnectionResetError, ssl.SSLError):
        pass
    finally:
        s.close()
