"""TLS on the control channels (docs/tls-control.md; issue 12, part C): a real etcd with client-certificate
auth, a control plane with an HTTPS Admin API and an HTTPS sync listener that also takes client certificates
in place of tokens, and data planes that verify it.

    /usr/bin/python3 -m pytest -q tests/e2e/test_tls_control.py

Certificates come from a CA made at test time (tls_certs.py).
"""

import json
import secrets
import socket
import ssl
import urllib.error
import urllib.request

import pytest

from conftest import LOOPBACK, free_port, wait_for
from tls_certs import TestCA

ORIGIN_ID = "tlsctl"


class Setup:
    pass


@pytest.fixture(scope="module")
def tc(etcd_module, controlplane_module, origin_module, tmp_path_factory):
    work = tmp_path_factory.mktemp("tlsctl")
    ca = TestCA(work / "ca")
    other = TestCA(work / "other-ca", name="Another CA")
    e = etcd_module(size=1, name="etcd-tls", tls=ca)
    assert all(u.startswith("https://") for u in e.endpoints())
    o = origin_module(ORIGIN_ID)
    server = ca.issue("control-plane", ips=[LOOPBACK], dns=["localhost"])
    tokens = {"dp-token": secrets.token_hex(12)}
    tokens_file = work / "dp-tokens"
    tokens_file.write_text("".join("%s %s\n" % kv for kv in tokens.items()))
    # The ids a client certificate may name (the CA also signs etcd's and the control plane's certificates).
    allowed_file = work / "dp-allowed"
    allowed_file.write_text("# certificate-authenticated data planes\ndp-mtls\ndp-cn-only\ndp-ip-san\n")
    sync_port = free_port()
    cp = controlplane_module(
        e.endpoints_arg(), name="cp-tls", sync_listen="%s:%d" % (LOOPBACK, sync_port),
        dp_tokens_file=str(tokens_file), sync_tls_allowed_nodes=str(allowed_file), admin_tls_cert=server.cert, admin_tls_key=server.key,
        sync_tls_cert=server.cert, sync_tls_key=server.key, sync_tls_client_ca=ca.cert,
        etcd_cacert=ca.cert, etcd_cert=e.client_cert.cert, etcd_key=e.client_cert.key)
    cp.admin_ssl_context = ca.context()
    s = Setup()
    s.ca, s.other, s.etcd, s.origin, s.cp, s.tokens = ca, other, e, o, cp, tokens
    s.server = server
    s.sync_port = sync_port
    s.url = "https://%s:%d" % (LOOPBACK, sync_port)
    s.pub = cp.state_dir / "signing.pub"
    r = cp.admin("PUT", "/routes/tls1", {"uri": "/id", "hosts": ["tls.test"],
                                         "upstream": {"type": "roundrobin", "nodes": {o.node: 1}}})
    assert r.status in (200, 201), r
    return s


def served(dp, host="tls.test"):
    wait_for(lambda: dp.served(host) == (200, ORIGIN_ID), timeout=15.0, interval=0.05,
             message=lambda: "%s to serve %s (last %r)" % (dp.name, host, dp.served(host)))


def fleet_nodes(tc):
    r = tc.cp.admin("GET", "/data_planes")
    assert r.status == 200, r
    return {it.get("node_id") for it in r.body["list"]}


def plaintext_answer(port):
    """What a plain HTTP request to `port` gets back (bytes until the server closes, at most 2 s)."""
    with socket.create_connection((LOOPBACK, port), timeout=2.0) as s:
        s.sendall(b"GET /apisix/admin/routes HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return data


def sync_get(tc, path, context):
    try:
        with urllib.request.urlopen(tc.url + "/portico/v1" + path, timeout=5.0, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_admin_api_over_tls_writes_through_etcd_with_client_certs(tc):
    r = tc.cp.admin("GET", "/routes/tls1")
    assert r.status == 200 and r.body["value"]["hosts"] == ["tls.test"], r
    # The write went to the TLS etcd (etcdctl with the client certificate reads it back).
    assert "tls.test" in tc.etcd.get("/apisix/routes/tls1")
    # A client that does not trust the CA refuses the Admin API's certificate.
    tc.cp.admin_ssl_context, trusted = ssl.create_default_context(), tc.cp.admin_ssl_context
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            tc.cp.admin("GET", "/routes")
    finally:
        tc.cp.admin_ssl_context = trusted


def test_plaintext_clients_are_refused_on_tls_ports(tc):
    for port in (tc.cp.admin_port, tc.sync_port):
        data = plaintext_answer(port)
        assert not data.startswith(b"HTTP/"), (port, data[:200])
    # etcd too: Portico's flags are required, a plain endpoint list gets nowhere (etcd's own check).
    plain = tc.etcd.endpoints()[0].replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(plain + "/health", timeout=2.0).read()


def test_data_plane_with_token_verifies_the_control_plane(tc, dataplane):
    dp = dataplane([tc.url], tc.pub, tc.tokens["dp-token"], "dp-token", cp_tls_ca=tc.ca.cert)
    served(dp)
    wait_for(lambda: "dp-token" in fleet_nodes(tc), timeout=15.0, message="dp-token in the fleet view")


def test_data_plane_with_a_client_certificate_and_no_token(tc, dataplane, tmp_path):
    cert = tc.ca.issue("dp-mtls", client=True)
    # --node-id says otherwise: the certificate names the node (docs/tls-control.md, "Node identity").
    dp = dataplane([tc.url], tc.pub, None, "claimed-name", cp_tls_ca=tc.ca.cert, cp_tls_cert=cert.cert,
                   cp_tls_key=cert.key)
    served(dp)
    wait_for(lambda: "dp-mtls" in fleet_nodes(tc), timeout=15.0, message="dp-mtls in the fleet view")
    assert "claimed-name" not in fleet_nodes(tc)
    # A certificate without a DNS subjectAltName is named by its CN.
    cn_only = tc.ca.issue("dp-cn-only", client=True, san=False)
    status, body = sync_get(tc, "/snapshot", tc.ca.context(cn_only))
    assert status == 200 and body.startswith(b"portico-snapshot 1\n"), (status, body[:200])


def test_client_certificates_refused(tc):
    # Another CA's certificate: the handshake fails.
    foreign = tc.other.issue("dp-foreign", client=True)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        sync_get(tc, "/snapshot", tc.ca.context(foreign))
    # The CA's, naming something that is not a node id: 401 with the reason.
    bad = tc.ca.issue("bad name!", client=True, san=False)
    status, body = sync_get(tc, "/snapshot", tc.ca.context(bad))
    assert status == 401 and b"not a node id" in body, (status, body)
    # Signed by the same CA, a valid node id, but not on the allow-list: 401 with the reason.
    stranger = tc.ca.issue("dp-stranger", client=True)
    status, body = sync_get(tc, "/snapshot", tc.ca.context(stranger))
    assert status == 401 and b"dp-stranger is not an allowed data plane" in body, (status, body)
    # The control plane's own certificate (same CA, DNS SAN localhost) is no data plane either.
    status, body = sync_get(tc, "/snapshot", tc.ca.context(tc.server))
    assert status == 401 and b"localhost is not an allowed data plane" in body, (status, body)
    # A subjectAltName with only an IP: its CN (allowed) is no fallback, the certificate names nothing.
    ip_only = tc.ca.issue("dp-ip-san", ips=[LOOPBACK], client=True, san=False)
    status, body = sync_get(tc, "/snapshot", tc.ca.context(ip_only))
    assert status == 401 and b"names no identity" in body, (status, body)
    # Neither a certificate nor a token (tokens are on, so the handshake passes): 401.
    status, body = sync_get(tc, "/snapshot", tc.ca.context())
    assert status == 401 and b"client certificate" in body, (status, body)
    # A token alone still works over TLS.
    req = urllib.request.Request(tc.url + "/portico/v1/snapshot",
                                 headers={"Authorization": "Bearer " + tc.tokens["dp-token"]})
    with urllib.request.urlopen(req, timeout=5.0, context=tc.ca.context()) as r:
        assert r.status == 200


def test_wrong_ca_data_plane_refuses_control_plane(tc, dataplane):
    # A new data plane (no cache) trusting another CA: never ready, the log says why.
    dp = dataplane([tc.url], tc.pub, tc.tokens["dp-token"], "dp-token", wait_ready=False,
                   cp_tls_ca=tc.other.cert)
    wait_for(lambda: "certificate" in dp.error_log().lower(), timeout=15.0,
             message=lambda: "a certificate error in the log: %s" % dp.log_tail(10))
    assert not dp.ready()
    # A plain http:// URL to the TLS port gets no answer either.
    plain = dataplane([tc.url.replace("https://", "http://")], tc.pub, tc.tokens["dp-token"], "dp-token",
                      wait_ready=False)
    assert not plain.ready()
    # With a cache: it keeps serving it while it refuses the control plane.
    good = dataplane([tc.url], tc.pub, tc.tokens["dp-token"], "dp-token", cp_tls_ca=tc.ca.cert)
    served(good)
    wait_for(lambda: good.snapshots(), timeout=10.0, message="a cached snapshot")
    good.stop()
    good.flags["cp_tls_ca"] = tc.other.cert
    good.start()
    served(good)
    st = good.config_status()
    assert st.get("source") == "cache", st
    wait_for(lambda: "certificate" in good.error_log().lower(), timeout=15.0, message="a certificate error")
