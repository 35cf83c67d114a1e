"""ssls options from APISIX 3.x on the TLS listener: `ssl_protocols` (the versions a name's handshakes offer)
and `client.skip_mtls_uri_regex` (the client certificate asked for, not required; a request without a verified
one answered 400 unless its path matches). Real clients: `openssl s_client -tls1_2/-tls1_3` and curl.
"""

import subprocess

import pytest

from conftest import GATEWAY_MODES, LOOPBACK, free_port, route, wait_for
from tls_certs import make_ca, make_leaf

CA = make_ca()
A = make_leaf(CA, "a.test", ["a.test"])
P13 = make_leaf(CA, "p13.test", ["p13.test"])
SK = make_leaf(CA, "sk.test", ["sk.test"])
CLIENT_CA = make_ca("Client CA")
CLIENT = make_leaf(CLIENT_CA, "client-1", client=True)
STRANGER = make_leaf(make_ca("Other CA"), "stranger", client=True)


def ssl_res(rid, cert, snis, **kw):
    v = {"id": rid, "cert": cert.cert, "key": cert.key, "snis": list(snis)}
    v.update(kw)
    return v


@pytest.fixture(scope="module", params=GATEWAY_MODES)
def gw(request, tmp_path_factory):
    from gateway_modes import start_gateway
    workdir = tmp_path_factory.mktemp("tlsopt-" + request.param)
    (workdir / "ca.crt").write_text(CA.cert)
    etcd = None if request.param == "file" else request.getfixturevalue("gateway_etcd")
    port = free_port()
    g = start_gateway(request.param, workdir / "gw", etcd=etcd, listen_tls="%s:%d" % (LOOPBACK, port))
    g.tls_port, g.workdir, g.cafile = port, workdir, str(workdir / "ca.crt")
    g.put("routes", "1", route("1", "/*", upstream=g.upstream()))
    # Any path of sk.test reaches the origin's /id (200), so a 400 can only be Portico's.
    g.put("routes", "sk", route("sk", "/*", upstream=g.upstream(), hosts=["sk.test"],
                                plugins={"proxy-rewrite": {"uri": "/id"}}))
    g.put("ssls", "a", ssl_res("a", A, ["a.test"]))
    yield g
    g.stop()


def curl(g, name, path, *extra):
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                        "--cacert", g.cafile, "--resolve", "%s:%d:%s" % (name, g.tls_port, LOOPBACK),
                        "https://%s:%d%s" % (name, g.tls_port, path), *extra],
                       capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def s_client(g, name, version):
    data = ("GET /id HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name).encode()
    p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (LOOPBACK, g.tls_port), "-ign_eof",
                        "-servername", name, version], input=data, capture_output=True, timeout=20)
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def test_ssl_protocols_limit_the_names_handshakes(gw):
    gw.put("ssls", "p13", ssl_res("p13", P13, ["p13.test"], ssl_protocols=["TLSv1.3"]))
    wait_for(lambda: "HTTP/1.1 200" in s_client(gw, "p13.test", "-tls1_3"), timeout=10)
    out = s_client(gw, "p13.test", "-tls1_2")
    assert "HTTP/1.1 200" not in out and "protocol version" in out, out
    # Another ssl, without the field, serves both versions.
    for version, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        out = s_client(gw, "a.test", version)
        assert "HTTP/1.1 200" in out and ("Protocol  : %s" % name in out or "%s," % name in out), out
    gw.delete("ssls", "p13")


@pytest.mark.parametrize("proto", ["--http1.1", "--http2"])
def test_skip_mtls_uri_regex(gw, tmp_path, proto):
    # The same check on both codecs: an HTTP/2 stream carries its connection's handshake facts.
    gw.put("ssls", "sk", ssl_res("sk", SK, ["sk.test"],
                                 client={"ca": CLIENT_CA.cert, "skip_mtls_uri_regex": ["/anything.*"]}))
    ccert, ckey = CLIENT.write(tmp_path, "client")
    scert, skey = STRANGER.write(tmp_path, "stranger")
    cert = ("--cert", str(ccert), "--key", str(ckey))
    wait_for(lambda: curl(gw, "sk.test", "/anything/x", proto)[1] == "200", timeout=10)
    assert curl(gw, "sk.test", "/other", proto)[:2] == (0, "400")
    # A path that only matches before normalization does not skip the check.
    assert curl(gw, "sk.test", "/anything/../other", "--path-as-is", proto)[:2] == (0, "400")
    assert curl(gw, "sk.test", "/anything/x", proto, *cert)[:2] == (0, "200")
    assert curl(gw, "sk.test", "/other", proto, *cert)[:2] == (0, "200")
    # A certificate presented must still verify (the handshake fails).
    rc, _, err = curl(gw, "sk.test", "/anything/x", proto, "--cert", str(scert), "--key", str(skey))
    assert rc != 0, err
    assert "client certificate was not present" in gw.log_tail(200)
    gw.delete("ssls", "sk")


def test_invalid_options_refused_with_the_field_path(gw):
    doc = gw.document()
    bad_regex = ssl_res("bad", SK, ["bad.test"],
                        client={"ca": CLIENT_CA.cert, "skip_mtls_uri_regex": ["/ok", "/a(b"]})
    doc["ssls"] = list(doc.get("ssls", [])) + [bad_regex]
    err = gw.apply_expect_error(doc)
    where = " ".join(err.paths + err.fields)
    assert "client.skip_mtls_uri_regex[1]" in where, err
    assert "invalid regular expression" in err.message + repr(err.errors), err
    doc = gw.document()
    doc["ssls"] = list(doc.get("ssls", [])) + [ssl_res("old", SK, ["old.test"], ssl_protocols=["TLSv1.1"])]
    err = gw.apply_expect_error(doc)
    assert "ssl_protocols[0]" in " ".join(err.paths + err.fields), err
    assert "TLSv1.1 is not supported" in err.message + repr(err.errors), err
