"""Hostile or absurd input to the Admin API and to etcd (issue 9, items 3, 8 and 13): deeply nested JSON in
every body and in a hand-written etcd value, duplicate keys, ids "." and "..", float ports, and durations that
would overflow the nanosecond clock. Each is refused with 400 and the field's path; the process survives and
keeps serving (in the traditional role, its proxy too).

One single-member etcd, one control plane and one traditional instance (on another --etcd-prefix) serve the
module; every test uses its own resource ids.
"""

import json

import pytest

from conftest import make_config, route, wait_for
from controlplane import error_paths

# The issue's reproducer: a ~390 KiB body nesting 200k arrays. Parsing is iterative in nlohmann, but copying,
# dumping and merging such a tree recursed once per level and overflowed the stack (SIGSEGV).
DEPTH = 200000
MAX_NESTING = 64


def deep_lists(depth=DEPTH):
    return "[" * depth + "1" + "]" * depth


def deep_objects(depth):
    return '{"a":' * depth + "1" + "}" * depth


def up(node):
    return {"type": "roundrobin", "nodes": {node: 1}}


@pytest.fixture(scope="module")
def env(etcd_module, controlplane_module, origin_module):
    e = etcd_module(size=1)
    cp = controlplane_module(e.endpoints_arg())
    origin = origin_module("hard")
    trad = controlplane_module(e.endpoints_arg(), role="traditional", etcd_prefix="/hard")
    return e, cp, trad, origin


@pytest.fixture(scope="module")
def etcd1(env):
    return env[0]


@pytest.fixture(scope="module")
def cp(env):
    return env[1]


@pytest.fixture(scope="module")
def trad(env):
    return env[2], env[3]


def alive(p):
    """The process runs and its Admin API answers."""
    assert p.running(), "%s died:\n%s" % (p.describe(), p.log_tail())
    st, _, body = p.admin("GET", "/routes")
    assert st == 200, (st, body)


def reasons(body):
    return [e.get("reason", "") for e in (body.get("errors") or [])] if isinstance(body, dict) else []


def assert_refused(reply, path, reason):
    st, _, body = reply
    assert st == 400, reply
    assert path in error_paths(body), "expected an error at %r: %r" % (path, body)
    assert any(reason in r for r in reasons(body)), "expected %r among %r" % (reason, body)


def assert_absent(p, res, rid):
    st, _, body = p.admin("GET", "/%s/%s" % (res, rid))
    assert st == 404, "%s/%s should not exist: %r" % (res, rid, body)


# ------------------------------------------------------------------------------------------------------------
# Item 3: deep JSON
# ------------------------------------------------------------------------------------------------------------

def test_deep_put_and_post_bodies_are_refused(cp):
    body = '{"uri":"/deep","upstream":%s,"labels":%s}' % (json.dumps(up("127.0.0.1:1980")), deep_lists())
    assert 350 * 1024 < len(body) < 1024 * 1024
    for method, path in (("PUT", "/routes/deep"), ("POST", "/routes"), ("PUT", "/upstreams/deep"),
                         ("PUT", "/consumers/deep")):
        r = cp.admin(method, path, body)
        assert r[0] == 400, (method, path, r[0], r[1], str(r[2])[:300])
        assert "nested deeper than 64 levels" in r[2]["error_msg"], r[2]["error_msg"][:300]
        assert r[2]["error_msg"].startswith("invalid request body: labels[0]"), r[2]["error_msg"][:200]
        alive(cp)
    assert_absent(cp, "routes", "deep")
    # Objects nest as lists do.
    r = cp.admin("PUT", "/routes/deep", '{"uri":"/deep","labels":%s}' % deep_objects(100000))
    assert r[0] == 400 and "nested deeper than 64 levels" in r[2]["error_msg"], r[:2]
    alive(cp)


def test_nesting_bound_is_exact(cp):
    # Node metadata is free-form, so it can reach the bound: upstream (1) > nodes (2) > node (3) > metadata (4)
    # > lists (5 to depth).
    def upstream(depth):
        meta = '{"m":%s}' % deep_lists(depth - 4)
        return '{"type":"roundrobin","nodes":[{"host":"127.0.0.1","port":1980,"weight":1,"metadata":%s}]}' % meta
    st, _, body = cp.admin("PUT", "/upstreams/bound64", upstream(MAX_NESTING))
    assert st == 201, (st, body)
    r = cp.admin("PUT", "/upstreams/bound65", upstream(MAX_NESTING + 1))
    assert r[0] == 400 and "nested deeper than 64 levels" in r[2]["error_msg"], r[:3]
    assert_absent(cp, "upstreams", "bound65")
    assert cp.admin("DELETE", "/upstreams/bound64")[0] == 200


def test_deep_patch_is_refused(cp):
    assert cp.admin("PUT", "/routes/dpatch", {"uri": "/dpatch", "upstream": up("127.0.0.1:1980")})[0] == 201
    # A merge patch 200k levels deep (merge_patch recursed per level).
    r = cp.admin("PATCH", "/routes/dpatch", '{"labels":%s}' % deep_lists())
    assert r[0] == 400 and "nested deeper than 64 levels" in r[2]["error_msg"], r[:2]
    r = cp.admin("PATCH", "/routes/dpatch", '{"labels":%s}' % deep_objects(100000))
    assert r[0] == 400 and "nested deeper than 64 levels" in r[2]["error_msg"], r[:2]
    # The same body at a sub-path.
    r = cp.admin("PATCH", "/routes/dpatch/labels", deep_lists())
    assert r[0] == 400 and "nested deeper than 64 levels" in r[2]["error_msg"], r[:2]
    # A sub-path adds its depth to the body's. The value at the 54th segment is at level 55 (the route is level
    # 1), so a body 10 levels deep reaches the bound exactly, and 11 levels pass it.
    sub = "/upstream/nodes/0/metadata" + "/a" * 50
    assert cp.admin("PATCH", "/routes/dpatch/upstream/nodes",
                    [{"host": "127.0.0.1", "port": 1980, "weight": 1, "metadata": {}}])[0] == 200
    r = cp.admin("PATCH", "/routes/dpatch" + sub, deep_objects(10))
    assert r[0] == 200, r[:3]
    r = cp.admin("PATCH", "/routes/dpatch" + sub, deep_objects(11))
    assert r[0] == 400 and "deeper than 64 levels" in r[2]["error_msg"], r[:3]
    # A sub-path alone deeper than the bound.
    r = cp.admin("PATCH", "/routes/dpatch" + "/labels" * 70, "1")
    assert r[0] == 400 and "deeper than a resource may nest" in r[2]["error_msg"], r[:3]
    alive(cp)
    st, _, body = cp.admin("GET", "/routes/dpatch")
    assert st == 200 and "labels" not in body["value"], body
    assert cp.admin("DELETE", "/routes/dpatch")[0] == 200


def test_deep_value_written_into_etcd_by_hand_is_skipped(cp, etcd1):
    """A hand-written value nesting 200k levels must not crash the control plane: it is logged, skipped and
    listed in /status/config, and the rest keeps working."""
    value = '{"uri":"/handdeep","upstream":%s,"labels":%s}' % (json.dumps(up("127.0.0.1:1980")), deep_lists())
    # Through stdin: a 390 KiB command-line argument is over Linux's limit for one argument.
    etcd1.etcdctl("put", "--", "/apisix/routes/handdeep", input=value.encode())
    etcd1.etcdctl("put", "--", "/apisix/routes/handdup",
                  input=b'{"uri":"/a","uri":"/b","upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}}')

    def rejected():
        return {r["key"]: r["reason"] for r in cp.config_status().get("rejected_keys", [])}
    wait_for(lambda: "/apisix/routes/handdeep" in rejected(), timeout=10,
             message=lambda: "the deep key to be listed as rejected (%r)" % (rejected(),))
    # Reading it back does not crash either (dumping it recursed per level); it is shown as a string, as any
    # value that is not JSON.
    st, _, body = cp.admin("GET", "/routes/handdeep")
    assert st == 200 and isinstance(body["value"], str), (st, str(body)[:200])
    assert cp.running(), cp.log_tail()
    assert "nested deeper than 64 levels" in rejected()["/apisix/routes/handdeep"], rejected()
    wait_for(lambda: "/apisix/routes/handdup" in rejected(), timeout=10,
             message=lambda: "the duplicate-key value to be listed as rejected (%r)" % (rejected(),))
    assert 'duplicate key "uri"' in rejected()["/apisix/routes/handdup"], rejected()
    st, _, body = cp.admin("GET", "/routes")
    assert st == 200 and body["total"] >= 2, str(body)[:200]
    # PATCH refuses to merge onto an unusable stored value (it would drop every field it does not name);
    # PUT replaces it whole and fixes the key.
    st, _, body = cp.admin("PATCH", "/routes/handdeep", {"uri": "/handdeep", "upstream": up("127.0.0.1:1980")})
    assert st == 409 and "replace it whole with PUT" in body["error_msg"], (st, body)
    st, _, body = cp.admin("PUT", "/routes/handdeep", {"uri": "/handdeep", "upstream": up("127.0.0.1:1980")})
    assert st == 200, (st, body)
    wait_for(lambda: "/apisix/routes/handdeep" not in rejected(), timeout=10)
    alive(cp)
    for rid in ("handdeep", "handdup"):
        assert cp.admin("DELETE", "/routes/%s" % rid)[0] == 200


def test_traditional_proxy_survives_deep_bodies(trad, etcd1):
    t, origin = trad
    host = "deep.test"
    assert t.admin("PUT", "/routes/keep", {"uri": "/id", "host": host, "upstream": up(origin.node)})[0] == 201

    def served():
        r = t.get("/id", host=host)
        return r.status, (r.body or b"").decode(errors="replace").strip()
    wait_for(lambda: served() == (200, "hard"), timeout=5, message=lambda: "route served (last %r)" % (served(),))
    r = t.admin("PUT", "/routes/deep", '{"uri":"/deep","labels":%s}' % deep_lists())
    assert r[0] == 400, r[:2]
    r = t.admin("PATCH", "/routes/keep", '{"labels":%s}' % deep_lists())
    assert r[0] == 400, r[:2]
    etcd1.etcdctl("put", "--", "/hard/routes/handdeep", input=('{"uri":"/x","labels":%s}' % deep_lists()).encode())
    wait_for(lambda: any(k["key"] == "/hard/routes/handdeep" for k in t.config_status().get("rejected_keys", [])),
             timeout=10, message="the deep key to be rejected by the traditional copy")
    alive(t)
    assert served() == (200, "hard"), "the proxy must keep serving"
    assert t.admin("DELETE", "/routes/handdeep")[0] == 200
    assert t.admin("DELETE", "/routes/keep")[0] == 200


def yaml_alias_chain(links=40):
    """A small YAML file whose anchors each nest the previous one 10 levels deeper: 400 levels through aliases."""
    text = "x0: &a0 " + "[" * 10 + "1" + "]" * 10 + "\n"
    for i in range(1, links + 1):
        text += "x%d: &a%d %s*a%d%s\n" % (i, i, "[" * 10, i - 1, "]" * 10)
    return text + "#END\n"


@pytest.mark.parametrize("fmt,bad", [
    ("json", lambda: '{"routes": [{"id": "deep", "uri": "/deep", "labels": %s}]}' % deep_lists()),
    ("yaml", lambda: "routes:\n  - id: deep\n    uri: /deep\n    labels: %s\n#END\n" % deep_lists()),
    ("yaml", yaml_alias_chain),
], ids=["json", "yaml", "yaml_aliases"])
def test_standalone_deep_file_is_rejected_last_good_keeps_serving(origin, portico, fmt, bad):
    o = origin("sa")
    p = portico(make_config([route("r0", "/id", o, host="sa.test")]), fmt=fmt)
    gen0 = p.generation()
    rejected0 = p.error_log().count("config rejected")
    p.write_config(bad(), raw=True)
    wait_for(lambda: p.error_log().count("config rejected") > rejected0, timeout=10,
             message="'config rejected' in the error log")
    assert "nested deeper than 64 levels" in p.config_status()["last_error"], p.config_status()
    assert p.running(), p.log_tail()
    assert p.generation() == gen0
    r = p.get("/id", host="sa.test")
    assert r.status == 200 and (r.body or b"").strip() == b"sa", r


# ------------------------------------------------------------------------------------------------------------
# Item 13: lenient input
# ------------------------------------------------------------------------------------------------------------

def test_duplicate_keys_are_refused(cp):
    r = cp.admin("PUT", "/routes/dupkey", '{"uri":"/a","uri":"/b","upstream":%s}' % json.dumps(up("127.0.0.1:1")))
    assert_refused(r, "uri", 'duplicate key "uri"')
    r = cp.admin("PUT", "/upstreams/dupkey", '{"type":"roundrobin","nodes":{"127.0.0.1:1":1,"127.0.0.1:1":2}}')
    assert_refused(r, 'nodes["127.0.0.1:1"]', 'duplicate key "127.0.0.1:1"')
    assert_absent(cp, "routes", "dupkey")
    assert_absent(cp, "upstreams", "dupkey")


@pytest.mark.parametrize("rid", [".", ".."])
def test_dot_ids_are_refused(cp, rid):
    # In the URL (http.client sends the path as written) and in the body.
    st, _, body = cp.admin("PUT", "/upstreams/%s" % rid, up("127.0.0.1:1"))
    assert st == 400 and "invalid upstream id" in body["error_msg"], (st, body)
    st, _, body = cp.admin("PUT", "/upstreams", dict(up("127.0.0.1:1"), id=rid))
    assert st == 400 and body["error_msg"].startswith("id: "), (st, body)
    st, _, body = cp.admin("PUT", "/routes/dotref", {"uri": "/dotref", "upstream_id": rid})
    assert_refused((st, None, body), "upstream_id", 'failed to match pattern')
    # Other dotted ids stay valid, as in APISIX.
    st, _, body = cp.admin("PUT", "/upstreams/a.b", up("127.0.0.1:1"))
    assert st in (200, 201), (st, body)
    assert cp.admin("DELETE", "/upstreams/a.b")[0] == 200


def test_float_ports_are_refused(cp):
    r = cp.admin("PUT", "/upstreams/fport", '{"nodes":[{"host":"127.0.0.1","port":80.0,"weight":1}]}')
    assert_refused(r, "nodes[0].port", "an integer from 1 to 65535 (written without a fraction)")
    r = cp.admin("PUT", "/upstreams/fport", '{"nodes":{"127.0.0.1:80.0":1}}')
    assert_refused(r, 'nodes["127.0.0.1:80.0"]', "the port must be an integer from 1 to 65535")
    r = cp.admin("PUT", "/upstreams/fport",
                 '{"nodes":{"127.0.0.1:80":1},"checks":{"active":{"port":8080.0}}}')
    assert_refused(r, "checks.active.port", "written without a fraction")
    assert_absent(cp, "upstreams", "fport")


# ------------------------------------------------------------------------------------------------------------
# Item 8: absurd numbers
# ------------------------------------------------------------------------------------------------------------

def test_route_timeout_1e10_is_refused_with_its_path(cp):
    # 1e10 s in nanoseconds overflows the clock: the route answered 504 at once.
    r = cp.admin("PUT", "/routes/t1e10",
                 '{"uri":"/t","upstream":%s,"timeout":{"connect":1,"send":1,"read":1e10}}'
                 % json.dumps(up("127.0.0.1:1")))
    assert_refused(r, "timeout.read", "expected 10000000000 to be at most 31536000")
    assert_absent(cp, "routes", "t1e10")
    # A year is still accepted.
    r = cp.admin("PUT", "/routes/t1y", {"uri": "/t", "upstream": up("127.0.0.1:1"),
                                        "timeout": {"connect": 1, "send": 1, "read": 31536000}})
    assert r[0] == 201, r
    assert cp.admin("DELETE", "/routes/t1y")[0] == 200


@pytest.mark.parametrize("field,value,path,reason", [
    ("checks", {"active": {"healthy": {"interval": 1e10}}}, "upstream.checks.active.healthy.interval",
     "expected 10000000000 to be at most 31536000"),
    ("checks", {"active": {"unhealthy": {"interval": 0.001}}}, "upstream.checks.active.unhealthy.interval",
     "expected 0.001 to be at least 0.1"),
    ("checks", {"active": {"timeout": 1e10}}, "upstream.checks.active.timeout", "to be at most 31536000"),
    ("retry_timeout", 1e10, "upstream.retry_timeout", "to be at most 31536000"),
    ("timeout", {"connect": 1e10, "send": 1, "read": 1}, "upstream.timeout.connect", "to be at most 31536000"),
    ("keepalive_pool", {"idle_timeout": 1e10}, "upstream.keepalive_pool.idle_timeout", "to be at most 31536000"),
    ("keepalive_pool", {"size": 10 ** 6}, "upstream.keepalive_pool.size", "expected 1000000 to be at most 65535"),
    ("retries", 2 ** 31 - 1, "upstream.retries", "expected 2147483647 to be at most 65535"),
])
def test_absurd_upstream_numbers_are_refused(cp, field, value, path, reason):
    upstream = dict(up("127.0.0.1:1"), **{field: value})
    r = cp.admin("PUT", "/routes/absurd", {"uri": "/absurd", "upstream": upstream})
    assert_refused(r, path, reason)
    assert_absent(cp, "routes", "absurd")


def test_deep_fleet_record_written_into_etcd_by_hand_is_skipped(cp, etcd1):
    """The fleet view reads data-plane records back from etcd (PREFIX-fleet/): a hand-written deep record is
    skipped, not dumped (which recursed once per level and crashed the control plane)."""
    etcd1.etcdctl("put", "--", "/apisix-fleet/deepnode", input=('{"node_id":"deepnode","x":%s}' % deep_lists()).encode())
    etcd1.etcdctl("put", "--", "/apisix-fleet/dupnode", input=b'{"node_id":"a","node_id":"b"}')
    # Of the right depth but the wrong types: a string reported_at made every listing answer 500.
    etcd1.etcdctl("put", "--", "/apisix-fleet/typenode", input=b'{"node_id":"typenode","reported_at":"soon"}')
    try:
        st, _, body = cp.admin("GET", "/data_planes")
        assert st == 200, (st, str(body)[:300])
        ids = [n.get("node_id") for n in body.get("list", [])] if isinstance(body, dict) else []
        assert "deepnode" not in ids and "a" not in ids and "b" not in ids and "typenode" not in ids, ids
        alive(cp)
    finally:
        etcd1.etcdctl("del", "--prefix", "/apisix-fleet/")
