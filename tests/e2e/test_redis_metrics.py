"""Redis as operators watch it (/metrics, src/redis/registry.h render_metrics): the rate-limit plugins' Redis
calls by outcome, each node's circuit breaker state, and how often it opened — so a dashboard shows a Redis
outage (and that allow_degradation is letting requests through) while /readyz stays 200 by design."""

from conftest import LOOPBACK, make_config, route, wait_for


def conf(r):
    return {"count": 1000000, "time_window": 60, "key_type": "constant", "key": "m", "policy": "redis",
            "redis_host": LOOPBACK, "redis_port": r.port, "redis_timeout": 300, "allow_degradation": True}


def test_redis_calls_breaker_and_outages_are_in_metrics(origin, portico, redis):
    r = redis()
    o = origin("o")
    p = portico(make_config([route("m", "/id", o, plugins={"limit-count": conf(r)})]))
    target = dict(target="%s:%d" % (LOOPBACK, r.port), mode="standalone")
    for _ in range(5):
        assert p.request("GET", "/id").status == 200
    m = p.metrics()
    assert m.value("portico_redis_calls_total", result="ok", **target) >= 5, m.text
    assert m.value("portico_redis_calls_total", result="timeout", **target) == 0
    assert m.value("portico_redis_node_up", node="%s:%d" % (LOOPBACK, r.port), **target) == 1

    r.kill()
    # Degraded: requests pass, and the outage shows.
    for _ in range(5):
        assert p.request("GET", "/id").status == 200
    m = p.metrics()
    failed = sum(m.value("portico_redis_calls_total", result=x, **target) for x in ("unavailable", "timeout"))
    assert failed >= 5, m.text
    assert m.value("portico_redis_node_up", **target) == 0, m.text
    assert m.value("portico_redis_circuit_opens_total", **target) >= 1
    assert p.status_get("/readyz")[0] == 200

    r.start()

    def recovered():
        p.request("GET", "/id")
        return p.metrics().value("portico_redis_node_up", **target) == 1

    wait_for(recovered, timeout=10, message="the breaker closes once Redis answers again")
    ok_before = p.metrics().value("portico_redis_calls_total", result="ok", **target)
    assert p.request("GET", "/id").status == 200
    assert p.metrics().value("portico_redis_calls_total", result="ok", **target) > ok_before
