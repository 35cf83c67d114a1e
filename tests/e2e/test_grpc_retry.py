"""Retries on gRPC routes (docs/grpc.md): only where the node cannot have processed the call (a refused stream,
a stream above a GOAWAY's last stream id, a failed connect), never after a node may have run it."""

import grpc
import pytest

from conftest import LOOPBACK
from grpc_servers import SERVICE, GrpcServer, MisbehavingNode


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    s = GrpcServer(tmp_path_factory.mktemp("grpc-retry"))
    yield s
    s.stop()


def gateway(portico, *nodes):
    # chash on the request path: every call picks the misbehaving node first (weights break the tie).
    return portico({"routes": [{"id": "r", "uri": "/%s/*" % SERVICE, "upstream": {
        "scheme": "grpc", "nodes": {n.node: w for n, w in zip(nodes, (100, 1))}, "retries": 1}}]}, fmt="json")


def calls(gw, n=6):
    with grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port)) as ch:
        echo = ch.unary_unary("/%s/Echo" % SERVICE)
        return [echo(b"r%d" % i, timeout=10) for i in range(n)]


@pytest.mark.parametrize("mode", ["refuse", "goaway"])
def test_unprocessed_streams_are_retried_on_another_node(mode, good, portico):
    bad = MisbehavingNode(mode)
    try:
        gw = gateway(portico, bad, good)
        assert calls(gw) == [b"r%d" % i for i in range(6)]
        assert bad.requests >= 1  # it was tried, and each refusal went to the other node
        # A node draining gracefully is not failing: no connect error counted against it.
        st, body = gw.status_get("/metrics")
        assert st == 200 and b"\nportico_upstream_connect_errors_total 0\n" in body, body.decode()[:2000]
    finally:
        bad.stop()


def test_a_processed_stream_is_not_retried(good, portico):
    bad = MisbehavingNode("reset")
    try:
        gw = gateway(portico, bad, good)
        codes = []
        with grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port)) as ch:
            echo = ch.unary_unary("/%s/Echo" % SERVICE)
            for i in range(6):
                try:
                    echo(b"x", timeout=10)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as e:
                    codes.append(e.code())
        assert bad.requests >= 1
        assert codes.count(grpc.StatusCode.UNAVAILABLE) == bad.requests  # each one the bad node saw failed
        assert codes.count(grpc.StatusCode.OK) == 6 - bad.requests
    finally:
        bad.stop()
