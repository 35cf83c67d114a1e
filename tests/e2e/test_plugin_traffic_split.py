"""traffic-split through a running gateway, in the three ways a configuration arrives (file, admin, hybrid;
gateway_modes.py): canary by weight, canary by header, a blue-green switch under load, upstream_id
references, a split upstream's own health check, and the route's own upstream for a weight without one.

Shares are counted on what each origin received (its /admin/seen log) and checked against the responses'
origin ids. The gateway picks with a smooth weighted round robin per worker, so a share is exact per worker
over every cycle of sum(weights) requests.
"""

import threading

import pytest

from conftest import RawConn, reserve_dead_port, route, start_wrk, upstream, wait_for
from gateway_modes import MODES, start_gateway


@pytest.fixture(scope="module")
def origins(origin_module):
    blue, green, canary = origin_module("blue", "green", "canary")
    return {"blue": blue, "green": green, "canary": canary}


@pytest.fixture(scope="module", params=MODES)
def gw(request, tmp_path_factory):
    etcd = None if request.param == "file" else request.getfixturevalue("gateway_etcd")
    g = start_gateway(request.param, tmp_path_factory.mktemp("split-" + request.param), etcd=etcd)
    yield g
    g.stop()


def split(*rules):
    return {"traffic-split": {"rules": list(rules)}}


def reset(origins):
    for o in origins.values():
        o.reset()


def hits(origins):
    return {name: o.hits() for name, o in origins.items()}


def fetch_ids(gw, target, total, threads=4, headers=()):
    """`total` GETs of `target`, on one keep-alive connection per thread: {origin id: responses}."""
    counts = {}
    lock = threading.Lock()
    errors = []

    def run(n):
        local = {}
        try:
            with RawConn(gw.proxy.port) as c:
                for _ in range(n):
                    r = c.request("GET", target, headers=headers)
                    key = r.body.decode().strip() if r.status == 200 else "status %d" % r.status
                    local[key] = local.get(key, 0) + 1
        except Exception as e:  # reported below, not swallowed
            errors.append(e)
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    per = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=run, args=(n,)) for n in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    return counts


def test_canary_by_weight_is_within_two_percent_over_10k_requests(gw, origins):
    canary = upstream(origins["canary"])
    gw.apply({"routes": [route("w", "/id", origins["blue"],
                               plugins=split({"weighted_upstreams": [{"upstream": canary, "weight": 1},
                                                                     {"weight": 9}]}))]})
    reset(origins)
    counts = fetch_ids(gw, "/id", 10000)
    seen = hits(origins)
    assert counts == {"canary": seen["canary"], "blue": seen["blue"]}, (counts, seen)
    assert seen["green"] == 0
    assert seen["canary"] + seen["blue"] == 10000
    print("canary share over 10k (%s): %d" % (gw.mode, seen["canary"]))
    assert abs(seen["canary"] - 1000) <= 200, seen


def test_header_canary_is_exact(gw, origins):
    gw.apply({"routes": [route("h", "/id", origins["blue"],
                               plugins=split({"match": [{"vars": [["http_x-canary", "==", "1"]]}],
                                              "weighted_upstreams": [{"upstream": upstream(origins["canary"])}]}))]})
    reset(origins)
    with_header = fetch_ids(gw, "/id", 300, headers=[("X-Canary", "1")])
    assert with_header == {"canary": 300}, with_header
    without = fetch_ids(gw, "/id", 300, headers=[("X-Canary", "2")])
    assert without == {"blue": 300}, without
    assert fetch_ids(gw, "/id", 100) == {"blue": 100}
    assert hits(origins) == {"blue": 400, "green": 0, "canary": 300}


def test_blue_green_switch_under_load_fails_no_request(gw, origins, tmp_path):
    ups = [dict(upstream(origins["blue"]), id="blue"), dict(upstream(origins["green"]), id="green")]

    def doc(color):
        return {"upstreams": ups,
                "routes": [route("bg", "/id", origins["canary"],
                                 plugins=split({"weighted_upstreams": [{"upstream_id": color}]}))]}

    gw.apply(doc("blue"))
    reset(origins)
    run = start_wrk("http://127.0.0.1:%d/id" % gw.proxy.port, connections=8, duration=3, threads=2,
                    workdir=tmp_path)
    try:
        wait_for(lambda: origins["blue"].hits() > 200, timeout=10, message="load reaches blue")
        gw.apply(doc("green"))  # one change: the route's weighted upstream names green
        wait_for(lambda: origins["green"].hits() > 200, timeout=10, message="load reaches green")
        result = run.wait(timeout=30)
    finally:
        run.kill()
    assert result["non2xx"] == 0 and result["socket_errors"] == 0, result
    assert result["responses"] > 400, result
    # wrk's last requests may still reach the origin after it exits (Portico finishes what it received):
    # they go to green as well, so blue and canary must stay at zero, green at least what was sent.
    reset(origins)
    assert fetch_ids(gw, "/id", 200) == {"green": 200}
    after = hits(origins)
    assert after["blue"] == 0 and after["canary"] == 0 and after["green"] >= 200, after


def test_upstream_id_reference_follows_the_upstream_and_must_exist(gw, origins):
    weighted = {"weighted_upstreams": [{"upstream_id": "cu", "weight": 1}, {"weight": 1}]}
    doc = {"upstreams": [dict(upstream(origins["canary"]), id="cu")],
           "routes": [route("ref", "/id", origins["blue"], plugins=split(weighted))]}
    gw.apply(doc)
    reset(origins)
    assert fetch_ids(gw, "/id", 100, threads=1) == {"canary": 50, "blue": 50}

    # The upstream changes its node: the route, which names it only through traffic-split, follows.
    doc["upstreams"] = [dict(upstream(origins["green"]), id="cu")]
    gw.apply(doc)
    assert fetch_ids(gw, "/id", 100, threads=1) == {"green": 50, "blue": 50}

    # A missing upstream is refused with the reference's path; the previous config keeps serving.
    bad = {"upstreams": doc["upstreams"],
           "routes": [route("ref", "/id", origins["blue"],
                            plugins=split({"weighted_upstreams": [{"upstream_id": "nope"}]}))]}
    err = gw.apply_expect_error(bad)
    assert err.resource == ("routes", "ref"), err
    assert "plugins.traffic-split.rules[0].weighted_upstreams[0].upstream_id" in err.fields, err
    assert fetch_ids(gw, "/id", 10, threads=1) == {"green": 5, "blue": 5}
    if gw.mode != "file":
        # Deleting the upstream while the route names it is refused, as for a route's upstream_id.
        reply = gw.admin("DELETE", "/apisix/admin/upstreams/cu")
        assert reply.status == 400, reply
        assert "route [ref] is still using it" in (reply.raw or b"").decode(), reply


def test_split_upstream_with_its_own_health_check_avoids_a_dead_node(gw, origins):
    dead_port, holder = reserve_dead_port()
    try:
        checked = {"type": "roundrobin", "retries": 0,
                   "nodes": {origins["canary"].node: 1, "127.0.0.1:%d" % dead_port: 1},
                   "checks": {"active": {"http_path": "/health",
                                         "healthy": {"interval": 0.1, "successes": 1},
                                         "unhealthy": {"interval": 0.1, "tcp_failures": 1, "http_failures": 1}}}}
        gw.apply({"routes": [route("hc", "/id", origins["blue"],
                                   plugins=split({"weighted_upstreams": [{"upstream": checked}]}))]})
        # Until the probe marks it down, a request may meet the dead node (no retries): 502.
        wait_for(lambda: fetch_ids(gw, "/id", 20, threads=1) == {"canary": 20}, timeout=10,
                 message="the dead canary node is avoided")
        reset(origins)
        assert fetch_ids(gw, "/id", 200) == {"canary": 200}
        assert hits(origins) == {"blue": 0, "green": 0, "canary": 200}
    finally:
        holder.close()


def test_a_weight_without_upstream_is_the_routes_own_and_zero_weights_never_serve(gw, origins):
    gw.apply({"routes": [
        route("own", "/id", origins["blue"],
              plugins=split({"weighted_upstreams": [{"upstream": upstream(origins["canary"]), "weight": 3},
                                                    {"weight": 1},
                                                    {"upstream": upstream(origins["green"]), "weight": 0}]}))]})
    reset(origins)
    assert fetch_ids(gw, "/id", 400, threads=1) == {"canary": 300, "blue": 100}
    assert hits(origins) == {"blue": 100, "green": 0, "canary": 300}
