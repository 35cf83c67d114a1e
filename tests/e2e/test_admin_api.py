"""The Admin API (docs/admin-api.md) against a real etcd: every verb on every resource, validation, references,
and, in the traditional role, the proxy following what the API writes.

One single-member etcd and one control plane serve the whole module (plus one traditional instance on another
--etcd-prefix); every test uses its own resource ids.
"""

import json
import re
import subprocess
import time

import pytest

from conftest import RawConn, wait_for
from controlplane import error_paths

RESOURCES = ["routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs"]
ID_RE = re.compile(r"^\d{20}$")


def up(port=1980, host="127.0.0.1"):
    return {"type": "roundrobin", "nodes": {"%s:%d" % (host, port): 1}}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A self-signed certificate and key for a.test, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                    "-subj", "/CN=a.test", "-addext", "subjectAltName=DNS:a.test,DNS:*.a.test"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return (d / "cert.pem").read_text(), (d / "key.pem").read_text()


@pytest.fixture(scope="module")
def env(etcd_module, controlplane_module):
    e = etcd_module(size=1)
    cp = controlplane_module(e.endpoints_arg())
    return e, cp


@pytest.fixture(scope="module")
def cp(env):
    return env[1]


@pytest.fixture(scope="module")
def etcd1(env):
    return env[0]


def bodies(res, rid, certs):
    """(create body, replace body) for resource `res` with id `rid`. The create body has labels {a, b} (and a
    desc where the resource takes one); the replace body changes a field and drops labels."""
    cert, key = certs
    labels = {"a": "1", "b": "2"}
    if res == "routes":
        return ({"uri": "/%s/*" % rid, "upstream": up(), "labels": labels, "desc": "d1"},
                {"uri": "/%s/v2" % rid, "upstream": up(1981), "desc": "d2"})
    if res == "services":
        return ({"upstream": up(), "labels": labels, "desc": "d1"}, {"upstream": up(1981), "desc": "d2"})
    if res == "upstreams":
        return (dict(up(), labels=labels, desc="d1"), dict(up(1981), desc="d2"))
    if res == "consumers":
        return ({"username": rid, "labels": labels, "desc": "d1"}, {"username": rid, "desc": "d2"})
    if res == "ssls":
        return ({"cert": cert, "key": key, "snis": ["a.test"], "labels": labels},
                {"cert": cert, "key": key, "snis": ["a.test", "x.a.test"]})
    if res == "global_rules":
        return ({"plugins": {"client-control": {"max_body_size": 1024}}},
                {"plugins": {"client-control": {"max_body_size": 2048}}})
    if res == "plugin_configs":
        return ({"plugins": {"client-control": {"max_body_size": 1024}}, "labels": labels, "desc": "d1"},
                {"plugins": {"client-control": {"max_body_size": 2048}}, "desc": "d2"})
    raise AssertionError(res)


def changed_field(res):
    """(field, create value, replace value) that tells the create body from the replace body."""
    return {"routes": ("uri", None, None), "services": ("desc", "d1", "d2"), "upstreams": ("desc", "d1", "d2"),
            "consumers": ("desc", "d1", "d2"), "ssls": ("snis", ["a.test"], ["a.test", "x.a.test"]),
            "global_rules": ("plugins", {"client-control": {"max_body_size": 1024}},
                             {"client-control": {"max_body_size": 2048}}),
            "plugin_configs": ("desc", "d1", "d2")}[res]


def contains(actual, expected):
    """True when every field of `expected` is in `actual` with the same value (recursively for objects), so that
    defaults the server adds (as APISIX's schema does) do not matter."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def rid_for(res, tag):
    return "%s_%s" % (tag, res)


def check_item(reply, res, rid, status):
    st, h, body = reply
    assert st == status, "expected %d, got %r" % (status, reply)
    assert isinstance(body, dict), reply
    assert body.get("key") == "/apisix/%s/%s" % (res, rid), reply
    v = body["value"]
    if res == "consumers":
        assert v.get("username") == rid, reply
    else:
        assert v.get("id") == rid, reply
    for f in ("createdIndex", "modifiedIndex"):
        assert isinstance(body.get(f), int) and body[f] > 0, "%s: %r" % (f, reply)
    for f in ("create_time", "update_time"):
        assert isinstance(v.get(f), int) and v[f] > 1_600_000_000, "%s: %r" % (f, reply)
    assert h.get("etag", "").strip('"') == str(body["modifiedIndex"]), "ETag vs modifiedIndex: %r" % (reply,)
    assert int(h.get("x-portico-revision", "0")) >= body["modifiedIndex"], "X-Portico-Revision: %r" % (reply,)
    if res == "ssls":
        assert "key" not in v and "keys" not in v, "an SSL's private key was returned: %r" % (reply,)
    return body


def assert_not_found(cp, res, rid):
    st, _, body = cp.admin("GET", "/%s/%s" % (res, rid))
    assert st == 404 and isinstance(body, dict) and body.get("message") == "Key not found", (st, body)


# ------------------------------------------------------------------------------------------------------------
# CRUD on every resource
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("res", RESOURCES)
def test_put_create_replace_get(cp, etcd1, certs, res):
    rid = rid_for(res, "crud")
    create, replace = bodies(res, rid, certs)
    path = "/%s/%s" % (res, rid)

    c = check_item(cp.admin("PUT", path, create), res, rid, 201)
    assert c["createdIndex"] == c["modifiedIndex"], c
    v = c["value"]
    if "labels" in create:
        assert v.get("labels") == {"a": "1", "b": "2"}, c
    field, before, _ = changed_field(res)
    if before is not None:
        assert contains(v.get(field), before), c
    # The raw key in etcd is the resource, at the revision the API reported.
    kv = etcd1.get_kv("/apisix/%s/%s" % (res, rid))
    assert kv is not None and kv["mod_revision"] == c["modifiedIndex"], kv

    r = check_item(cp.admin("PUT", path, replace), res, rid, 200)
    assert r["createdIndex"] == c["createdIndex"], (c, r)
    assert r["modifiedIndex"] > c["modifiedIndex"], (c, r)
    rv = r["value"]
    assert "labels" not in rv, "PUT replaces the whole resource; labels should be gone: %r" % r
    _, _, after = changed_field(res)
    if after is not None:
        assert contains(rv.get(field), after), r
    else:
        assert rv.get("uri") == replace["uri"], r
    assert rv["create_time"] == v["create_time"], "create_time changed on update: %r -> %r" % (v, rv)
    assert rv["update_time"] >= rv["create_time"]

    g = check_item(cp.admin("GET", path), res, rid, 200)
    assert g == r, "GET differs from the PUT answer:\n%r\n%r" % (g, r)

    st, _, lst = cp.admin("GET", "/%s" % res)
    assert st == 200 and isinstance(lst, dict), lst
    mine = [it for it in lst["list"] if it["key"] == "/apisix/%s/%s" % (res, rid)]
    assert len(mine) == 1 and mine[0]["modifiedIndex"] == r["modifiedIndex"], lst
    if res == "ssls":
        assert all("key" not in it["value"] and "keys" not in it["value"] for it in lst["list"]), lst


def test_put_without_id_in_url_takes_the_body_id(cp):
    st, _, body = cp.admin("PUT", "/routes", {"id": "bodyid_r", "uri": "/bodyid", "upstream": up()})
    assert st == 201 and body["key"] == "/apisix/routes/bodyid_r", (st, body)
    st, _, body = cp.admin("PUT", "/consumers", {"username": "bodyid_c", "desc": "x"})
    assert st == 201 and body["key"] == "/apisix/consumers/bodyid_c", (st, body)
    assert "id" not in body["value"], "consumers have no id: %r" % body
    st, _, body = cp.admin("PUT", "/consumers", {"username": "bodyid_c", "desc": "y"})
    assert st == 200 and body["value"]["desc"] == "y", (st, body)


def test_update_time_moves_create_time_stays(cp):
    c = cp.admin("PUT", "/routes/times_r", {"uri": "/times", "upstream": up()})
    assert c[0] == 201, c
    ct = c[2]["value"]["create_time"]
    # The times are unix seconds: wait (on the clock, not on the server) until a new second has begun.
    wait_for(lambda: int(time.time()) > ct, timeout=3, interval=0.01, message="the next second")
    u = cp.admin("PUT", "/routes/times_r", {"uri": "/times2", "upstream": up()})
    assert u[0] == 200, u
    assert u[2]["value"]["create_time"] == ct, u
    assert u[2]["value"]["update_time"] > ct, "update_time did not move: %r" % (u,)
    p = cp.admin("PATCH", "/routes/times_r", {"desc": "x"})
    assert p[0] == 200 and p[2]["value"]["create_time"] == ct, p


@pytest.mark.parametrize("res", [r for r in RESOURCES if r not in ("consumers", "global_rules")])
def test_post_creates_with_generated_id(cp, certs, res):
    create, _ = bodies(res, "post", certs)
    st, h, body = cp.admin("POST", "/%s" % res, create)
    assert st == 201, (st, body)
    rid = body["value"].get("id")
    assert isinstance(rid, str) and ID_RE.match(rid), "POST id is not a 20-digit number: %r" % body
    check_item((st, h, body), res, rid, 201)
    g = check_item(cp.admin("GET", "/%s/%s" % (res, rid)), res, rid, 200)
    assert g["modifiedIndex"] == body["modifiedIndex"]
    # A second POST gets another id.
    st2, _, body2 = cp.admin("POST", "/%s" % res, create)
    assert st2 == 201 and body2["value"]["id"] != rid and ID_RE.match(body2["value"]["id"]), body2


def test_post_not_for_consumers_405_with_allow(cp):
    st, h, body = cp.admin("POST", "/consumers", {"username": "postc", "desc": "x"})
    assert st == 405, (st, body)
    assert "allow" in h and "PUT" in h["allow"] and "POST" not in h["allow"].replace(" ", "").split(","), h
    assert isinstance(body, dict) and body.get("error_msg"), body
    assert_not_found(cp, "consumers", "postc")


def test_post_not_for_global_rules_405_with_allow(cp):
    # APISIX refuses POST on global rules too (their ids are chosen by the operator).
    before = cp.admin("GET", "/global_rules")[2]["total"]
    st, h, body = cp.admin("POST", "/global_rules", {"plugins": {"client-control": {"max_body_size": 10}}})
    assert st == 405, (st, body)
    assert "POST" not in h["allow"].replace(" ", "").split(","), h
    assert cp.admin("GET", "/global_rules")[2]["total"] == before


@pytest.mark.parametrize("res", RESOURCES)
def test_patch_merge_null_removes(cp, certs, res):
    rid = rid_for(res, "patch")
    create, _ = bodies(res, rid, certs)
    path = "/%s/%s" % (res, rid)
    c = check_item(cp.admin("PUT", path, create), res, rid, 201)
    if res == "global_rules":
        # No labels on a global rule: merge inside plugins, and null removes a field of the plugin's conf.
        p = check_item(cp.admin("PATCH", path, {"plugins": {"client-control": {"max_body_size": 4096}}}),
                       res, rid, 200)
        assert p["value"]["plugins"] == {"client-control": {"max_body_size": 4096}}, p
        p = check_item(cp.admin("PATCH", path, {"plugins": {"client-control": {"max_body_size": None}}}),
                       res, rid, 200)
        assert p["value"]["plugins"] == {"client-control": {}}, p
    else:
        patch = {"labels": {"a": None, "c": "3"}}
        if "desc" in create:
            patch["desc"] = None
        p = check_item(cp.admin("PATCH", path, patch), res, rid, 200)
        v = p["value"]
        assert v.get("labels") == {"b": "2", "c": "3"}, "objects merge, null removes a key: %r" % p
        assert "desc" not in v, "null removes a field: %r" % p
        # Everything else is kept.
        for k, val in create.items():
            if k not in ("labels", "desc", "key"):
                assert contains(v.get(k), val), "PATCH lost field %s: %r" % (k, p)
        p2 = check_item(cp.admin("PATCH", path, {"labels": None}), res, rid, 200)
        assert "labels" not in p2["value"], p2
        p = p2
    assert p["createdIndex"] == c["createdIndex"] and p["modifiedIndex"] > c["modifiedIndex"], (c, p)
    assert p["value"]["create_time"] == c["value"]["create_time"]
    g = check_item(cp.admin("GET", path), res, rid, 200)
    assert g == p, (g, p)


def test_patch_missing_resource_404(cp):
    st, _, body = cp.admin("PATCH", "/routes/patch_missing", {"desc": "x"})
    assert st == 404, (st, body)
    assert_not_found(cp, "routes", "patch_missing")


def test_patch_sub_paths(cp):
    rid = "subpath_r"
    c = cp.admin("PUT", "/routes/%s" % rid, {"uri": "/sub", "methods": ["GET"],
                                               "upstream": {"type": "roundrobin",
                                                            "nodes": {"127.0.0.1:1980": 1, "127.0.0.1:1981": 1}}})
    assert c[0] == 201, c
    p = cp.admin("PATCH", "/routes/%s/upstream/nodes" % rid, {"127.0.0.1:1982": 2})
    assert p[0] == 200, p
    assert p[2]["value"]["upstream"]["nodes"] == {"127.0.0.1:1982": 2}, "a sub-path is replaced, not merged: %r" % (p,)
    assert p[2]["value"]["upstream"]["type"] == "roundrobin" and p[2]["value"]["uri"] == "/sub", p
    m = cp.admin("PATCH", "/routes/%s/methods" % rid, ["GET", "POST"])
    assert m[0] == 200 and m[2]["value"]["methods"] == ["GET", "POST"], m
    assert m[2]["modifiedIndex"] > p[2]["modifiedIndex"]
    # An invalid value at a sub-path is refused and changes nothing.
    bad = cp.admin("PATCH", "/routes/%s/methods" % rid, ["FETCH"])
    assert bad[0] == 400 and "methods[0]" in error_paths(bad[2]), bad
    g = cp.admin("GET", "/routes/%s" % rid)
    assert g[2]["value"]["methods"] == ["GET", "POST"] and g[2]["modifiedIndex"] == m[2]["modifiedIndex"], g


@pytest.mark.parametrize("res", RESOURCES)
def test_delete(cp, etcd1, certs, res):
    rid = rid_for(res, "del")
    create, _ = bodies(res, rid, certs)
    check_item(cp.admin("PUT", "/%s/%s" % (res, rid), create), res, rid, 201)
    st, h, body = cp.admin("DELETE", "/%s/%s" % (res, rid))
    assert st == 200, (st, body)
    assert body == {"deleted": rid, "key": "/apisix/%s/%s" % (res, rid)}, body
    assert int(h.get("x-portico-revision", "0")) == etcd1.revision(), h
    assert_not_found(cp, res, rid)
    assert etcd1.get("/apisix/%s/%s" % (res, rid)) is None
    st, _, body = cp.admin("DELETE", "/%s/%s" % (res, rid))
    assert st == 404, (st, body)
    st, _, lst = cp.admin("GET", "/%s" % res)
    assert st == 200 and all(it["key"] != "/apisix/%s/%s" % (res, rid) for it in lst["list"]), lst


def test_list_in_key_order_and_paging(cp):
    for i in range(7):
        assert cp.admin("PUT", "/routes/page_%d" % i, {"uri": "/page/%d" % i, "upstream": up()})[0] == 201
    st, h, full = cp.admin("GET", "/routes")
    assert st == 200 and set(full) >= {"total", "list"}, full
    assert int(h.get("x-portico-revision", "0")) >= max(it["modifiedIndex"] for it in full["list"]), h
    keys = [it["key"] for it in full["list"]]
    assert full["total"] == len(keys) >= 7, full["total"]
    assert keys == sorted(keys, key=lambda k: k.encode()), "list not in key order: %r" % keys
    assert {"/apisix/routes/page_%d" % i for i in range(7)} <= set(keys)
    for it in full["list"]:
        assert set(it) >= {"key", "value", "createdIndex", "modifiedIndex"}, it
    paged = []
    page = 1
    while True:
        st, _, pg = cp.admin("GET", "/routes?page=%d&page_size=3" % page)
        assert st == 200 and pg["total"] == full["total"], pg
        assert len(pg["list"]) <= 3
        if not pg["list"]:
            break
        paged += [it["key"] for it in pg["list"]]
        if len(pg["list"]) < 3:
            break
        page += 1
        assert page < 1000
    assert paged == keys, "pages do not add up to the list:\n%r\n%r" % (paged, keys)
    st, _, pg = cp.admin("GET", "/routes?page=2&page_size=3")
    assert [it["key"] for it in pg["list"]] == keys[3:6], pg


# ------------------------------------------------------------------------------------------------------------
# Validation: 400, errors[].path naming the field, nothing written
# ------------------------------------------------------------------------------------------------------------

def test_invalid_node_port_named_and_nothing_written(cp, etcd1):
    body = {"uri": "/v", "upstream": {"type": "roundrobin",
                                      "nodes": [{"host": "127.0.0.1", "port": 70000, "weight": 1}]}}
    st, _, err = cp.admin("PUT", "/routes/val_port", body)
    assert st == 400, (st, err)
    assert "upstream.nodes[0].port" in error_paths(err), err
    assert isinstance(err.get("error_msg"), str) and err["error_msg"], err
    assert_not_found(cp, "routes", "val_port")
    assert etcd1.get("/apisix/routes/val_port") is None


def test_invalid_update_keeps_old_value(cp, etcd1):
    c = cp.admin("PUT", "/routes/val_keep", {"uri": "/keep", "methods": ["GET"], "upstream": up()})
    assert c[0] == 201, c
    rev0 = etcd1.revision()
    st, _, err = cp.admin("PUT", "/routes/val_keep", {"uri": "/keep2", "methods": ["FETCH"], "upstream": up()})
    assert st == 400 and "methods[0]" in error_paths(err), (st, err)
    st, _, err = cp.admin("PATCH", "/routes/val_keep", {"methods": ["GET", "FETCH"]})
    assert st == 400 and "methods[1]" in error_paths(err), (st, err)
    g = cp.admin("GET", "/routes/val_keep")
    assert g[0] == 200 and g[2]["value"]["uri"] == "/keep" and g[2]["modifiedIndex"] == c[2]["modifiedIndex"], g
    assert etcd1.revision() == rev0, "a rejected write changed etcd"


INVALID = [
    ("routes", {"uri": 5, "upstream": up()}, "uri"),
    ("services", {"upstream": {"type": "nope", "nodes": {"127.0.0.1:1980": 1}}}, "upstream.type"),
    ("upstreams", {"type": "roundrobin", "nodes": [{"host": "127.0.0.1", "port": 70000, "weight": 1}]},
     "nodes[0].port"),
    ("consumers", {"username": "inv_consumers", "desc": 5}, "desc"),
    ("ssls", "SSL", "snis"),
    ("global_rules", {"plugins": 5}, "plugins"),
    ("plugin_configs", {"plugins": {"client-control": {"max_body_size": -1}}}, "plugins.client-control.max_body_size"),
]


@pytest.mark.parametrize("res,body,path", INVALID, ids=[r for r, _, _ in INVALID])
def test_invalid_resource_400_names_field(cp, etcd1, certs, res, body, path):
    if body == "SSL":
        body = {"cert": certs[0], "key": certs[1], "snis": "a.test"}
    rid = "inv_%s" % res
    st, _, err = cp.admin("PUT", "/%s/%s" % (res, rid), body)
    assert st == 400, (st, err)
    assert path in error_paths(err), "expected an error at %r: %r" % (path, err)
    assert_not_found(cp, res, rid)
    assert etcd1.get("/apisix/%s/%s" % (res, rid)) is None


def test_unknown_field_400(cp):
    st, _, err = cp.admin("PUT", "/routes/val_unknown", {"uri": "/u", "upstream": up(), "methdos": ["GET"]})
    assert st == 400 and "methdos" in error_paths(err), (st, err)
    assert_not_found(cp, "routes", "val_unknown")


def test_invalid_json_400(cp, etcd1):
    rev0 = etcd1.revision()
    for raw in (b'{"uri": "/j", "upstream": ', b"not json", b'{"uri": "/j"} trailing', b""):
        st, _, err = cp.admin("PUT", "/routes/val_json", raw)
        assert st == 400, (raw, st, err)
        assert isinstance(err, dict) and err.get("error_msg"), (raw, err)
    st, _, err = cp.admin("PUT", "/routes/val_json", [1, 2])
    assert st == 400, (st, err)
    assert_not_found(cp, "routes", "val_json")
    assert etcd1.revision() == rev0


def test_body_id_differs_from_url_400(cp):
    st, _, err = cp.admin("PUT", "/routes/val_idA", {"id": "val_idB", "uri": "/i", "upstream": up()})
    assert st == 400 and isinstance(err, dict) and err.get("error_msg"), (st, err)
    assert_not_found(cp, "routes", "val_idA")
    assert_not_found(cp, "routes", "val_idB")
    st, _, err = cp.admin("PUT", "/consumers/val_cA", {"username": "val_cB"})
    assert st == 400, (st, err)
    assert_not_found(cp, "consumers", "val_cA")
    # The same id in both places is fine.
    assert cp.admin("PUT", "/routes/val_idC", {"id": "val_idC", "uri": "/i", "upstream": up()})[0] == 201


def test_unknown_plugin_400(cp):
    st, _, err = cp.admin("PUT", "/routes/val_plugin", {"uri": "/p", "upstream": up(),
                                                          "plugins": {"no-such-plugin": {}}})
    assert st == 400 and "no-such-plugin" in json.dumps(err), (st, err)
    assert_not_found(cp, "routes", "val_plugin")
    st, _, err = cp.admin("PUT", "/global_rules/val_plugin", {"plugins": {"no-such-plugin": {}}})
    assert st == 400 and "no-such-plugin" in json.dumps(err), (st, err)
    assert_not_found(cp, "global_rules", "val_plugin")


def test_unknown_resource_type_404_and_body_limit_413(cp):
    st, _, err = cp.admin("GET", "/nothings")
    assert st == 404, (st, err)
    st, _, err = cp.admin("PUT", "/nothings/1", {"a": 1})
    assert st == 404, (st, err)
    # A body over 4 MiB: the head alone announces it, and the answer may come before the body is sent (the
    # server need not read 4 MiB it will refuse), so send the head, then as much body as it takes.
    big = json.dumps({"uri": "/big", "upstream": up(), "desc": "x" * (4 * 1024 * 1024 + 10)}).encode()
    with RawConn(cp.admin_port) as c:
        c.send("PUT /apisix/admin/routes/val_big HTTP/1.1\r\nHost: a\r\nX-API-KEY: %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (cp.admin_key, len(big)))
        try:
            for off in range(0, len(big), 65536):
                got = c.read_available(timeout=0.001 if off else 0.2)
                if got:
                    c.buf += got
                    break
                c.settimeout(10)
                c.send(big[off:off + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.settimeout(10)
        resp = c.read_response()
    assert resp.status == 413, resp
    assert_not_found(cp, "routes", "val_big")


# ------------------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------------------

def test_missing_references_400(cp, etcd1):
    assert cp.admin("PUT", "/upstreams/ref_up", up())[0] == 201
    assert cp.admin("PUT", "/services/ref_svc", {"upstream_id": "ref_up"})[0] == 201
    assert cp.admin("PUT", "/plugin_configs/ref_pc",
                    {"plugins": {"client-control": {"max_body_size": 10}}})[0] == 201
    # Existing references are accepted...
    for rid, extra in (("ref_ok_up", {"upstream_id": "ref_up"}), ("ref_ok_svc", {"service_id": "ref_svc"}),
                       ("ref_ok_pc", {"upstream_id": "ref_up", "plugin_config_id": "ref_pc"})):
        r = cp.admin("PUT", "/routes/%s" % rid, dict({"uri": "/%s" % rid}, **extra))
        assert r[0] == 201, r
    # ...missing ones are not, and nothing is written.
    rev0 = etcd1.revision()
    cases = [("routes", "ref_bad_up", {"uri": "/b1", "upstream_id": "nope_up"}, "nope_up"),
             ("routes", "ref_bad_svc", {"uri": "/b2", "service_id": "nope_svc"}, "nope_svc"),
             ("routes", "ref_bad_pc", {"uri": "/b3", "upstream": up(), "plugin_config_id": "nope_pc"}, "nope_pc"),
             ("services", "ref_bad_svc_up", {"upstream_id": "nope_up2"}, "nope_up2")]
    for res, rid, body, missing in cases:
        st, _, err = cp.admin("PUT", "/%s/%s" % (res, rid), body)
        assert st == 400, (rid, st, err)
        assert missing in json.dumps(err), "the error should name the missing %r: %r" % (missing, err)
        assert_not_found(cp, res, rid)
    # A PATCH that makes a reference dangle is refused too.
    st, _, err = cp.admin("PATCH", "/routes/ref_ok_up", {"upstream_id": "nope_up3"})
    assert st == 400 and "nope_up3" in json.dumps(err), (st, err)
    assert cp.admin("GET", "/routes/ref_ok_up")[2]["value"]["upstream_id"] == "ref_up"
    assert etcd1.revision() == rev0, "a rejected write changed etcd"


def test_delete_referenced_resource_400_names_user(cp):
    assert cp.admin("PUT", "/upstreams/refd_up1", up())[0] == 201
    assert cp.admin("PUT", "/upstreams/refd_up2", up())[0] == 201
    assert cp.admin("PUT", "/plugin_configs/refd_pc", {"plugins": {"client-control": {"max_body_size": 10}}})[0] == 201
    assert cp.admin("PUT", "/routes/refd_r1", {"uri": "/refd1", "upstream_id": "refd_up1",
                                              "plugin_config_id": "refd_pc"})[0] == 201
    assert cp.admin("PUT", "/services/refd_s1", {"upstream_id": "refd_up2"})[0] == 201
    assert cp.admin("PUT", "/routes/refd_r2", {"uri": "/refd2", "service_id": "refd_s1"})[0] == 201

    for res, rid, user in (("upstreams", "refd_up1", "refd_r1"), ("upstreams", "refd_up2", "refd_s1"),
                           ("plugin_configs", "refd_pc", "refd_r1"), ("services", "refd_s1", "refd_r2")):
        st, _, err = cp.admin("DELETE", "/%s/%s" % (res, rid))
        assert st == 400, (res, rid, st, err)
        msg = err.get("error_msg", "") if isinstance(err, dict) else ""
        assert user in msg, "the error should name %r, the resource still using %s/%s: %r" % (user, res, rid, err)
        assert cp.admin("GET", "/%s/%s" % (res, rid))[0] == 200, "%s/%s was deleted anyway" % (res, rid)
    st, _, err = cp.admin("DELETE", "/upstreams/refd_up1")
    assert re.search(r"route \[refd_r1\]", err.get("error_msg", "")), \
        "APISIX wording 'route [id] is still using it': %r" % err

    # Once the users are gone, the deletes succeed.
    assert cp.admin("DELETE", "/routes/refd_r1")[0] == 200
    assert cp.admin("DELETE", "/upstreams/refd_up1")[0] == 200
    assert cp.admin("DELETE", "/plugin_configs/refd_pc")[0] == 200
    assert cp.admin("DELETE", "/routes/refd_r2")[0] == 200
    assert cp.admin("DELETE", "/services/refd_s1")[0] == 200
    assert cp.admin("DELETE", "/upstreams/refd_up2")[0] == 200


def test_status_config_control_plane(cp, etcd1):
    r = cp.admin("PUT", "/routes/status_r", {"uri": "/status", "upstream": up()})
    assert r[0] in (200, 201), r
    s = cp.config_status()
    assert {"role", "revision", "stale"} <= set(s), s
    assert s["role"] == "control_plane", s
    assert s["stale"] is False, s
    assert s["revision"] >= r[2]["modifiedIndex"], s
    assert s["revision"] == etcd1.revision(), (s, etcd1.revision())
    assert cp.status_get("/readyz")[0] == 200


# ------------------------------------------------------------------------------------------------------------
# Traditional role: the proxy serves what the Admin API writes
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trad(etcd1, controlplane_module, origin_module):
    a, b = origin_module("ta", "tb")
    t = controlplane_module(etcd1.endpoints_arg(), role="traditional", etcd_prefix="/trad")
    return t, a, b


def served(t, host, target="/id"):
    r = t.get(target, host=host)
    return r.status, (r.body or b"").decode(errors="replace").strip()


def test_traditional_status(trad):
    t, _, _ = trad
    s = t.config_status()
    assert {"role", "revision", "stale", "generation", "routes", "source"} <= set(s), s
    assert s["role"] == "traditional" and s["source"] == "etcd", s
    assert s["routes"] == 0 and t.status_get("/readyz")[0] == 200, "an empty prefix is a config that serves: %r" % s
    assert s["stale"] is False, s


def test_traditional_route_lifecycle(trad, etcd1):
    t, a, b = trad
    host = "life.test"
    r = t.admin("PUT", "/routes/life", {"uri": "/id", "hosts": [host], "upstream": {"type": "roundrobin",
                                                                                      "nodes": {a.node: 1}}})
    assert r[0] == 201, r
    assert r[2]["key"] == "/trad/routes/life", "--etcd-prefix not applied: %r" % (r,)
    assert etcd1.get("/trad/routes/life") is not None and etcd1.get("/apisix/routes/life") is None
    wait_for(lambda: served(t, host) == (200, "ta"), timeout=5, message=lambda: "proxy to serve the new route "
             "from ta (last: %r)" % (served(t, host),))
    # Update: the upstream changes.
    r = t.admin("PATCH", "/routes/life/upstream/nodes", {b.node: 1})
    assert r[0] == 200, r
    wait_for(lambda: served(t, host) == (200, "tb"), timeout=5, message=lambda: "proxy to follow the update to tb "
             "(last: %r)" % (served(t, host),))
    # Delete: 404 from the proxy.
    assert t.admin("DELETE", "/routes/life")[0] == 200
    wait_for(lambda: served(t, host)[0] == 404, timeout=5, message=lambda: "proxy to answer 404 after DELETE "
             "(last: %r)" % (served(t, host),))


def test_traditional_referenced_upstream_update(trad):
    t, a, b = trad
    host = "ref.test"
    assert t.admin("PUT", "/upstreams/tu", {"type": "roundrobin", "nodes": {a.node: 1}})[0] == 201
    assert t.admin("PUT", "/routes/tr", {"uri": "/id", "host": host, "upstream_id": "tu"})[0] == 201
    wait_for(lambda: served(t, host) == (200, "ta"), timeout=5,
             message=lambda: "route via upstream_id served by ta (last %r)" % (served(t, host),))
    assert t.admin("PUT", "/upstreams/tu", {"type": "roundrobin", "nodes": {b.node: 1}})[0] == 200
    wait_for(lambda: served(t, host) == (200, "tb"), timeout=5,
             message=lambda: "route to follow its upstream to tb (last %r)" % (served(t, host),))
    gen = t.config_status()["generation"]
    assert t.config_status()["routes"] >= 1
    assert t.admin("DELETE", "/routes/tr")[0] == 200
    wait_for(lambda: served(t, host)[0] == 404, timeout=5)
    assert t.config_status()["generation"] > gen


# ------------------------------------------------------------------------------------------------------------
# Regressions found in review
# ------------------------------------------------------------------------------------------------------------

def test_integer_references_are_checked(cp):
    # The validator reads an integer id as its decimal text; the reference check must too.
    st, _, body = cp.admin("PUT", "/routes/int_ref", {"uri": "/int_ref", "upstream_id": 424242})
    assert st == 400 and "upstream_id" in error_paths(body), (st, body)
    assert_not_found(cp, "routes", "int_ref")
    st, _, body = cp.admin("PUT", "/routes/int_svc", {"uri": "/int_svc", "service_id": 7})
    assert st == 400, (st, body)  # not a 500
    assert cp.admin("PUT", "/upstreams/424242", up())[0] == 201
    assert cp.admin("PUT", "/routes/int_ref", {"uri": "/int_ref", "upstream_id": 424242})[0] == 201
    st, _, body = cp.admin("DELETE", "/upstreams/424242")
    assert st == 400 and "int_ref" in body["error_msg"], (st, body)


def test_service_cannot_drop_the_upstream_its_routes_rely_on(cp):
    assert cp.admin("PUT", "/services/rely_s", {"upstream": up()})[0] == 201
    assert cp.admin("PUT", "/routes/rely_r", {"uri": "/rely", "service_id": "rely_s"})[0] == 201
    st, _, body = cp.admin("PUT", "/services/rely_s", {"name": "no upstream now"})
    assert st == 400 and "rely_r" in body["error_msg"], (st, body)
    assert "upstream" in cp.admin("GET", "/services/rely_s")[2]["value"]


def test_delete_right_after_deleting_the_last_referrer(cp):
    # The copy used for the "still in use" scan may trail etcd by a moment; etcd has the last word.
    for i in range(30):
        assert cp.admin("PUT", "/upstreams/seq_u%d" % i, up())[0] == 201
        assert cp.admin("PUT", "/routes/seq_r%d" % i, {"uri": "/seq%d" % i, "upstream_id": "seq_u%d" % i})[0] == 201
        assert cp.admin("DELETE", "/routes/seq_r%d" % i)[0] == 200
        st, _, body = cp.admin("DELETE", "/upstreams/seq_u%d" % i)
        assert st == 200, (i, st, body)


def test_post_never_replaces(cp):
    st, _, body = cp.admin("POST", "/upstreams", up())
    assert st == 201
    # A POST body naming an existing id is refused rather than turned into a replace.
    st, _, body = cp.admin("POST", "/upstreams", dict(up(), id=body["value"]["id"]))
    assert st == 400, (st, body)


def test_head_has_no_body_and_keep_alive_survives(cp):
    import http.client
    conn = http.client.HTTPConnection(cp.admin_host, cp.admin_port, timeout=5)
    try:
        conn.request("HEAD", "/apisix/admin/routes", headers={"X-API-KEY": cp.admin_key})
        r = conn.getresponse()
        assert r.read() == b""
        conn.request("GET", "/apisix/admin/routes", headers={"X-API-KEY": cp.admin_key})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["total"] >= 0
    finally:
        conn.close()


def test_body_over_the_limit_is_413_before_it_is_read(cp):
    import http.client
    conn = http.client.HTTPConnection(cp.admin_host, cp.admin_port, timeout=5)
    try:
        conn.putrequest("PUT", "/apisix/admin/routes/big")
        conn.putheader("X-API-KEY", cp.admin_key)
        conn.putheader("Content-Length", str(2 * 1024 * 1024))  # over etcd's 1.5 MiB request limit
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413, (r.status, r.read())
    finally:
        conn.close()
    assert_not_found(cp, "routes", "big")
