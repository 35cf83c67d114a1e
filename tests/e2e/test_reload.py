"""Configuration reload: file polling, SIGHUP, rejection of bad files (last good config keeps serving), and
reloads under load without a single failed request."""

import hashlib
import re
import signal
import time

import pytest

from conftest import RawConn, make_config, route, upstream, wait_for


def base_routes(o, n=4):
    return [route("r%d" % i, "/echo", o, host="r%d.test" % i) for i in range(n)]


def served_by(p, host, target="/echo"):
    r = p.get(target, host=host)
    return r.status, r.header("X-Origin-Id")


def apply_failures(p):
    return p.metrics().value("portico_config_apply_failures_total")


BAD_VARIANTS = [
    # (id, builder(o) -> config text or dict, path expected in the error)
    ("empty_nodes", lambda o: make_config(base_routes(o)[:3] + [route("r3", "/echo", host="r3.test",
                                                                      upstream={"type": "roundrobin",
                                                                                "nodes": {}})]),
     "routes[3].upstream.nodes"),
    ("bad_upstream_ref", lambda o: make_config(base_routes(o)[:1] + [route("r1", "/echo", host="r1.test",
                                                                           upstream_id="nope")]),
     "routes[1].upstream_id"),
    ("bad_lb_type", lambda o: make_config(base_routes(o)[:2] + [route("r2", "/echo", host="r2.test",
                                                                      upstream=upstream(o, type="random"))]),
     "routes[2].upstream.type"),
    ("duplicate_route_id", lambda o: make_config(base_routes(o)[:1] + [route("r0", "/echo", o, host="dup.test")]),
     "routes[1]"),
    ("bad_regex", lambda o: make_config(base_routes(o)[:1] + [route("r1", "/echo", o, host="r1.test",
                                                                    vars=[["arg_v", "~~", "(unclosed"]])]),
     "routes[1].vars"),
    ("bad_cidr", lambda o: make_config([route("r0", "/echo", o, host="r0.test", remote_addrs=["300.1.1.1/8"])]),
     "routes[0].remote_addrs"),
    ("bad_node_port", lambda o: make_config([route("r0", "/echo", "127.0.0.1:99999", host="r0.test")]),
     "routes[0].upstream.nodes"),
    ("missing_end_marker", lambda o: "routes:\n  - id: r9\n    uri: /echo\n    upstream:\n      nodes:\n"
                                     "        \"%s\": 1\n" % o.node, None),
    ("yaml_syntax", lambda o: "routes:\n  - id: [unclosed\n#END\n", None),
]


@pytest.mark.parametrize("variant,build,path", BAD_VARIANTS, ids=[v[0] for v in BAD_VARIANTS])
def test_bad_file_rejected_last_good_keeps_serving(origin, portico, variant, build, path):
    o = origin("rl")
    p = portico(make_config(base_routes(o)))
    gen0 = p.generation()
    fails0 = apply_failures(p)
    rejected0 = p.error_log().count("config rejected")

    bad = build(o)
    p.write_config(bad, raw=True)
    wait_for(lambda: p.error_log().count("config rejected") > rejected0, timeout=5,
             message="'config rejected' in the error log")
    log = p.error_log()
    if path:
        lines = [line for line in log.splitlines() if "config rejected" in line]
        assert any(path in line for line in lines) or path in log, \
            "the rejection does not name %s:\n%s" % (path, "\n".join(lines[-5:]))
    wait_for(lambda: apply_failures(p) >= fails0 + 1, timeout=5, message="apply failure metric to increment")
    m = p.metrics()
    assert m.value("portico_config_last_failure_timestamp_seconds") > time.time() - 60
    st = p.config_status()
    assert st["generation"] == gen0, "a rejected file changed the generation"
    assert st["last_error"], st
    if path:
        assert path in st["last_error"], st
    assert m.value("portico_config_generation") == gen0
    # The last good config still serves every route.
    for i in range(4):
        assert served_by(p, "r%d.test" % i) == (200, "rl")

    # A good file afterwards is applied.
    good = make_config(base_routes(o) + [route("r_new", "/echo", o, host="new.test")])
    gen = p.reload(good)
    assert gen > gen0
    assert served_by(p, "new.test") == (200, "rl")
    assert p.metrics().value("portico_config_routes") == 5


def test_poll_picks_up_changes_and_logs_apply(origin, portico):
    o1, o2 = origin("one", "two")
    p = portico(make_config([route("r", "/echo", o1)]))
    assert served_by(p, "a") == (200, "one")
    gen = p.reload(make_config([route("r", "/echo", o2), route("r2", "/id", o2)]))
    assert served_by(p, "a") == (200, "two")
    h = hashlib.sha256(p.config_bytes).hexdigest()
    wait_for(lambda: re.search(r"config applied generation=%d routes=2 hash=%s" % (gen, h), p.error_log()),
             timeout=3, message="'config applied generation=%d routes=2 hash=%s' in the error log" % (gen, h))
    # Removing a route takes it away.
    p.reload(make_config([route("r2", "/id", o2)]))
    assert p.get("/echo").status == 404


def test_new_config_applies_to_existing_keepalive_connection(origin, portico):
    o1, o2 = origin("old", "new")
    p = portico(make_config([route("r", "/id", o1)]))
    with RawConn(p.port) as c:
        assert c.request("GET", "/id").body == b"old\n"
        p.reload(make_config([route("r", "/id", o2)]))
        r = c.request("GET", "/id")
        assert r.body == b"new\n", "a keep-alive connection kept using the previous config: %r" % r


def test_inflight_request_survives_reload_that_removes_its_route(origin, portico):
    o = origin("inflight")
    other = origin("other")
    p = portico(make_config([route("slow", "/delay/*", o), route("keep", "/id", other)]))
    with RawConn(p.port, timeout=10) as c:
        c.send(b"GET /delay/1500?m=reload-inflight HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: o.seen("reload-inflight"), timeout=3, message="the slow request to reach the origin")
        p.reload(make_config([route("keep", "/id", other)]))
        r = c.read_response()
        assert r.status == 200 and r.body == b"delayed 1500\n", r
    assert p.get("/delay/10").status == 404


def test_sighup_triggers_reload(origin, portico):
    o = origin("hup")
    p = portico(make_config([route("r", "/echo", o)]), watch_interval=3600)
    gen0 = p.generation()
    p.write_config(make_config([route("r", "/echo", o), route("r2", "/id", o)]))
    # Without a poll in the next hour, nothing changes until SIGHUP.
    assert p.generation() == gen0
    assert p.get("/id").status == 404
    p.signal(signal.SIGHUP)
    wait_for(lambda: p.generation() > gen0, timeout=5, message="generation to advance after SIGHUP")
    r = p.get("/id")
    assert r.status == 200 and r.body == b"hup\n"
    assert p.running()


def test_json_config(origin, portico):
    o = origin("js")
    p = portico(make_config([route("r", "/echo", o)]), fmt="json")
    assert served_by(p, "a") == (200, "js")
    p.reload(make_config([route("r", "/echo", o), route("r2", "/id", o)]))
    assert p.get("/id").status == 200


def test_hot_reload_under_load(origin, portico, wrk):
    load1, load2 = origin("load1", "load2")
    p = portico(make_config([route("load", "/id", load1)]), watch_interval=0.1)

    def cfg(i):
        nodes = [load1] if i % 2 == 0 else [load1, load2]
        routes = [route("load", "/id", *nodes, timeout={"connect": 2, "send": 5, "read": 5 + i % 3})]
        routes += [route("extra%d" % k, "/echo", load2, host="x%d.test" % k, priority=k % 3) for k in range(i + 1)]
        return make_config(routes)

    duration = 10
    run = wrk("http://127.0.0.1:%d/id" % p.port, connections=20, duration=duration, threads=2)
    gen0 = p.generation()
    start = time.monotonic()
    for i in range(50):
        # Spread the 50 changes over the load window.
        target = start + 0.5 + i * (duration - 2.0) / 50
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        p.reload(cfg(i), timeout=5)
        assert run.proc.poll() is None or i > 45, "wrk ended before the reloads were done"
    res = run.wait()
    print("hot reload under load: %s" % {k: v for k, v in res.items() if k != "output"})
    assert p.generation() >= gen0 + 50
    assert p.metrics().value("portico_config_routes") == 51
    assert served_by(p, "x49.test") == (200, "load2")
    assert res["requests"] > 1000, res
    assert res["non2xx"] == 0, "non-2xx responses during reloads: %s" % res
    assert res["socket_errors"] == 0, "socket errors during reloads: %s" % res
