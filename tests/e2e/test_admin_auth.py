"""Admin API access control (docs/admin-api.md "Keys"): X-API-KEY roles, the generated admin key, key files,
--allow-admin, and the loopback-only default listener."""

import os
import re
import socket

import pytest

from conftest import wait_for
from controlplane import ControlPlane, os_mode

VIEWER_KEY = "viewer-key-0123456789abcdef"


@pytest.fixture(scope="module")
def etcd1(etcd_module):
    return etcd_module(size=1)


@pytest.fixture(scope="module")
def cp(etcd1, controlplane_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    vk = d / "viewer.key"
    vk.write_text(VIEWER_KEY + "\n")
    # No --admin-key-file: the admin key is generated into STATE_DIR/admin.key.
    return controlplane_module(etcd1.endpoints_arg(), viewer_key_file=str(vk))


def up():
    return {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}


def test_missing_or_wrong_key_401(cp, etcd1):
    rev0 = etcd1.revision()
    wrong = [None, "", "nope", cp.admin_key[:-1], cp.admin_key + "x", cp.admin_key.upper() + "X"]
    for key in wrong:
        for method, path, body in (("GET", "/routes", None), ("GET", "/routes/auth_x", None),
                                   ("PUT", "/routes/auth_x", {"uri": "/x", "upstream": up()}),
                                   ("POST", "/routes", {"uri": "/x", "upstream": up()}),
                                   ("DELETE", "/routes/auth_x", None)):
            if key == "":
                r = cp.admin(method, path, body, key=None, headers={"X-API-KEY": ""})
            else:
                r = cp.admin(method, path, body, key=key)
            assert r[0] == 401, "%s %s with key %r: %r" % (method, path, key, r)
            assert isinstance(r[2], dict) and r[2].get("error_msg"), r
    assert etcd1.revision() == rev0, "an unauthenticated request wrote to etcd"
    # The right key works (the same request, so 401 above was about the key).
    assert cp.admin("PUT", "/routes/auth_x", {"uri": "/x", "upstream": up()})[0] == 201


def test_viewer_reads_but_cannot_write(cp, etcd1):
    c = cp.admin("PUT", "/routes/auth_v", {"uri": "/v", "upstream": up(), "desc": "orig"})
    assert c[0] == 201, c
    st, _, body = cp.admin("GET", "/routes/auth_v", key=VIEWER_KEY)
    assert st == 200 and body["value"]["desc"] == "orig", (st, body)
    st, _, body = cp.admin("GET", "/routes", key=VIEWER_KEY)
    assert st == 200 and body["total"] >= 1, (st, body)
    rev0 = etcd1.revision()
    writes = [("PUT", "/routes/auth_v", {"uri": "/v", "upstream": up(), "desc": "viewer"}),
              ("PUT", "/routes/auth_v_new", {"uri": "/v2", "upstream": up()}),
              ("POST", "/routes", {"uri": "/v3", "upstream": up()}),
              ("PATCH", "/routes/auth_v", {"desc": "viewer"}),
              ("PATCH", "/routes/auth_v/desc", "viewer"),
              ("DELETE", "/routes/auth_v", None)]
    for method, path, body in writes:
        if isinstance(body, str):
            body = '"%s"' % body
        r = cp.admin(method, path, body, key=VIEWER_KEY)
        assert r[0] == 403, "viewer %s %s: %r" % (method, path, r)
        assert isinstance(r[2], dict) and r[2].get("error_msg"), r
    assert etcd1.revision() == rev0, "a viewer's write reached etcd"
    g = cp.admin("GET", "/routes/auth_v")
    assert g[0] == 200 and g[2]["value"]["desc"] == "orig" and g[2]["modifiedIndex"] == c[2]["modifiedIndex"], g
    assert cp.admin("GET", "/routes/auth_v_new")[0] == 404


def test_generated_admin_key_file(cp):
    path = cp.state_dir / "admin.key"
    assert path.is_file(), "no generated key at %s" % path
    assert os_mode(path) == 0o600, "mode %o, want 600" % os_mode(path)
    key = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key), "want a random 32-byte key in hex, got %d chars" % len(key)
    log = cp.error_log()
    assert str(path) in log or str(path.resolve()) in log, "the log does not name the key file:\n%s" % cp.log_tail()
    assert key not in log, "the log contains the admin key"
    # And the key is the one the API takes.
    assert cp.admin("GET", "/routes", key=key)[0] == 200


def test_missing_admin_key_file_is_generated_there(etcd1, controlplane, tmp_path):
    kf = tmp_path / "keys" / "admin-custom.key"
    kf.parent.mkdir()
    c = controlplane(etcd1.endpoints_arg(), admin_key_file=str(kf))
    assert kf.is_file() and os_mode(kf) == 0o600, kf
    key = kf.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key), key
    assert not (c.state_dir / "admin.key").exists(), "the key went to STATE_DIR instead of --admin-key-file"
    assert key not in c.error_log()
    assert str(kf) in c.error_log(), "the log does not name the key file"
    assert c.admin("GET", "/routes", key=key)[0] == 200


def test_given_admin_key_file_is_used(etcd1, controlplane, tmp_path):
    kf = tmp_path / "given.key"
    key = "given-admin-key-0123456789"
    kf.write_text(key + "\n")
    os.chmod(kf, 0o600)
    c = controlplane(etcd1.endpoints_arg(), admin_key_file=str(kf))
    assert kf.read_text() == key + "\n", "the given key file was rewritten"
    assert not (c.state_dir / "admin.key").exists()
    assert c.admin("GET", "/routes", key=key)[0] == 200
    assert c.admin("GET", "/routes", key=key[:-1])[0] == 401
    assert key not in c.error_log(), "the log contains the admin key"


@pytest.mark.parametrize("which", ["admin", "viewer"])
def test_short_key_refused_at_start(etcd1, tmp_path, which):
    kf = tmp_path / ("%s.key" % which)
    kf.write_text("short-key-15chr\n")  # 15 characters: one too few
    os.chmod(kf, 0o600)
    flags = {"admin_key_file": str(kf)} if which == "admin" else {"viewer_key_file": str(kf)}
    c = ControlPlane(tmp_path / "cp", etcd1.endpoints_arg(), **flags)
    code, log = c.run_expect_exit(timeout=15)
    assert code != 0, "portico exited 0 with a 15-character key:\n%s" % log
    assert str(kf) in log, "the message should name the key file:\n%s" % log
    assert re.search(r"16|short", log, re.I), "the message should say the key is too short:\n%s" % log
    assert "short-key-15chr" not in log, "the refused key was logged"


def test_allow_admin_excluding_loopback_403(etcd1, controlplane):
    c = controlplane(etcd1.endpoints_arg(), allow_admin="10.0.0.0/8,192.168.0.0/16")
    rev0 = etcd1.revision()
    for method, path, body in (("GET", "/routes", None),
                               ("PUT", "/routes/auth_allow", {"uri": "/a", "upstream": up()})):
        r = c.admin(method, path, body)  # the right admin key
        assert r[0] == 403, "%s %s from 127.0.0.1 outside --allow-admin: %r" % (method, path, r)
        assert isinstance(r[2], dict) and r[2].get("error_msg"), r
    assert etcd1.revision() == rev0
    assert etcd1.get("/apisix/routes/auth_allow") is None


def _listeners(port):
    """[(family, ip_hex)] of the sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    out = []
    for fam, path in (("ipv4", "/proc/net/tcp"), ("ipv6", "/proc/net/tcp6")):
        try:
            lines = open(path).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            ip, _, p = f[1].partition(":")
            if int(p, 16) == port and f[3] == "0A":
                out.append((fam, ip))
    return out


def test_admin_listener_loopback_by_default(etcd1, controlplane):
    """Without --admin-listen the Admin API listens on 127.0.0.1:9180 only."""
    def port_free():
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", 9180))
            return True
        except OSError:
            return False
        finally:
            s.close()

    wait_for(port_free, timeout=10, message="port 9180 to be free (something else holds it: %r); this test needs "
             "it to check the default --admin-listen" % (_listeners(9180),))
    c = controlplane(etcd1.endpoints_arg(), admin_listen=None)
    assert c.admin_port == 9180
    socks = _listeners(9180)
    assert socks == [("ipv4", "0100007F")], "listeners on :9180 should be 127.0.0.1 only, got %r" % socks
    r = c.admin("GET", "/routes", key=None)
    assert r[0] == 401, r
    assert c.admin("GET", "/routes")[0] == 200
