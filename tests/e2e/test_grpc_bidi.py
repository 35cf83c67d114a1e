"""Bidirectional gRPC streaming through Portico (python3-grpcio clients and servers): the request stream and the
response stream flow at the same time, so a call where each side waits for the other's message works (a
ping-pong), over h2c and over TLS to the gateway, to grpc (h2c) and grpcs nodes; a node that ends the call
while the client is still sending, a client that half-closes early, and a deadline during a bidi call."""

import queue
import time

import grpc
import pytest

from conftest import LOOPBACK, free_port
from grpc_servers import SERVICE, GrpcServer
from tls_certs import Ca, write


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpc-bidi-pki")
    ca = Ca("grpc node CA")
    node_cert, node_key = ca.issue("grpc.test", dns=["grpc.test"], ips=["127.0.0.1"])
    edge = Ca("edge CA")
    edge_cert, edge_key = edge.issue("gw.test", dns=["gw.test"])
    return {"ca": write(d, "ca.pem", ca.pem), "node_cert": write(d, "node.crt", node_cert),
            "node_key": write(d, "node.key", node_key), "edge_ca": edge.pem, "edge_cert": edge_cert,
            "edge_key": edge_key}


@pytest.fixture(scope="module")
def nodes(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("grpc-bidi-nodes")
    plain = GrpcServer(d)
    tls = GrpcServer(d, pki["node_cert"], pki["node_key"])
    yield {"plain": plain, "tls": tls}
    plain.stop()
    tls.stop()


@pytest.fixture(scope="module")
def gw(pki, nodes, portico_module):
    tls_port = free_port()
    grpcs = {"scheme": "grpcs", "nodes": {nodes["tls"].node: 1}, "pass_host": "rewrite",
             "upstream_host": "grpc.test", "tls": {"verify": True}}
    cfg = {
        "routes": [
            # Read timeouts far below the test's waits: a ping-pong must not depend on them being long.
            {"id": "plain", "uri": "/%s/*" % SERVICE,
             "upstream": {"scheme": "grpc", "nodes": {nodes["plain"].node: 1}, "timeout": {"read": 5}}},
            {"id": "tls", "uri": "/%s/*" % SERVICE, "host": "tls.test", "upstream": grpcs},
            {"id": "short-read", "uri": "/%s/*" % SERVICE, "host": "short.test",
             "upstream": {"scheme": "grpc", "nodes": {nodes["plain"].node: 1}, "timeout": {"read": 0.5}}},
        ],
        "ssls": [{"id": "edge", "cert": pki["edge_cert"], "key": pki["edge_key"], "snis": ["gw.test"]}],
    }
    g = portico_module(cfg, fmt="json", upstream_ca_file=pki["ca"], listen_tls="%s:%d" % (LOOPBACK, tls_port))
    g.tls_port = tls_port
    yield g


def h2c(gw, authority=None):
    opts = [("grpc.default_authority", authority)] if authority else []
    return grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port), options=opts)


def ping_pong(channel):
    return channel.stream_stream("/%s/PingPong" % SERVICE)


class Requests:
    """A request iterator the test feeds one message at a time (None ends the stream: a half-close)."""

    def __init__(self):
        self.q = queue.Queue()

    def send(self, m):
        self.q.put(m)

    def __iter__(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m


def lockstep(call_fn, n, timeout, metadata=()):
    """Sends message i only after the reply to message i-1 arrived. Returns the replies and the call."""
    reqs = Requests()
    call = call_fn(iter(reqs), timeout=timeout, metadata=metadata)
    replies = []
    reqs.send(b"0")
    for i in range(n):
        replies.append(next(call))  # blocks until the node answered message i: stalls without bidi relay
        if i + 1 < n:
            reqs.send(b"%d" % (i + 1))
    reqs.send(None)
    return replies, call


@pytest.mark.parametrize("client,authority", [("h2c", None), ("h2c", "tls.test"), ("tls", None),
                                              ("tls", "tls.test")])
def test_ping_pong_20_messages(gw, pki, client, authority):
    if client == "h2c":
        ch = h2c(gw, authority)
    else:
        opts = [("grpc.ssl_target_name_override", "gw.test")]
        if authority:
            opts.append(("grpc.default_authority", authority))
        creds = grpc.ssl_channel_credentials(root_certificates=pki["edge_ca"].encode())
        ch = grpc.secure_channel("%s:%d" % (LOOPBACK, gw.tls_port), creds, options=opts)
    with ch:
        # A 30 s deadline: without the concurrent relay the first next() waits all of it.
        replies, call = lockstep(ping_pong(ch), 20, timeout=30)
        assert replies == [b"pong-%d" % i for i in range(20)]
        assert list(call) == []  # the node ends the call after the client's half-close
        assert call.code() == grpc.StatusCode.OK


def test_node_ends_call_while_client_still_sends(gw):
    with h2c(gw) as ch:
        reqs = Requests()
        call = ping_pong(ch)(iter(reqs), timeout=20, metadata=(("x-stop-after", "3"),))
        got = []
        for i in range(3):
            reqs.send(b"%d" % i)
            got.append(next(call))
        reqs.send(b"more")  # the client keeps sending: nobody reads it any more
        assert list(call) == []
        assert got == [b"pong-0", b"pong-1", b"pong-2"]
        assert call.code() == grpc.StatusCode.OK
        assert ("x-stopped", "3") in call.trailing_metadata()
        reqs.send(None)
        # The channel (and the gateway's connection) still serves calls.
        replies, call2 = lockstep(ping_pong(ch), 2, timeout=10)
        assert replies == [b"pong-0", b"pong-1"] and call2.code() == grpc.StatusCode.OK


def test_client_half_closes_early_then_reads(gw):
    with h2c(gw) as ch:
        replies = list(ping_pong(ch)(iter([b"a", b"b", b"c"]), timeout=10))
        assert replies == [b"pong-a", b"pong-b", b"pong-c"]


def test_deadline_during_bidi_call(gw):
    with h2c(gw) as ch:
        reqs = Requests()
        call = ping_pong(ch)(iter(reqs), timeout=1.5)
        reqs.send(b"x")
        assert next(call) == b"pong-x"
        # Neither side sends any more: the call's deadline ends it (the client's and the gateway's).
        with pytest.raises(grpc.RpcError) as e:
            next(call)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        reqs.send(None)
        replies, call2 = lockstep(ping_pong(ch), 3, timeout=10)
        assert replies == [b"pong-0", b"pong-1", b"pong-2"] and call2.code() == grpc.StatusCode.OK


def test_read_timeout_counts_from_the_end_of_the_request_stream(gw):
    # The node answers a client-streaming call only after the client's half-close: the client streaming for
    # longer than the route's read timeout (0.5 s) is not the node being slow.
    def paced():
        for i in range(4):
            yield b"m%d" % i
            time.sleep(0.3)  # pacing the client's stream, not synchronisation

    with h2c(gw, "short.test") as ch:
        reply = ch.stream_unary("/%s/Collect" % SERVICE)(paced(), timeout=10)
    assert reply == b"4:m0,m1,m2,m3"
