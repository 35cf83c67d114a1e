"""The prometheus plugin (APISIX 3.x) in the three modes (file, admin, hybrid): portico_http_status,
portico_http_latency and portico_bandwidth on the status listener's /metrics, labelled by route, service,
consumer and node, for the routes that configure it (on the route, its service or a global rule) and only
those. Each test uses its own route ids: the series of a module-scoped gateway add up across tests."""

import pytest

from conftest import route, wait_for

LATENCY_BOUNDS = ["1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "2000", "5000", "10000",
                  "30000", "60000", "+Inf"]


@pytest.fixture
def gw(gateway_module):
    return gateway_module


def status_count(m, **labels):
    return m.value("portico_http_status", **labels)


def statuses(m, route_label):
    """{(code, consumer): count} of portico_http_status for one route label."""
    out = {}
    for _, labels, v in m.find("portico_http_status", route=route_label):
        key = (labels["code"], labels["consumer"])
        out[key] = out.get(key, 0) + v
    return out


def settled_metrics(gw, **expected):
    """The metrics once every route label in `expected` has counted that many requests: the log phase that counts
    a request runs after its response is sent, so a scrape right after the last response may precede it."""
    def counted():
        m = gw.metrics()
        return m if all(sum(statuses(m, r).values()) == n for r, n in expected.items()) else None
    return wait_for(counted, message="metrics never counted %r" % (expected,))


def get(gw, target, host, n=1, **kw):
    for _ in range(n):
        r = gw.request("GET", target, host=host, **kw)
    return r.status


def test_counts_by_route_service_and_consumer(gw):
    plain = route("pm-route", "/id", gw.origin, host="pm-a.test", plugins={"prometheus": {}})
    by_service = route("pm-svc-route", "/id", host="pm-b.test", service_id="pm-svc")
    auth = route("pm-auth", "/status/*", gw.origin, host="pm-c.test",
                 plugins={"prometheus": {}, "key-auth": {}})
    gw.apply({
        "services": [{"id": "pm-svc", "upstream": gw.upstream(), "plugins": {"prometheus": {}}}],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}},
                      {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}}],
        "routes": [plain, by_service, auth],
    })
    assert get(gw, "/id", "pm-a.test", n=3) == 200
    assert get(gw, "/id", "pm-b.test", n=2) == 200
    assert get(gw, "/status/201", "pm-c.test", n=2, headers=[("apikey", "jack-key")]) == 201
    assert get(gw, "/status/404", "pm-c.test", headers=[("apikey", "jack-key")]) == 404
    assert get(gw, "/status/200", "pm-c.test", headers=[("apikey", "rose-key")]) == 200
    assert get(gw, "/status/200", "pm-c.test", n=2) == 401  # key-auth answers: no consumer, no node

    m = settled_metrics(gw, **{"pm-route": 3, "pm-svc-route": 2, "pm-auth": 6})
    assert status_count(m, code="200", route="pm-route", matched_uri="/id", matched_host="pm-a.test",
                        service="", consumer="", node="127.0.0.1") == 3, m.text
    assert status_count(m, code="200", route="pm-svc-route", service="pm-svc", consumer="",
                        node="127.0.0.1") == 2
    assert statuses(m, "pm-auth") == {("201", "jack"): 2, ("404", "jack"): 1, ("200", "rose"): 1,
                                      ("401", ""): 2}
    assert status_count(m, code="401", route="pm-auth", node="", matched_uri="/status/*") == 2
    # Latency and bandwidth by route, service, consumer and node.
    assert m.value("portico_http_latency_count", type="request", route="pm-auth", service="",
                   consumer="jack", node="127.0.0.1") == 3
    assert m.value("portico_http_latency_count", type="request", route="pm-auth", consumer="", node="") == 2
    assert not m.has("portico_http_latency_count", type="upstream", route="pm-auth", consumer="")
    assert m.value("portico_bandwidth", type="ingress", route="pm-route") >= 3 * len("GET /id HTTP/1.1\r\n")
    assert m.value("portico_bandwidth", type="egress", route="pm-route") > 3 * len("HTTP/1.1 200 OK\r\n")


def test_latency_histogram_is_consistent(gw):
    gw.apply({"routes": [route("pm-lat", "/delay/*", gw.origin, host="pm-lat.test",
                               plugins={"prometheus": {}})]})
    n = 4
    assert get(gw, "/delay/30", "pm-lat.test", n=n) == 200

    m = settled_metrics(gw, **{"pm-lat": n})
    assert status_count(m, route="pm-lat") == n
    for kind in ("request", "upstream", "apisix"):
        labels = dict(type=kind, route="pm-lat", service="", consumer="", node="127.0.0.1")
        buckets = [m.value("portico_http_latency_bucket", le=le, **labels) for le in LATENCY_BOUNDS]
        assert buckets == sorted(buckets), (kind, buckets)  # cumulative
        assert buckets[-1] == m.value("portico_http_latency_count", **labels) == n, (kind, buckets)
    # The origin waited 30 ms each time: nothing at or under 20 ms, upstream included.
    for kind in ("request", "upstream"):
        labels = dict(type=kind, route="pm-lat")
        assert m.value("portico_http_latency_bucket", le="20", **labels) == 0, m.text
        assert m.value("portico_http_latency_sum", **labels) >= 30 * n
    request = m.value("portico_http_latency_sum", type="request", route="pm-lat")
    upstream = m.value("portico_http_latency_sum", type="upstream", route="pm-lat")
    apisix = m.value("portico_http_latency_sum", type="apisix", route="pm-lat")
    assert apisix <= request - upstream + 1, (request, upstream, apisix)


def test_a_route_without_the_plugin_is_not_counted(gw):
    gw.apply({"routes": [route("pm-on", "/id", gw.origin, host="pm-on.test", plugins={"prometheus": {}}),
                         route("pm-off", "/id", gw.origin, host="pm-off.test")]})
    assert get(gw, "/id", "pm-off.test", n=3) == 200
    assert get(gw, "/id", "pm-on.test") == 200
    m = settled_metrics(gw, **{"pm-on": 1})
    assert status_count(m, route="pm-on") == 1
    assert not m.has("portico_http_status", route="pm-off")
    assert not m.has("portico_http_latency_count", route="pm-off")
    assert not m.has("portico_bandwidth", route="pm-off")
    # The process-wide per-route counter still sees it.
    assert m.value("portico_http_requests_total", route="pm-off") == 3


def test_a_global_rule_counts_every_route_once(gw):
    gw.apply({
        "global_rules": [{"id": "pm-global", "plugins": {"prometheus": {}}}],
        "routes": [route("pm-g1", "/id", gw.origin, host="pm-g1.test"),
                   route("pm-g2", "/echo", gw.origin, host="pm-g2.test", plugins={"key-auth": {}}),
                   # Its own prometheus wins over the global rule's (run_policy prefer_route): counted once,
                   # under its name.
                   route("pm-g3", "/id", gw.origin, host="pm-g3.test", name="g3-name",
                         plugins={"prometheus": {"prefer_name": True}})],
    })
    assert get(gw, "/id", "pm-g1.test", n=2) == 200
    assert get(gw, "/echo", "pm-g2.test") == 401
    assert get(gw, "/id", "pm-g3.test", n=3) == 200
    m = settled_metrics(gw, **{"pm-g1": 2, "pm-g2": 1, "g3-name": 3})
    assert statuses(m, "pm-g1") == {("200", ""): 2}, [l for l in m.text.splitlines() if "http_status" in l]
    assert statuses(m, "pm-g2") == {("401", ""): 1}
    assert statuses(m, "g3-name") == {("200", ""): 3}
    assert not m.has("portico_http_status", route="pm-g3")
    # Without the global rule, those routes are no longer counted.
    gw.apply({"routes": [route("pm-g1", "/id", gw.origin, host="pm-g1.test")]})
    assert get(gw, "/id", "pm-g1.test") == 200
    assert statuses(gw.metrics(), "pm-g1") == {("200", ""): 2}


def test_prefer_name_and_matched_patterns(gw):
    gw.apply({
        "services": [{"id": "pm-ns", "name": "shop", "upstream": gw.upstream(), "hosts": ["*.pm-shop.test"]}],
        "routes": [route("pm-named", ["/status/*", "/status/201"], name="orders", service_id="pm-ns",
                         plugins={"prometheus": {"prefer_name": True}}),
                   route("pm-unnamed", "/id", gw.origin, host="pm-u.test",
                         plugins={"prometheus": {"prefer_name": True}})],
    })
    assert get(gw, "/status/202", "a.pm-shop.test") == 202
    assert get(gw, "/status/201", "b.pm-shop.test") == 201
    assert get(gw, "/id", "pm-u.test") == 200
    m = settled_metrics(gw, orders=2, **{"pm-unnamed": 1})
    assert status_count(m, code="202", route="orders", service="shop", matched_uri="/status/*",
                        matched_host="*.pm-shop.test") == 1, m.text
    assert status_count(m, code="201", route="orders", service="shop", matched_uri="/status/201") == 1
    assert not m.has("portico_http_status", route="pm-named")
    assert status_count(m, route="pm-unnamed", service="", matched_host="pm-u.test") == 1  # no name: the id


def test_schema(gw):
    base = route("pm-bad", "/id", gw.origin, host="pm-bad.test")
    for conf in ({"prefer_name": "yes"}, {"unknown": 1}):
        err = gw.apply_expect_error({"routes": [dict(base, plugins={"prometheus": conf})]})
        assert err.resource == ("routes", "pm-bad"), err
        assert any("prometheus" in f for f in err.fields), err
    gw.apply({"routes": [dict(base, plugins={"prometheus": {}})]})
    assert get(gw, "/id", "pm-bad.test") == 200
