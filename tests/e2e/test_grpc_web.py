"""The grpc-web plugin (APISIX 3.x) on a gRPC route: browser-style gRPC-Web calls over HTTP/1.1 and HTTP/2 reach a
real gRPC node (grpc_servers.py) as gRPC calls, and come back as gRPC-Web (docs/grpc.md "gRPC-Web"): the node's
messages as they come, its status in a trailer frame in the body, base64 for the -text content types, the CORS
headers a browser needs. The client here is hand-written (raw HTTP/1.1, curl for HTTP/2)."""

import base64
import struct
import subprocess

import pytest

from conftest import LOOPBACK, RawConn, reserve_dead_port
from grpc_servers import SERVICE, GrpcServer

BIN = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"


def frame(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def frames(body):
    """[(flags, payload)] of a gRPC-Web response body."""
    out, i = [], 0
    while i < len(body):
        assert len(body) >= i + 5, body
        n = struct.unpack(">I", body[i + 1:i + 5])[0]
        out.append((body[i], body[i + 5:i + 5 + n]))
        i += 5 + n
    assert i == len(body), body
    return out


def trailers(payload):
    return dict(line.split(":", 1) for line in payload.decode().split("\r\n") if line)


def unbase64(text):
    """A -text body: padded base64 pieces, decoded 4 characters at a time as gRPC-Web clients do."""
    return b"".join(base64.b64decode(text[i:i + 4]) for i in range(0, len(text), 4))


def messages_and_status(body):
    fs = frames(body)
    assert fs and fs[-1][0] == 0x80, fs  # the trailer frame comes last
    assert all(f == 0 for f, _ in fs[:-1]), fs
    return [p for _, p in fs[:-1]], trailers(fs[-1][1])


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    s = GrpcServer(tmp_path_factory.mktemp("grpcweb"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gw(node, portico_module):
    port, sock = reserve_dead_port()
    cfg = {"routes": [
        {"id": "web", "uri": "/grpc/web/*", "plugins": {"grpc-web": {}},
         "upstream": {"scheme": "grpc", "nodes": {node.node: 1}}},
        {"id": "dead", "uri": "/dead/web/*", "plugins": {"grpc-web": {"cors_allow_headers": "content-type,x-a"}},
         "upstream": {"scheme": "grpc", "nodes": {"127.0.0.1:%d" % port: 1}}},
    ]}
    yield portico_module(cfg, fmt="json")
    sock.close()


def call(gw, method, body, content_type=BIN, headers=(), path="/grpc/web/%s/" % SERVICE, verb="POST"):
    with RawConn(gw.port) as c:
        return c.request(verb, path + method, body=body, headers=[("Content-Type", content_type),
                                                                   ("X-Grpc-Web", "1"), *headers])


def assert_cors(r):
    assert r.header("access-control-allow-origin") == "*", r.headers
    assert r.header("access-control-expose-headers") == "grpc-message,grpc-status", r.headers


def test_unary_binary(gw, node):
    r = call(gw, "Echo", frame(b"hi"), headers=[("x-id", "web-bin")])
    assert r.status == 200, r
    assert r.header("content-type") == BIN
    assert_cors(r)
    assert r.header("grpc-status") is None  # in the body, not as HTTP trailers or head fields
    msgs, status = messages_and_status(r.body)
    assert msgs == [b"hi"]
    assert status["grpc-status"] == "0", status
    assert "call Echo web-bin" in node.events()  # the route's `*` part was the node's path


def test_unary_text(gw):
    r = call(gw, "Echo", base64.b64encode(frame(b"hello, text")), content_type=TEXT, headers=[("x-trailer", "tv")])
    assert r.status == 200, r
    assert r.header("content-type") == TEXT
    assert_cors(r)
    msgs, status = messages_and_status(unbase64(r.body))
    assert msgs == [b"hello, text"]
    assert status["grpc-status"] == "0" and status["x-trailer"] == "tv", status


def test_text_body_in_padded_pieces(gw):
    # A client may send its base64 in padded pieces: each decodes on its own.
    msg = frame(b"abcd")
    body = base64.b64encode(msg[:4]) + base64.b64encode(msg[4:])
    assert b"=" in body[:-2]
    r = call(gw, "Echo", body, content_type=TEXT + "+proto")
    msgs, status = messages_and_status(unbase64(r.body))
    assert msgs == [b"abcd"] and status["grpc-status"] == "0", (msgs, status)


def test_server_streaming_chunked(gw):
    r = call(gw, "Stream", frame(b"3"))
    assert r.status == 200, r
    assert r.header("transfer-encoding") == "chunked"  # streamed, not buffered into a Content-Length
    msgs, status = messages_and_status(r.body)
    assert msgs == [b"msg-0", b"msg-1", b"msg-2"]
    assert status["grpc-status"] == "0"


def test_node_error_after_messages_is_in_the_trailer_frame(gw):
    r = call(gw, "Stream", base64.b64encode(frame(b"2")), content_type=TEXT, headers=[("x-status", "9")])
    assert r.status == 200, r
    msgs, status = messages_and_status(unbase64(r.body))
    assert msgs == [b"msg-0", b"msg-1"]
    assert status["grpc-status"] == "9" and status["grpc-message"] == "asked for 9", status


def test_node_error_before_any_message_is_trailers_only(gw):
    r = call(gw, "Echo", frame(b"x"), headers=[("x-status", "5")])
    assert r.status == 200, r
    assert r.header("grpc-status") == "5" and r.header("grpc-message") == "asked for 5", r.headers
    assert r.header("content-type") == BIN
    assert_cors(r)
    assert r.body == b""


def test_options_preflight_answered_by_the_gateway(gw, node):
    before = len(node.events())
    r = call(gw, "Echo", None, verb="OPTIONS",
             headers=[("Origin", "http://app.test"), ("Access-Control-Request-Method", "POST")])
    assert r.status == 204, r
    assert r.header("access-control-allow-methods") == "POST"
    assert r.header("access-control-allow-headers") == "content-type,x-grpc-web,x-user-agent"
    assert_cors(r)
    assert len(node.events()) == before


def test_wrong_method_and_wrong_content_type(gw, node):
    before = len(node.events())
    r = call(gw, "Echo", None, verb="GET")
    assert r.status == 405, r
    assert_cors(r)
    r = call(gw, "Echo", frame(b"x"), content_type="application/json")
    assert r.status == 400, r
    assert_cors(r)
    r = call(gw, "Echo", frame(b"x"), content_type="application/grpc-web; charset=utf-8")
    assert r.status == 400, r
    assert len(node.events()) == before


def test_dead_node_is_grpc_web_shaped(gw):
    r = call(gw, "M", frame(b"x"), content_type=TEXT, path="/dead/web/x.Svc/")
    assert r.status == 200, r
    assert r.header("content-type") == TEXT
    assert r.header("grpc-status") == "14"
    assert r.header("grpc-message") == "upstream connection failed"
    assert_cors(r)
    assert r.body == b""
    r = call(gw, "M", None, verb="OPTIONS", path="/dead/web/x.Svc/")
    assert r.header("access-control-allow-headers") == "content-type,x-a"


def test_http2_client(gw, tmp_path):
    (tmp_path / "b").write_bytes(base64.b64encode(frame(b"over h2")))
    r = subprocess.run(["curl", "-s", "-D", str(tmp_path / "h"), "--http2-prior-knowledge", "-m", "15",
                        "-H", "content-type: " + TEXT, "-H", "x-grpc-web: 1", "--data-binary", "@%s" % (tmp_path / "b"),
                        "http://%s:%d/grpc/web/%s/Echo" % (LOOPBACK, gw.port, SERVICE)], capture_output=True)
    head = (tmp_path / "h").read_text().lower()
    assert head.startswith("http/2 200"), head
    assert "content-type: application/grpc-web-text" in head
    msgs, status = messages_and_status(unbase64(r.stdout))
    assert msgs == [b"over h2"] and status["grpc-status"] == "0", (msgs, status)


def test_text_body_not_base64(gw, node):
    # APISIX refuses it 400 after reading the whole body; Portico streams the body, so the call may have started:
    # it ends grpc-web shaped, INTERNAL (the status gRPC's mapping gives a 400), and nothing reaches the node's
    # handler as a message.
    for body in [b"!!!!AAAA", b"AAA"]:
        r = call(gw, "Echo", body, content_type=TEXT)
        assert r.status == 200, r
        assert r.header("grpc-status") == "13", r.headers
        assert r.header("grpc-message") == "invalid base64 request body", r.headers
        assert_cors(r)


def test_deadline_is_grpc_web_shaped(gw):
    r = call(gw, "Slow", base64.b64encode(frame(b"5")), content_type=TEXT, headers=[("grpc-timeout", "200m")])
    assert r.status == 200, r
    assert r.header("grpc-status") == "4" and r.header("content-type") == TEXT, r.headers
    assert_cors(r)


def test_large_text_message_both_ways(gw):
    # Larger than a slice of the response encoder and than one read of the request body: decoded as it streams,
    # encoded in pieces, the same bytes come back.
    payload = bytes(range(256)) * 800  # 204800 bytes
    r = call(gw, "Echo", base64.b64encode(frame(payload)), content_type=TEXT)
    assert r.status == 200, r
    msgs, status = messages_and_status(unbase64(r.body))
    assert msgs == [payload] and status["grpc-status"] == "0", status
