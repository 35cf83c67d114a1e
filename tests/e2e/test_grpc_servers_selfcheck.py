"""Checks of the gRPC test servers themselves (no portico involved), so the gRPC proxy tests can be trusted."""

import grpc
import pytest

from conftest import wait_for
from grpc_servers import SERVICE, GrpcServer
from tls_certs import Ca, write


def method(channel, name, kind="unary_unary"):
    return getattr(channel, kind)("/%s/%s" % (SERVICE, name))


@pytest.fixture
def plain(tmp_path):
    s = GrpcServer(tmp_path)
    yield s
    s.stop()


def test_unary_metadata_trailers_and_status(plain):
    with grpc.insecure_channel(plain.node) as ch:
        echo = method(ch, "Echo")
        reply, call = echo.with_call(b"ping", metadata=(("x-echo", "e"), ("x-trailer", "t"), ("x-id", "1")))
        assert reply == b"ping"
        assert ("x-echo", "e") in call.initial_metadata()
        assert ("x-trailer", "t") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as e:
            echo(b"x", metadata=(("x-status", "7"),))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.value.details() == "asked for 7"


def test_streams(plain):
    with grpc.insecure_channel(plain.node) as ch:
        assert list(method(ch, "Stream", "unary_stream")(b"3")) == [b"msg-0", b"msg-1", b"msg-2"]
        assert method(ch, "Collect", "stream_unary")(iter([b"a", b"b"])) == b"2:a,b"


def test_deadline_cancels_the_slow_call(plain):
    with grpc.insecure_channel(plain.node) as ch:
        with pytest.raises(grpc.RpcError) as e:
            method(ch, "Slow")(b"10", timeout=0.3, metadata=(("x-id", "s1"),))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: "cancelled Slow s1" in plain.events(), message="the server saw the cancellation")


def test_die_mid_stream(plain):
    with grpc.insecure_channel(plain.node) as ch:
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for m in method(ch, "Die", "unary_stream")(b"", timeout=10):
                got.append(m)
        assert got == [b"before-1", b"before-2"]
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    wait_for(lambda: not plain.alive(), message="the server process exited")


def test_tls_variant(tmp_path):
    ca = Ca("grpc test CA")
    cert, key = ca.issue("grpc.test", dns=["grpc.test"], ips=["127.0.0.1"])
    s = GrpcServer(tmp_path, write(tmp_path, "g.crt", cert), write(tmp_path, "g.key", key))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.pem.encode())
        with grpc.secure_channel(s.node, creds, options=(("grpc.ssl_target_name_override", "grpc.test"),)) as ch:
            assert method(ch, "Echo")(b"tls") == b"tls"
    finally:
        s.stop()
