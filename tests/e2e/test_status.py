"""The status listener: /healthz, /readyz, /metrics and /status/config."""

import hashlib
import re
import time

import pytest

from conftest import RawConn, http_request, make_config, route, wait_for


@pytest.fixture
def env(origin, portico):
    o = origin("st")
    p = portico(make_config([route("r1", "/*", o, host="one.test"), route("r2", "/id", o)]))
    return p, o


def test_health_and_ready(env):
    p, _ = env
    assert p.status_get("/healthz")[0] == 200
    assert p.status_get("/readyz")[0] == 200
    assert p.status_get("/no-such-status-page")[0] == 404


def test_request_counters_move_exactly(env):
    p, _ = env
    m0 = p.metrics()
    with RawConn(p.port) as c:
        for _ in range(5):
            assert c.request("GET", "/echo", host="one.test").status == 200
        assert c.request("GET", "/status/503", host="one.test").status == 503
        for _ in range(3):
            assert c.request("GET", "/nothing", host="x.test").status == 404

    def delta(name, **labels):
        return p.metrics().value(name, **labels) - m0.value(name, **labels)

    wait_for(lambda: delta("portico_http_requests_total", route="r1", code="2xx") == 5, timeout=3,
             message=lambda: "r1 2xx to grow by exactly 5 (grew by %s)"
             % delta("portico_http_requests_total", route="r1", code="2xx"))
    assert delta("portico_http_requests_total", route="r1", code="5xx") == 1
    assert delta("portico_http_requests_total", code="4xx") == 3
    assert delta("portico_http_requests_total", route="r2") == 0
    # Every request answered (routed or not) is timed.
    assert delta("portico_http_request_duration_seconds_count") == 9
    assert delta("portico_upstream_duration_seconds_count") >= 6


def test_histograms_are_consistent(env):
    p, _ = env
    assert p.get("/delay/300", host="one.test").status == 200
    m = wait_for(lambda: (lambda mm: mm.value("portico_http_request_duration_seconds_count") >= 1
                          and mm)(p.metrics()), timeout=3, message="a request duration sample")
    for base in ("portico_http_request_duration_seconds", "portico_upstream_duration_seconds"):
        assert m.has(base + "_bucket"), "no %s_bucket samples" % base
        series = {}
        for n, l, v in m.samples:
            if n == base + "_bucket":
                key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
                series.setdefault(key, []).append((float("inf") if l["le"] == "+Inf" else float(l["le"]), v))
        for key, bs in series.items():
            bs.sort()
            values = [v for _, v in bs]
            assert values == sorted(values), "%s%s buckets not cumulative: %r" % (base, key, bs)
            assert bs[-1][0] == float("inf"), "%s%s has no +Inf bucket" % (base, key)
            labels = dict(key)
            assert bs[-1][1] == m.value(base + "_count", **labels), "%s%s +Inf != count" % (base, key)
    assert m.value("portico_http_request_duration_seconds_sum") >= 0.3
    assert m.value("portico_upstream_duration_seconds_sum") >= 0.3


def test_connections_open_gauge(env):
    p, _ = env
    base = p.metrics().value("portico_connections_open")
    conns = [RawConn(p.port) for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/id").status == 200
        wait_for(lambda: p.metrics().value("portico_connections_open") >= base + 3, timeout=3,
                 message="portico_connections_open to count 3 more connections")
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: p.metrics().value("portico_connections_open") <= base, timeout=3,
             message="portico_connections_open to drop back")


def test_metrics_exposition_and_names(env):
    p, _ = env
    p.get("/id")
    st, headers, body = http_request(p.status_port, "GET", "/metrics")
    assert st == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    m = p.metrics()
    for name in ["portico_http_requests_total", "portico_http_request_duration_seconds_bucket",
                 "portico_http_request_duration_seconds_sum", "portico_http_request_duration_seconds_count",
                 "portico_upstream_duration_seconds_bucket", "portico_upstream_connect_errors_total",
                 "portico_upstream_retries_total", "portico_connections_open", "portico_config_generation",
                 "portico_config_routes", "portico_config_apply_failures_total",
                 "portico_config_last_success_timestamp_seconds"]:
        assert m.has(name), "metric %s missing" % name


def test_config_metrics_and_status_config(env):
    p, _ = env
    st = p.config_status()
    assert st["generation"] >= 1
    assert st["routes"] == 2
    assert st["source"] == "file"
    assert st["hash"] == hashlib.sha256(p.config_bytes).hexdigest()
    assert not st.get("last_error")
    m = p.metrics()
    assert m.value("portico_config_generation") == st["generation"]
    assert m.value("portico_config_routes") == 2
    assert m.value("portico_config_apply_failures_total") == 0
    ts = m.value("portico_config_last_success_timestamp_seconds")
    assert time.time() - 120 < ts <= time.time() + 1
    log = p.error_log()
    assert re.search(r"listening on 127\.0\.0\.1:%d\b" % p.port, log), log[-2000:]
    assert re.search(r"config applied generation=%d routes=2 hash=%s" % (st["generation"], st["hash"]), log), \
        log[-2000:]


def test_readyz_503_until_a_config_is_loaded(origin, portico):
    o = origin("late")
    p = portico("routes: [\n#END\n", wait_ready=False)  # a broken file: nothing loaded yet
    assert p.status_get("/healthz")[0] == 200
    assert p.status_get("/readyz")[0] == 503
    p.write_config(make_config([route("r", "/id", o)]))
    wait_for(lambda: p.status_get("/readyz")[0] == 200, timeout=5, message="/readyz 200 once a config loads")
    r = p.get("/id")
    assert r.status == 200 and r.body == b"late\n"
