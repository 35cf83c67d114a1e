"""gRPC routes (upstream scheme grpc) reached by an HTTP/1.1 client: Portico forwards over HTTP/2 to the node and
relays the response chunked, with the node's trailers as a chunked trailer section (docs/grpc.md). Portico's own
answers to a request with content-type application/grpc are gRPC statuses, not HTML/JSON errors."""

import struct

import pytest

from conftest import RawConn, reserve_dead_port, wait_for
from grpc_servers import SERVICE, GrpcServer


def frame(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    s = GrpcServer(tmp_path_factory.mktemp("grpc"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gw(node, portico_module):
    port, sock = reserve_dead_port()
    dead = "127.0.0.1:%d" % port
    cfg = {"routes": [
        {"id": "g", "uri": "/%s/*" % SERVICE, "upstream": {"scheme": "grpc", "nodes": {node.node: 1}}},
        {"id": "dead", "uri": "/dead.Svc/*", "upstream": {"scheme": "grpc", "nodes": {dead: 1}}},
    ]}
    yield portico_module(cfg, fmt="json")
    sock.close()


GRPC_HEADERS = [("Content-Type", "application/grpc"), ("TE", "trailers")]


def raw_chunked_response(c):
    """Reads a chunked response with its trailer section: (head bytes, body bytes, {trailer: value})."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += c.sock.recv(65536)
        line, rest = rest.split(b"\r\n", 1)
        size = int(line, 16)
        if size == 0:
            break
        while len(rest) < size + 2:
            rest += c.sock.recv(65536)
        body += rest[:size]
        rest = rest[size + 2:]
    while not (rest.startswith(b"\r\n") or b"\r\n\r\n" in rest):
        rest += c.sock.recv(65536)
    trailers = {}
    for line in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line:
            k, v = line.split(b":", 1)
            trailers[k.strip().decode().lower()] = v.strip().decode()
    return head.decode(), body, trailers


def test_unary_over_http1_with_trailers(gw):
    with RawConn(gw.port) as c:
        c.send(b"POST /%s/Echo HTTP/1.1\r\nHost: g.test\r\nContent-Type: application/grpc\r\nTE: trailers\r\n"
               b"x-trailer: tv\r\nContent-Length: %d\r\n\r\n%s" % (SERVICE.encode(), len(frame(b"hi")),
                                                                   frame(b"hi")))
        head, body, trailers = raw_chunked_response(c)
    assert head.startswith("HTTP/1.1 200"), head
    assert "transfer-encoding: chunked" in head.lower()
    assert body == frame(b"hi")
    assert trailers.get("grpc-status") == "0"
    assert trailers.get("x-trailer") == "tv"


def test_client_streaming_chunked_request(gw):
    msgs = frame(b"a") + frame(b"bb")
    with RawConn(gw.port) as c:
        c.send(b"POST /%s/Collect HTTP/1.1\r\nHost: g.test\r\nContent-Type: application/grpc\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (SERVICE.encode(), len(msgs), msgs))
        head, body, trailers = raw_chunked_response(c)
    assert head.startswith("HTTP/1.1 200"), head
    assert body == frame(b"2:a,bb")
    assert trailers.get("grpc-status") == "0"


def test_no_node_is_grpc_unavailable(gw):
    with RawConn(gw.port) as c:
        r = c.request("POST", "/dead.Svc/M", headers=GRPC_HEADERS, body=frame(b"x"))
    assert r.status == 200
    assert r.header("content-type") == "application/grpc"
    assert r.header("grpc-status") == "14"
    assert r.header("grpc-message") == "upstream connection failed"


def test_no_route_is_grpc_unimplemented(gw):
    with RawConn(gw.port) as c:
        r = c.request("POST", "/nothing.Here/M", headers=GRPC_HEADERS, body=frame(b"x"))
    assert r.status == 200
    assert r.header("grpc-status") == "12"
    assert r.header("grpc-message") == "404 Route Not Found"
    with RawConn(gw.port) as c:
        r = c.request("GET", "/nothing.Here/M")  # not gRPC: Portico's usual answer
    assert r.status == 404


def test_grpc_timeout_is_deadline_exceeded_and_cancels_upstream(gw, node):
    with RawConn(gw.port) as c:
        r = c.request("POST", "/%s/Slow" % SERVICE, body=frame(b"10"),
                      headers=GRPC_HEADERS + [("grpc-timeout", "300m"), ("x-id", "h1-slow")])
    assert r.status == 200
    assert r.header("grpc-status") == "4"
    wait_for(lambda: "cancelled Slow h1-slow" in node.events(), message="the node's call was cancelled")


def test_node_dying_mid_stream_ends_with_unavailable(tmp_path, portico):
    dying = GrpcServer(tmp_path)
    try:
        gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": {"scheme": "grpc",
                                                                         "nodes": {dying.node: 1}}}]}, fmt="json")
        with RawConn(gw.port) as c:
            c.send(b"POST /%s/Die HTTP/1.1\r\nHost: g\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n"
                   % SERVICE.encode() + frame(b""))
            head, body, trailers = raw_chunked_response(c)
        # The messages relayed before the node died, then a status a gRPC client understands.
        assert body == frame(b"before-1") + frame(b"before-2")
        assert trailers.get("grpc-status") == "14"
        assert trailers.get("grpc-message") == "upstream ended the call without a status"
    finally:
        dying.stop()


def test_grpcs_verified_and_wrong_ca(tmp_path, portico):
    from tls_certs import Ca, write
    ca, wrong = Ca("grpc CA"), Ca("other CA")
    cert, key = ca.issue("grpc.test", dns=["grpc.test"], ips=["127.0.0.1"])
    tls_node = GrpcServer(tmp_path, write(tmp_path, "g.crt", cert), write(tmp_path, "g.key", key))
    try:
        def grpcs(**kw):
            return dict({"scheme": "grpcs", "nodes": {tls_node.node: 1}, "pass_host": "rewrite",
                         "upstream_host": "grpc.test", "tls": {"verify": True}}, **kw)
        cfg = {"routes": [{"id": "s", "uri": "/%s/*" % SERVICE, "upstream": grpcs()}]}
        good = portico(cfg, fmt="json", upstream_ca_file=write(tmp_path, "ca.pem", ca.pem))
        bad = portico(cfg, fmt="json", upstream_ca_file=write(tmp_path, "wrong.pem", wrong.pem))
        for _ in range(2):  # the second one on the pooled connection
            with RawConn(good.port) as c:
                c.send(b"POST /%s/Echo HTTP/1.1\r\nHost: g\r\nContent-Type: application/grpc\r\n"
                       b"Content-Length: 7\r\n\r\n" % SERVICE.encode() + frame(b"ok"))
                head, body, trailers = raw_chunked_response(c)
            assert head.startswith("HTTP/1.1 200"), head
            assert body == frame(b"ok") and trailers.get("grpc-status") == "0"
        with RawConn(bad.port) as c:
            r = c.request("POST", "/%s/Echo" % SERVICE, headers=GRPC_HEADERS, body=frame(b"no"))
        assert r.header("grpc-status") == "14"
        assert r.header("grpc-message") == "upstream connection failed"
    finally:
        tls_node.stop()
