"""Upstream behaviour: load balancing, retries, passive and active health checks, timeouts."""

import collections
import json
import socket
import time

import pytest

from conftest import RawConn, make_config, reserve_dead_port, route, upstream, wait_for

IDS = ["rr1", "rr2", "rr3", "w1", "w2", "w5", "ch1", "ch2", "ch3", "live1", "f502", "ok502",
       "p1", "p2", "p3", "a1", "a2", "b1", "hi", "lo", "slow", "lc1", "lc2", "ew1", "ew2",
       "live2", "drop", "okdrop", "cha1", "cha2", "cha3", "live3", "s503a", "s503b"]


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    o = dict(zip(IDS, origin_module(*IDS)))
    b2 = origin_module("b2")  # its own process, so it can be killed
    dead_port, dead_sock = reserve_dead_port()
    dead_node = "127.0.0.1:%d" % dead_port
    # A listener that never accepts, with its (tiny) accept queue filled: further connects hang in SYN-SENT.
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    hole_node = "127.0.0.1:%d" % hole.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        f.setblocking(False)
        try:
            f.connect(hole.getsockname())
        except BlockingIOError:
            pass
        fillers.append(f)

    def node(x, **kw):
        d = {"host": "127.0.0.1", "port": x.port, "weight": 1}
        d.update(kw)
        return d

    fast_active = {"type": "http", "http_path": "/health", "timeout": 1,
                   "healthy": {"interval": 0.2, "successes": 1},
                   "unhealthy": {"interval": 0.2, "http_failures": 1, "tcp_failures": 1, "timeouts": 1}}
    upstreams = [
        {"id": "up_passive", "type": "roundrobin", "nodes": {o["p1"].node: 1, o["p2"].node: 1, o["p3"].node: 1},
         "checks": {
             # A slow active checker only marks everyone healthy at start; the passive one must do the work.
             "active": {"type": "http", "http_path": "/health", "timeout": 1,
                        "healthy": {"interval": 60, "successes": 1},
                        "unhealthy": {"interval": 60, "http_failures": 1}},
             "passive": {"healthy": {"successes": 100},
                         "unhealthy": {"http_statuses": [500], "http_failures": 2, "tcp_failures": 2,
                                       "timeouts": 2}}}},
        {"id": "up_active", "type": "roundrobin", "nodes": {o["a1"].node: 1, o["a2"].node: 1},
         "checks": {"active": fast_active}},
        {"id": "up_active_tcp", "type": "roundrobin", "nodes": {o["b1"].node: 1, b2.node: 1},
         "checks": {"active": dict(fast_active, type="tcp")}},
    ]
    routes = [
        route("rr", "/*", o["rr1"], o["rr2"], o["rr3"], host="rr.test"),
        route("weights", "/*", host="w.test", upstream=upstream(o["w1"], o["w2"], o["w5"], weights=[1, 2, 5])),
        route("chash", "/*", host="chash.test",
              upstream=upstream(o["ch1"], o["ch2"], o["ch3"], type="chash", hash_on="header", key="x-user")),
        route("retry_connect", "/*", host="retry.test", upstream=upstream(dead_node, o["live1"])),
        route("retry_502", "/*", o["f502"], o["ok502"], host="r502.test"),
        route("passive", "/*", host="passive.test", upstream_id="up_passive"),
        route("active", "/*", host="active.test", upstream_id="up_active"),
        route("active_tcp", "/*", host="activetcp.test", upstream_id="up_active_tcp"),
        route("prio_nodes", "/*", host="prio.test",
              upstream={"type": "roundrobin", "nodes": [node(o["hi"], priority=10), node(o["lo"], priority=0)]}),
        route("timeout_route", "/*", o["slow"], host="timeout.test", timeout={"connect": 1, "send": 1, "read": 0.5}),
        route("timeout_up", "/*", host="timeoutup.test",
              upstream=upstream(o["slow"], timeout={"connect": 1, "send": 1, "read": 0.5})),
        route("chash_arg", "/*", host="chasharg.test",
              upstream=upstream(o["cha1"], o["cha2"], o["cha3"], type="chash", hash_on="vars", key="arg_user")),
        route("connect_timeout", "/*", host="hole.test",
              upstream=upstream(hole_node, timeout={"connect": 0.5, "send": 1, "read": 1})),
        route("retries0", "/*", host="retries0.test", upstream=upstream(dead_node, o["live2"], retries=0)),
        route("only_dead", "/*", host="dead.test", upstream=upstream(dead_node)),
        route("drop", "/*", o["drop"], o["okdrop"], host="drop.test"),
        route("least_conn", "/*", host="lc.test", upstream=upstream(o["lc1"], o["lc2"], type="least_conn")),
        route("ewma", "/*", host="ewma.test", upstream=upstream(o["ew1"], o["ew2"], type="ewma")),
        route("hole_retry", "/*", host="holeretry.test",
              upstream=upstream(hole_node, o["live3"], timeout={"connect": 0.3, "send": 1, "read": 1})),
        route("all503", "/*", host="all503.test", upstream=upstream(o["s503a"], o["s503b"], retries=5)),
    ]
    p = portico_module(make_config(routes, upstreams=upstreams))
    yield {"p": p, "o": o, "b2": b2, "dead_node": dead_node}
    dead_sock.close()
    for f in fillers:
        f.close()
    hole.close()


def ids_for(p, host, n, method="GET", target="/id", new_conn=False, body=None, headers=()):
    """[(status, X-Origin-Id)] for n requests."""
    out = []
    c = None
    try:
        for _ in range(n):
            if c is None or new_conn:
                if c:
                    c.close()
                c = RawConn(p.port)
            r = c.request(method, target, host=host, body=body, headers=headers)
            out.append((r.status, r.header("X-Origin-Id")))
            if "close" in r.connection_tokens():
                c.close()
                c = None
    finally:
        if c:
            c.close()
    return out


def node_healthy(p, upstream_id, node):
    return p.metrics().value("portico_upstream_node_healthy", default=None, upstream=upstream_id, node=node)


def test_round_robin_spreads_evenly(env):
    res = ids_for(env["p"], "rr.test", 30)
    assert all(s == 200 for s, _ in res), res
    counts = collections.Counter(i for _, i in res)
    assert counts == {"rr1": 10, "rr2": 10, "rr3": 10}, counts


def test_weighted_round_robin(env):
    res = ids_for(env["p"], "w.test", 80)
    counts = collections.Counter(i for _, i in res)
    assert abs(counts["w1"] - 10) <= 2 and abs(counts["w2"] - 20) <= 2 and abs(counts["w5"] - 50) <= 2, counts


def test_chash_by_header_is_sticky(env):
    p = env["p"]
    mapping = {}
    for u in range(20):
        user = "user-%d" % u
        got = {i for s, i in ids_for(p, "chash.test", 4, new_conn=True, headers=[("X-User", user)])}
        assert len(got) == 1, "user %s was spread over %s" % (user, got)
        mapping[user] = got.pop()
    assert len(set(mapping.values())) >= 2, "chash sent every key to one node: %r" % mapping


def test_chash_by_query_arg_is_sticky(env):
    p = env["p"]
    mapping = {}
    for u in range(20):
        got = {i for s, i in ids_for(p, "chasharg.test", 3, target="/id?user=u%d" % u, new_conn=True)}
        assert len(got) == 1, "arg user=u%d was spread over %s" % (u, got)
        mapping[u] = got.pop()
    assert len(set(mapping.values())) >= 2, mapping


def test_connect_timeout_gives_504(env):
    p = env["p"]
    t0 = time.monotonic()
    with RawConn(p.port, timeout=10) as c:
        r = c.request("GET", "/id", host="hole.test")
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert "error_msg" in json.loads(r.body)
    assert 0.4 <= elapsed < 2.5, "504 after %.2fs with a 0.5s connect timeout" % elapsed


def test_retry_after_connect_failure(env):
    p = env["p"]
    m0 = p.metrics()
    res = ids_for(p, "retry.test", 10) + ids_for(p, "retry.test", 6, method="POST", target="/echo", body=b"xyz")
    assert res == [(200, "live1")] * 16, res
    m1 = p.metrics()
    assert m1.value("portico_upstream_connect_errors_total") > m0.value("portico_upstream_connect_errors_total")
    assert m1.value("portico_upstream_retries_total") > m0.value("portico_upstream_retries_total")


def test_502_retried_for_get_but_not_for_post(env):
    p, o = env["p"], env["o"]
    f = o["f502"]
    f.fail(502)
    try:
        f.reset()
        res = ids_for(p, "r502.test", 10)
        assert res == [(200, "ok502")] * 10, res
        assert f.hits("/id") > 0, "the failing node was never tried, so no retry was exercised"
        f.reset()
        res = ids_for(p, "r502.test", 10, method="POST", target="/echo", body=b"payload")
        failed = [r for r in res if r[0] == 502]
        assert failed, "no POST reached the failing node: %r" % (res,)
        assert all(i == "f502" for _, i in failed), "a POST 502 did not come from the origin: %r" % res
        assert all(r == (200, "ok502") for r in res if r[0] != 502), res
        # Each POST that hit the failing node was answered with its 502: none was sent a second time.
        assert f.hits("/echo") == len(failed)
    finally:
        f.fail(0)


def test_connect_timeout_is_retried_even_for_post(env):
    # A connect that timed out sent nothing, so even a POST may go to another node.
    p = env["p"]
    m0 = p.metrics()
    res = ids_for(p, "holeretry.test", 4, method="POST", target="/echo", body=b"once", new_conn=True)
    assert res == [(200, "live3")] * 4, res
    assert p.metrics().value("portico_upstream_timeouts_total") > m0.value("portico_upstream_timeouts_total")


def test_last_node_503_is_relayed_when_retries_exceed_nodes(env):
    # retries (5) > other nodes (1): once every node answered 503, the origin's own 503 reaches the client,
    # not a gateway-made 502.
    p, o = env["p"], env["o"]
    a, b = o["s503a"], o["s503b"]
    a.fail(503)
    b.fail(503)
    try:
        a.reset()
        b.reset()
        with RawConn(p.port) as c:
            r = c.request("GET", "/id", host="all503.test")
        assert r.status == 503, r
        assert r.header("X-Origin-Id") in ("s503a", "s503b"), r.headers
        assert a.hits("/id") == 1 and b.hits("/id") == 1
    finally:
        a.fail(0)
        b.fail(0)


def test_passive_health_check_takes_failing_node_out(env):
    p, o = env["p"], env["o"]
    p1 = o["p1"]
    wait_for(lambda: node_healthy(p, "up_passive", p1.node) == 1, timeout=5,
             message="p1 initially healthy in portico_upstream_node_healthy")
    p1.fail(500)
    try:
        sent = 0
        while node_healthy(p, "up_passive", p1.node) != 0:
            assert sent < 100, "passive check never marked the failing node down after %d requests" % sent
            ids_for(p, "passive.test", 1, new_conn=True)
            sent += 1
        for x in ("p1", "p2", "p3"):
            o[x].reset()
        res = ids_for(p, "passive.test", 30, new_conn=True)
        assert all(s == 200 for s, _ in res), res
        assert o["p1"].hits() == 0, "requests still reach a node marked unhealthy"
        assert {i for _, i in res} == {"p2", "p3"}
        m = p.metrics()
        assert m.value("portico_upstream_node_healthy", upstream="up_passive", node=p1.node) == 0
        assert m.value("portico_upstream_node_healthy", upstream="up_passive", node=o["p2"].node) == 1
    finally:
        p1.fail(0)


def test_active_health_check_takes_node_out_and_back(env):
    p, o = env["p"], env["o"]
    a1, a2 = o["a1"], o["a2"]
    wait_for(lambda: node_healthy(p, "up_active", a1.node) == 1 and node_healthy(p, "up_active", a2.node) == 1,
             timeout=5, message="both active-checked nodes healthy")
    assert a1.stats()["health_probes"] > 0, "no active probe reached /health"
    a1.set_healthy(False)
    try:
        wait_for(lambda: node_healthy(p, "up_active", a1.node) == 0, timeout=5,
                 message="a1 marked unhealthy by the active check")
        a1.reset()
        res = ids_for(p, "active.test", 20, new_conn=True)
        assert res == [(200, "a2")] * 20, res
        assert a1.hits() == 0
    finally:
        a1.set_healthy(True)
    wait_for(lambda: node_healthy(p, "up_active", a1.node) == 1, timeout=5,
             message="a1 marked healthy again by the active check")
    res = ids_for(p, "active.test", 10)
    assert {i for _, i in res} == {"a1", "a2"}, res


def test_active_tcp_check_notices_dead_node(env):
    p, b2 = env["p"], env["b2"]
    wait_for(lambda: node_healthy(p, "up_active_tcp", b2.node) == 1, timeout=5, message="b2 healthy")
    b2.group.kill()
    wait_for(lambda: node_healthy(p, "up_active_tcp", b2.node) == 0, timeout=5,
             message="b2 marked unhealthy after its process died")
    before = p.metrics().value("portico_upstream_connect_errors_total")
    res = ids_for(p, "activetcp.test", 10, new_conn=True)
    assert res == [(200, "b1")] * 10, res
    assert p.metrics().value("portico_upstream_connect_errors_total") == before, \
        "requests were still sent to a node the active check had marked down"


def test_node_priority_tiers(env):
    p, o = env["p"], env["o"]
    res = ids_for(p, "prio.test", 10)
    assert res == [(200, "hi")] * 10, res
    o["hi"].fail(502)
    try:
        res = ids_for(p, "prio.test", 5)
        assert res == [(200, "lo")] * 5, res
    finally:
        o["hi"].fail(0)


@pytest.mark.parametrize("host", ["timeout.test", "timeoutup.test"])
@pytest.mark.parametrize("target", ["/delay/3000", "/slow-headers?ms=3000"])
def test_upstream_read_timeout_gives_504(env, host, target):
    p = env["p"]
    t0 = time.monotonic()
    with RawConn(p.port, timeout=10) as c:
        r = c.request("GET", target, host=host)
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert "error_msg" in json.loads(r.body)
    assert 0.4 <= elapsed < 2.5, "504 after %.2fs with a 0.5s read timeout" % elapsed


@pytest.mark.parametrize("host,ids", [("lc.test", {"lc1", "lc2"}), ("ewma.test", {"ew1", "ew2"})])
def test_other_balancer_types_serve(env, host, ids):
    res = ids_for(env["p"], host, 10, new_conn=True)
    assert all(s == 200 and i in ids for s, i in res), res


def test_retries_zero_means_no_retry(env):
    res = ids_for(env["p"], "retries0.test", 6)
    assert sorted(s for s, _ in res) == [200, 200, 200, 502, 502, 502], res
    assert all(i == "live2" for s, i in res if s == 200)


def test_unreachable_only_node_gives_502_json(env):
    p = env["p"]
    before = p.metrics().value("portico_upstream_connect_errors_total")
    with RawConn(p.port) as c:
        r = c.request("GET", "/id", host="dead.test")
    assert r.status == 502, r
    assert "error_msg" in json.loads(r.body)
    assert p.metrics().value("portico_upstream_connect_errors_total") > before


def test_failure_before_response_retried_for_get_not_for_post(env):
    p, o = env["p"], env["o"]
    d = o["drop"]
    d.fail(-1)  # read the request, close without answering
    try:
        d.reset()
        res = ids_for(p, "drop.test", 10)
        assert res == [(200, "okdrop")] * 10, res
        assert d.hits("/id") > 0, "the dropping node was never tried"
        d.reset()
        res = ids_for(p, "drop.test", 10, method="POST", target="/echo", body=b"once")
        failed = [r for r in res if r[0] != 200]
        assert failed and all(s == 502 for s, _ in failed), res
        assert d.hits("/echo") == len(failed), "a POST the origin may have processed was sent again"
    finally:
        d.fail(0)
