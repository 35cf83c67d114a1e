"""Route matching end to end. Every route sends to its own origin listener whose id is the route id, so the
X-Origin-Id of the answer says which route matched."""

import json

import pytest

from conftest import RawConn, make_config, upstream

ROUTE_IDS = [
    "exact", "prefix", "prefix_exact", "param", "multi",
    "host_exact", "host_wild", "host_default",
    "m_get", "m_post",
    "ra_one", "ra_net",
    "v_eq", "v_ne", "v_re", "v_rei", "v_in", "v_gt", "v_neg", "v_and",
    "prio_low", "prio_high", "tie_a", "tie_b", "pspec_prefix", "pspec_exact",
    "dis_on",
    "svc_route", "svc_own_host", "up_ref",
    "svc", "up_named", "dis_off",
]


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    origins = dict(zip(ROUTE_IDS, origin_module(*ROUTE_IDS)))

    def up(rid):
        return upstream(origins[rid])

    def r(rid, **kw):
        d = {"id": rid}
        d.update(kw)
        if not any(k in d for k in ("upstream", "upstream_id", "service_id")):
            d["upstream"] = up(rid)
        return d

    routes = [
        r("exact", uri="/exact"),
        r("prefix", uri="/pre/*"),
        r("prefix_exact", uri="/pre/exact"),
        r("param", uri="/users/:id"),
        r("multi", uris=["/multi1", "/multi2"]),
        r("host_exact", uri="/h", host="api.example.com"),
        r("host_wild", uri="/h", hosts=["*.wild.test", "other.test"]),
        r("host_default", uri="/h"),
        r("m_get", uri="/m", methods=["GET"]),
        r("m_post", uri="/m", methods=["POST", "PUT"]),
        r("ra_one", uri="/ra", remote_addrs=["127.0.0.2"]),
        r("ra_net", uri="/ra", remote_addrs=["127.0.0.1", "127.0.1.0/24"]),
        r("v_eq", uri="/v/eq", vars=[["http_x_user", "==", "alice"]]),
        r("v_ne", uri="/v/ne", vars=[["http_x_tier", "~=", "free"]]),
        r("v_re", uri="/v/re", vars=[["arg_v", "~~", "^b[0-9]+$"]]),
        r("v_rei", uri="/v/rei", vars=[["arg_v", "~*", "^b[0-9]+$"]]),
        r("v_in", uri="/v/in", vars=[["cookie_c", "in", ["1", "2"]]]),
        r("v_gt", uri="/v/gt", vars=[["arg_n", ">", 10]]),
        r("v_neg", uri="/v/neg", vars=[["http_x_user", "!", "==", "alice"]]),
        r("v_and", uri="/v/and", vars=[["http_x_a", "==", "1"], ["arg_b", "==", "2"]]),
        r("prio_low", uri="/prio", priority=0),
        r("prio_high", uri="/prio", priority=10),
        r("tie_a", uri="/tie"),
        r("tie_b", uri="/tie"),
        r("pspec_prefix", uri="/pspec/*", priority=5),
        r("pspec_exact", uri="/pspec/x", priority=0),
        r("dis_off", uri="/dis", priority=100, status=0),
        r("dis_on", uri="/dis"),
        r("svc_route", uri="/svc", service_id="s1"),
        r("svc_own_host", uri="/svc2", service_id="s1", host="own.test"),
        r("up_ref", uri="/upref", upstream_id="u1"),
    ]
    services = [{"id": "s1", "upstream": up("svc"), "hosts": ["svc.test"]}]
    upstreams = [dict(up("up_named"), id="u1")]
    p = portico_module(make_config(routes, upstreams=upstreams, services=services))
    return p, origins


def which(p, target, method="GET", host="any.test", headers=(), source=None, body=None):
    """Route id that served the request (X-Origin-Id), or 404."""
    with RawConn(p.port, source=source) as c:
        r = c.request(method, target, host=host, headers=headers, body=body)
    if r.status == 404 and r.header("X-Origin-Id") is None:
        assert json.loads(r.body) == {"error_msg": "404 Route Not Found"}, r
        return 404
    assert r.status in (200, 404), r  # origin endpoints answer 404 for these paths; the header says who
    return r.header("X-Origin-Id")


CASES = [
    # path forms
    ("exact", dict(target="/exact")),
    ("exact", dict(target="/exact?x=1")),
    (404, dict(target="/exact/more")),
    (404, dict(target="/exac")),
    ("prefix", dict(target="/pre/a/b/c")),
    ("prefix", dict(target="/pre/")),
    ("prefix_exact", dict(target="/pre/exact")),
    ("prefix", dict(target="/pre/exact/x")),
    ("param", dict(target="/users/42")),
    ("param", dict(target="/users/alice?x=y")),
    (404, dict(target="/users/42/extra")),
    ("multi", dict(target="/multi1")),
    ("multi", dict(target="/multi2")),
    (404, dict(target="/multi3")),
    # hosts
    ("host_exact", dict(target="/h", host="api.example.com")),
    ("host_exact", dict(target="/h", host="API.Example.COM")),
    ("host_exact", dict(target="/h", host="api.example.com:8080")),
    ("host_wild", dict(target="/h", host="a.wild.test")),
    ("host_wild", dict(target="/h", host="b.c.wild.test")),
    ("host_wild", dict(target="/h", host="other.test")),
    ("host_default", dict(target="/h", host="wild.test")),
    ("host_default", dict(target="/h", host="api.example.org")),
    # methods
    ("m_get", dict(target="/m")),
    ("m_post", dict(target="/m", method="POST", body=b"x")),
    ("m_post", dict(target="/m", method="PUT", body=b"x")),
    (404, dict(target="/m", method="DELETE")),
    # remote_addrs (loopback source addresses)
    ("ra_one", dict(target="/ra", source="127.0.0.2")),
    ("ra_net", dict(target="/ra", source="127.0.0.1")),
    ("ra_net", dict(target="/ra", source="127.0.1.77")),
    (404, dict(target="/ra", source="127.0.0.5")),
    # vars
    ("v_eq", dict(target="/v/eq", headers=[("X-User", "alice")])),
    (404, dict(target="/v/eq", headers=[("X-User", "bob")])),
    (404, dict(target="/v/eq")),
    ("v_ne", dict(target="/v/ne", headers=[("X-Tier", "gold")])),
    (404, dict(target="/v/ne", headers=[("X-Tier", "free")])),
    ("v_re", dict(target="/v/re?v=b12")),
    (404, dict(target="/v/re?v=c12")),
    (404, dict(target="/v/re?v=B12")),
    ("v_rei", dict(target="/v/rei?v=B12")),
    (404, dict(target="/v/rei?v=x12")),
    ("v_in", dict(target="/v/in", headers=[("Cookie", "a=x; c=2")])),
    ("v_in", dict(target="/v/in", headers=[("Cookie", "c=1")])),
    (404, dict(target="/v/in", headers=[("Cookie", "a=x; c=3")])),
    ("v_gt", dict(target="/v/gt?n=11")),
    ("v_gt", dict(target="/v/gt?n=100")),
    (404, dict(target="/v/gt?n=9")),
    ("v_neg", dict(target="/v/neg", headers=[("X-User", "bob")])),
    (404, dict(target="/v/neg", headers=[("X-User", "alice")])),
    ("v_and", dict(target="/v/and?b=2", headers=[("X-A", "1")])),
    (404, dict(target="/v/and?b=3", headers=[("X-A", "1")])),
    (404, dict(target="/v/and?b=2", headers=[("X-A", "2")])),
    # priority and ties
    ("prio_high", dict(target="/prio")),
    ("tie_a", dict(target="/tie")),
    ("pspec_prefix", dict(target="/pspec/x")),
    # status 0
    ("dis_on", dict(target="/dis")),
    # services and upstream references
    ("svc", dict(target="/svc", host="svc.test")),
    (404, dict(target="/svc", host="elsewhere.test")),
    ("svc", dict(target="/svc2", host="own.test")),
    (404, dict(target="/svc2", host="svc.test")),
    ("up_named", dict(target="/upref")),
    # nothing at all
    (404, dict(target="/nothing/here")),
]


@pytest.mark.parametrize("expected,req", CASES,
                         ids=["%s-%s" % (c[0], c[1]["target"] + "|" + c[1].get("host", "")
                                         + "|" + c[1].get("method", "") + "|" + c[1].get("source", "")
                                         + "|" + ",".join("%s=%s" % h for h in c[1].get("headers", [])))
                              for c in CASES])
def test_route_matching(env, expected, req):
    p, _ = env
    assert which(p, **req) == expected


def test_404_body_is_json(env):
    p, _ = env
    with RawConn(p.port) as c:
        r = c.request("GET", "/no/such/route")
        assert r.status == 404
        assert json.loads(r.body) == {"error_msg": "404 Route Not Found"}
        # A 404 from the gateway is not a parse error: the connection stays usable.
        r2 = c.request("GET", "/exact")
        assert r2.header("X-Origin-Id") == "exact"


def test_disabled_route_gets_no_traffic(env):
    p, origins = env
    for _ in range(3):
        assert which(p, "/dis") == "dis_on"
    assert origins["dis_off"].hits() == 0
