"""gRPC through Portico with real gRPC clients and servers (python3-grpcio): clients over h2c with prior knowledge
on the plain port and over TLS (ALPN h2) on the TLS port; routes whose upstream scheme is grpc (h2c) or grpcs
(TLS, verified). Unary, server and client streaming, metadata and trailing metadata relayed, deadlines (the
node's call cancelled), a node dying mid-stream, no node answering, auth refusals: each as the gRPC client
reports it (docs/grpc.md)."""

import grpc
import pytest

from conftest import LOOPBACK, free_port, reserve_dead_port, wait_for
from grpc_servers import SERVICE, GrpcServer
from tls_certs import Ca, write


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpc-pki")
    ca, wrong = Ca("grpc node CA"), Ca("unrelated CA")
    node_cert, node_key = ca.issue("grpc.test", dns=["grpc.test"], ips=["127.0.0.1"])
    edge = Ca("edge CA")
    edge_cert, edge_key = edge.issue("gw.test", dns=["gw.test"])
    return {"dir": d, "ca": write(d, "ca.pem", ca.pem), "wrong": write(d, "wrong.pem", wrong.pem),
            "node_cert": write(d, "node.crt", node_cert), "node_key": write(d, "node.key", node_key),
            "edge_ca": edge.pem, "edge_cert": edge_cert, "edge_key": edge_key}


@pytest.fixture(scope="module")
def nodes(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("grpc-nodes")
    plain = GrpcServer(d)
    tls = GrpcServer(d, pki["node_cert"], pki["node_key"])
    yield {"plain": plain, "tls": tls}
    plain.stop()
    tls.stop()


def config(nodes, dead):
    grpcs = {"scheme": "grpcs", "nodes": {nodes["tls"].node: 1}, "pass_host": "rewrite",
             "upstream_host": "grpc.test", "tls": {"verify": True}}
    return {
        "routes": [
            {"id": "plain", "uri": "/%s/*" % SERVICE, "upstream": {"scheme": "grpc", "nodes": {nodes["plain"].node: 1}}},
            {"id": "tls", "uri": "/%s/*" % SERVICE, "host": "tls.test", "upstream": grpcs},
            {"id": "dead", "uri": "/%s/*" % SERVICE, "host": "dead.test",
             "upstream": {"scheme": "grpc", "nodes": {dead: 1}, "timeout": {"connect": 1, "send": 5, "read": 5}}},
            {"id": "auth", "uri": "/%s/*" % SERVICE, "host": "auth.test", "plugins": {"key-auth": {}},
             "upstream": {"scheme": "grpc", "nodes": {nodes["plain"].node: 1}}},
        ],
        "consumers": [{"username": "alice", "plugins": {"key-auth": {"key": "alice-key"}}}],
    }


@pytest.fixture(scope="module")
def gw(pki, nodes, portico_module):
    port, sock = reserve_dead_port()
    tls_port = free_port()
    cfg = config(nodes, "%s:%d" % (LOOPBACK, port))
    cfg["ssls"] = [{"id": "edge", "cert": pki["edge_cert"], "key": pki["edge_key"], "snis": ["gw.test"]}]
    g = portico_module(cfg, fmt="json", upstream_ca_file=pki["ca"], listen_tls="%s:%d" % (LOOPBACK, tls_port))
    g.tls_port = tls_port
    yield g
    sock.close()


def call(channel, name, kind="unary_unary"):
    return getattr(channel, kind)("/%s/%s" % (SERVICE, name))


def h2c(gw, authority=None):
    opts = [("grpc.default_authority", authority)] if authority else []
    return grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port), options=opts)


def test_unary_with_metadata_and_trailers(gw, nodes):
    with h2c(gw) as ch:
        reply, c = call(ch, "Echo").with_call(b"ping", metadata=(("x-echo", "e1"), ("x-trailer", "t1")), timeout=10)
    assert reply == b"ping"
    assert ("x-echo", "e1") in c.initial_metadata()
    assert ("x-trailer", "t1") in c.trailing_metadata()
    assert c.code() == grpc.StatusCode.OK


def test_node_status_and_details_relayed(gw):
    with h2c(gw) as ch:
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Echo")(b"x", metadata=(("x-status", "7"),), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "asked for 7"


def test_server_streaming(gw):
    with h2c(gw) as ch:
        assert list(call(ch, "Stream", "unary_stream")(b"50", timeout=10)) == [b"msg-%d" % i for i in range(50)]


def test_client_streaming(gw):
    msgs = [b"m%d" % i for i in range(20)] + [b"x" * 300000]  # one message larger than the windows
    with h2c(gw) as ch:
        reply = call(ch, "Collect", "stream_unary")(iter(msgs), timeout=20)
    assert reply == b"21:" + b",".join(msgs)


def test_many_calls_share_upstream_connections(gw):
    with h2c(gw) as ch:
        futures = [call(ch, "Echo").future(b"c%d" % i, timeout=10) for i in range(50)]
        assert [f.result() for f in futures] == [b"c%d" % i for i in range(50)]


def test_deadline_exceeded_cancels_the_node_call(gw, nodes):
    with h2c(gw) as ch:
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Slow")(b"20", timeout=0.5, metadata=(("x-id", "dl-1"),))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: "cancelled Slow dl-1" in nodes["plain"].events(), timeout=5,
             message="the node's call was cancelled")


def test_no_node_answering_is_unavailable(gw):
    with h2c(gw, "dead.test") as ch:
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Echo")(b"x", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert e.value.details() == "upstream connection failed"


def test_no_route_is_unimplemented(gw):
    with h2c(gw) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/other.Svc/M")(b"x", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_route_auth_refusing_is_unauthenticated(gw):
    with h2c(gw, "auth.test") as ch:
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Echo")(b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "API key" in e.value.details()
        assert call(ch, "Echo")(b"ok", metadata=(("apikey", "alice-key"),), timeout=10) == b"ok"


def test_grpcs_upstream_verified(gw):
    with h2c(gw, "tls.test") as ch:
        reply, c = call(ch, "Echo").with_call(b"secure", metadata=(("x-trailer", "t2"),), timeout=10)
    assert reply == b"secure"
    assert ("x-trailer", "t2") in c.trailing_metadata()


def test_grpcs_upstream_wrong_ca_is_unavailable(pki, nodes, portico):
    port, sock = reserve_dead_port()
    try:
        g = portico(config(nodes, "%s:%d" % (LOOPBACK, port)), fmt="json", upstream_ca_file=pki["wrong"])
        with h2c(g, "tls.test") as ch:
            with pytest.raises(grpc.RpcError) as e:
                call(ch, "Echo")(b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        sock.close()


def test_tls_client_with_alpn_h2(gw, pki):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["edge_ca"].encode())
    with grpc.secure_channel("%s:%d" % (LOOPBACK, gw.tls_port), creds,
                             options=(("grpc.ssl_target_name_override", "gw.test"),)) as ch:
        assert list(call(ch, "Stream", "unary_stream")(b"3", timeout=10)) == [b"msg-0", b"msg-1", b"msg-2"]
        # The node learns the client came over TLS (an HTTP/2 stream session has no listener context of its
        # own: the scheme is the connection's).
        _, c = call(ch, "Echo").with_call(b"x", metadata=(("x-show-proto", "1"),), timeout=10)
        assert dict(c.initial_metadata()).get("x-seen-proto") == "https"
    with h2c(gw) as ch:
        _, c = call(ch, "Echo").with_call(b"x", metadata=(("x-show-proto", "1"),), timeout=10)
        assert dict(c.initial_metadata()).get("x-seen-proto") == "http"


def test_node_dying_mid_stream_is_unavailable(tmp_path, portico):
    dying = GrpcServer(tmp_path)
    try:
        g = portico({"routes": [{"id": "d", "uri": "/*", "upstream": {"scheme": "grpc", "nodes": {dying.node: 1}}}]},
                    fmt="json")
        got = []
        with h2c(g) as ch:
            with pytest.raises(grpc.RpcError) as e:
                for m in call(ch, "Die", "unary_stream")(b"", timeout=10):
                    got.append(m)
        assert got == [b"before-1", b"before-2"]
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        dying.stop()
