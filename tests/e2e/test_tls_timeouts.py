"""Silent clients are closed (review 12, finding 4): a connection that sends nothing is closed after
--tls-handshake-timeout on the TLS listener, and after --keepalive-timeout (the idle deadline before a first
request) on the plain one. A generous margin separates "closed by the deadline" from "never closed"."""

import socket
import time

import pytest

from conftest import LOOPBACK, free_port
from gateway_modes import start_gateway
from tls_certs import make_ca, make_leaf

CA = make_ca()
LEAF = make_leaf(CA, "t.test", ["t.test"], kind="ecdsa")
DEADLINE = 1.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    port = free_port()
    g = start_gateway("file", tmp_path_factory.mktemp("tls-timeouts"), listen_tls="%s:%d" % (LOOPBACK, port),
                      tls_handshake_timeout=DEADLINE, keepalive_timeout=DEADLINE)
    g.tls_port = port
    g.put("ssls", "t", {"id": "t", "cert": LEAF.cert, "key": LEAF.key, "snis": ["t.test"]})
    yield g
    g.stop()


def closed_after(port):
    """Seconds until the server closes a connection on which nothing is sent; fails past 5 deadlines."""
    with socket.create_connection((LOOPBACK, port), timeout=DEADLINE * 5) as s:
        start = time.monotonic()
        try:
            data = s.recv(4096)
        except socket.timeout:
            pytest.fail("the connection was still open %.1f s after the accept" % (DEADLINE * 5))
        except ConnectionResetError:
            data = b""
        assert data == b"", data
        return time.monotonic() - start


def test_tls_handshake_timeout_closes_a_silent_client(gw):
    assert DEADLINE * 0.5 <= closed_after(gw.tls_port) < DEADLINE * 4


def test_plain_idle_timeout_closes_a_silent_client(gw):
    assert DEADLINE * 0.5 <= closed_after(gw.proxy.port) < DEADLINE * 4
