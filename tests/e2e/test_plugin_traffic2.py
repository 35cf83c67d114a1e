"""cors, ip-restriction, consumer-restriction, fault-injection and mocking through a running gateway, in the
three ways a configuration arrives (file, admin, hybrid; gateway_modes.py): what the client gets, and what the
origin saw (gw.origin_seen()) or did not see.

The module's gateways listen on [::]:PORT (dual stack) so that ip-restriction meets both an IPv4 (127.0.0.1)
and an IPv6 (::1) client, and run one worker: a fault-injection delay must leave that worker free to serve
other connections meanwhile.
"""

import socket
import threading
import time

import pytest

from conftest import RawConn, free_port, route
from gateway_modes import MODES, start_gateway

KEY_JACK1 = "jack1-key-0123456789"
KEY_JACK2 = "jack2-key-0123456789"
CONSUMERS = [
    {"username": "jack1", "plugins": {"key-auth": {"key": KEY_JACK1}}},
    {"username": "jack2", "plugins": {"key-auth": {"key": KEY_JACK2}}},
]
PREFLIGHT = [("Origin", "http://a.test"), ("Access-Control-Request-Method", "PUT"),
             ("Access-Control-Request-Headers", "x-token")]


@pytest.fixture(scope="module", params=MODES)
def gw(request, tmp_path_factory):
    etcd = None if request.param == "file" else request.getfixturevalue("gateway_etcd")
    port = free_port()
    g = start_gateway(request.param, tmp_path_factory.mktemp("traffic2-" + request.param), etcd=etcd,
                      listen="[::]:%d" % port, workers=1)
    g.proxy.port = port  # the --listen above replaces the harness's 127.0.0.1 one
    yield g
    g.stop()


def request_from(gw, client, method, target, headers=(), host="test.local", timeout=10.0):
    """One request from `client` ("127.0.0.1" or "::1") to the gateway's dual-stack listener."""
    family = socket.AF_INET6 if ":" in client else socket.AF_INET
    conn = RawConn.__new__(RawConn)
    conn.sock = socket.socket(family, socket.SOCK_STREAM)
    conn.sock.settimeout(timeout)
    conn.sock.connect((client, gw.proxy.port))
    conn.buf = bytearray()
    conn.eof = False
    with conn:
        return conn.request(method, target, host=host, headers=headers)


def cors_headers(r):
    return {k.lower(): v for k, v in r.headers if k.lower().startswith("access-control-") or k.lower() == "vary"}


# ---- cors -------------------------------------------------------------------------------------------------

def test_cors_preflight_is_answered_without_reaching_the_origin(gw):
    cors = {"allow_origins": "http://a.test,http://b.test", "allow_methods": "GET,PUT", "allow_headers": "**",
            "expose_headers": "x-served-by", "max_age": 60}
    gw.apply({"routes": [route("cors", "/echo", gw.origin, plugins={"cors": cors})]})

    r = gw.request("OPTIONS", "/echo", headers=PREFLIGHT)
    assert r.status == 200 and r.body == b"", r
    assert cors_headers(r) == {"access-control-allow-origin": "http://a.test", "vary": "Origin",
                               "access-control-allow-methods": "GET,PUT", "access-control-max-age": "60",
                               "access-control-expose-headers": "x-served-by",
                               "access-control-allow-headers": "x-token"}, r.headers
    assert gw.origin_seen() == []

    # An OPTIONS that is no preflight is the origin's to answer.
    assert gw.request("OPTIONS", "/echo", headers=[("Origin", "http://a.test")]).status == 200
    assert [s["method"] for s in gw.origin_seen()] == ["OPTIONS"]

    # A simple request: forwarded, the origin's own CORS fields replaced by the plugin's.
    r = gw.get("/echo?rh=Access-Control-Allow-Origin:*", headers=[("Origin", "http://b.test")])
    assert r.status == 200, r
    assert r.header_all("Access-Control-Allow-Origin") == ["http://b.test"], r.headers
    # An origin that is not listed: forwarded, no CORS fields added.
    r = gw.get("/echo", headers=[("Origin", "http://evil.test")])
    assert r.status == 200 and cors_headers(r) == {}, r.headers
    assert len(gw.origin_seen()) == 3


def test_cors_headers_on_a_401_from_key_auth_and_preflight_before_auth(gw):
    plugins = {"cors": {"allow_origins_by_regex": [r"^http://.*\.a\.test$"]}, "key-auth": {}}
    gw.apply({"consumers": CONSUMERS, "routes": [route("cors-auth", "/echo", gw.origin, plugins=plugins)]})

    r = gw.get("/echo", headers=[("Origin", "http://app.a.test")])
    assert r.status == 401 and r.json() == {"message": "Missing API key in request"}, r
    assert r.header("Access-Control-Allow-Origin") == "http://app.a.test", r.headers
    assert r.header("Access-Control-Allow-Methods") == "*"
    # cors (4000) runs before key-auth (2500): the preflight needs no key.
    r = gw.request("OPTIONS", "/echo", headers=[("Origin", "http://app.a.test"),
                                                ("Access-Control-Request-Method", "POST")])
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") == "http://app.a.test", r
    assert gw.origin_seen() == []
    r = gw.get("/echo", headers=[("Origin", "http://app.a.test"), ("apikey", KEY_JACK1)])
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") == "http://app.a.test", r
    assert len(gw.origin_seen()) == 1


# ---- ip-restriction ---------------------------------------------------------------------------------------

def test_ip_restriction_over_ipv4_and_ipv6_clients(gw):
    gw.apply({"routes": [
        route("v4-only", "/echo", gw.origin, host="white.test",
              plugins={"ip-restriction": {"whitelist": ["127.0.0.0/8", "10.0.0.0/8"]}}),
        route("no-v6", "/echo", gw.origin, host="black.test",
              plugins={"ip-restriction": {"blacklist": ["::1/128"], "message": "no loopback v6",
                                          "response_code": 404}}),
    ]})
    r = request_from(gw, "::1", "GET", "/echo", host="white.test")
    assert r.status == 403 and r.json() == {"message": "Your IP address is not allowed"}, r
    r = request_from(gw, "::1", "GET", "/echo", host="black.test")
    assert r.status == 404 and r.json() == {"message": "no loopback v6"}, r
    assert gw.origin_seen() == []

    assert request_from(gw, "127.0.0.1", "GET", "/echo", host="white.test").status == 200
    assert request_from(gw, "127.0.0.1", "GET", "/echo", host="black.test").status == 200
    seen = gw.origin_seen()
    assert len(seen) == 2 and all(s["target"] == "/echo" for s in seen), seen


# ---- consumer-restriction ---------------------------------------------------------------------------------

def test_consumer_restriction_with_key_auth_consumers(gw):
    consumers = CONSUMERS + [{"username": "jack3", "plugins": {
        "key-auth": {"key": "jack3-key-0123456789"},
        # On the consumer: jack3 may use route cr-open only.
        "consumer-restriction": {"type": "route_id", "whitelist": ["cr-open"], "rejected_code": 401}}}]
    gw.apply({"consumers": consumers, "routes": [
        route("cr-white", "/echo", gw.origin, host="white.test",
              plugins={"key-auth": {}, "consumer-restriction": {"whitelist": ["jack1", "jack3"]}}),
        route("cr-methods", "/echo", gw.origin, host="methods.test",
              plugins={"key-auth": {}, "consumer-restriction": {
                  "allowed_by_methods": [{"user": "jack2", "methods": ["POST"]}],
                  "rejected_msg": "jack2 may only POST"}}),
        route("cr-noauth", "/echo", gw.origin, host="noauth.test",
              plugins={"consumer-restriction": {"blacklist": ["jack2"]}}),
        route("cr-open", "/echo", gw.origin, host="open.test", plugins={"key-auth": {}}),
    ]})

    def call(host, key, method="GET"):
        return gw.request(method, "/echo", host=host, headers=[("apikey", key)] if key else ())

    assert call("white.test", KEY_JACK1).status == 200
    r = call("white.test", KEY_JACK2)
    assert r.status == 403 and r.json() == {"message": "The consumer_name is forbidden."}, r
    r = call("white.test", "jack3-key-0123456789")  # whitelisted here, but its own rule names cr-open only
    assert r.status == 401 and r.json() == {"message": "The route_id is forbidden."}, r
    assert call("open.test", "jack3-key-0123456789").status == 200

    r = call("methods.test", KEY_JACK2)
    assert r.status == 403 and r.json() == {"message": "jack2 may only POST"}, r
    assert call("methods.test", KEY_JACK2, "POST").status == 200
    assert call("methods.test", KEY_JACK1).status == 200

    r = call("noauth.test", KEY_JACK1)  # no auth plugin: nobody is identified
    assert r.status == 401, r
    assert r.json() == {"message": "The request is rejected, please check the consumer_name for this request"}

    seen = gw.origin_seen()
    assert sorted((s["method"], dict((k.lower(), v) for k, v in s["headers"]).get("x-consumer-username"))
                  for s in seen) == [("GET", "jack1"), ("GET", "jack1"), ("GET", "jack3"), ("POST", "jack2")]


# ---- fault-injection --------------------------------------------------------------------------------------

def test_fault_injection_abort(gw):
    gw.apply({"routes": [
        route("abort", "/echo", gw.origin, host="abort.test", plugins={"fault-injection": {"abort": {
            "http_status": 503, "body": "injected for $remote_addr (${arg_who})\n",
            "headers": {"Retry-After": 30, "X-Fault": "$request_method"}}}}),
        route("abort-vars", "/echo", gw.origin, host="vars.test", plugins={"fault-injection": {"abort": {
            "http_status": 418, "vars": [[["arg_fault", "==", "1"]], [["http_x_fault", "==", "yes"]]]}}}),
    ]})
    r = gw.get("/echo?who=me", host="abort.test")
    assert r.status == 503 and r.body == b"injected for 127.0.0.1 (me)\n", r
    assert r.header("Retry-After") == "30" and r.header("X-Fault") == "GET", r.headers
    assert gw.get("/echo", host="abort.test").body == b"injected for 127.0.0.1 ()\n"
    assert gw.origin_seen() == []

    assert gw.get("/echo?fault=1", host="vars.test").status == 418
    assert gw.get("/echo", host="vars.test", headers=[("X-Fault", "yes")]).status == 418
    assert gw.origin_seen() == []
    assert gw.get("/echo?fault=2", host="vars.test").status == 200
    assert len(gw.origin_seen()) == 1


def test_fault_injection_delay_does_not_block_the_worker(gw):
    gw.apply({"routes": [
        route("slow", "/echo", gw.origin, host="slow.test",
              plugins={"fault-injection": {"delay": {"duration": 1.5}}}),
        route("fast", "/echo", gw.origin, host="fast.test"),
    ]})
    done = {}

    def slow():
        t0 = time.monotonic()
        done["status"] = gw.get("/echo", host="slow.test").status
        done["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=slow, daemon=True)
    t0 = time.monotonic()
    t.start()
    # The one worker serves other connections while the slow request waits.
    while "status" not in done and time.monotonic() - t0 < 0.5:
        assert gw.get("/echo", host="fast.test").status == 200
    assert "status" not in done, "the delayed request finished before its delay"
    fast_at = time.monotonic() - t0
    t.join(10)
    assert done.get("status") == 200, done
    assert done["elapsed"] >= 1.5, done
    assert fast_at < 1.5
    hosts = [dict((k.lower(), v) for k, v in s["headers"])["host"] for s in gw.origin_seen()]
    assert hosts.count("slow.test") == 1 and hosts.count("fast.test") >= 1, hosts


def test_fault_injection_delay_then_abort(gw):
    gw.apply({"routes": [route("both", "/echo", gw.origin, plugins={"fault-injection": {
        "delay": {"duration": 0.5}, "abort": {"http_status": 500, "body": "late failure"}}})]})
    t0 = time.monotonic()
    r = gw.get("/echo")
    assert time.monotonic() - t0 >= 0.5
    assert r.status == 500 and r.body == b"late failure", r
    assert gw.origin_seen() == []


# ---- mocking ----------------------------------------------------------------------------------------------

def test_mocking_answers_in_place_of_the_origin(gw):
    gw.apply({"routes": [
        route("mock", "/echo", gw.origin, host="mock.test", plugins={"mocking": {
            "response_status": 201, "response_example": '{"client":"$remote_addr"}',
            "response_headers": {"X-Mock": "yes"}}}),
        route("mock-slow", "/echo", gw.origin, host="mock-slow.test", plugins={"mocking": {
            "response_example": "later", "content_type": "text/plain", "with_mock_header": False,
            "delay": 1}}),
    ]})
    r = gw.get("/echo", host="mock.test")
    assert r.status == 201 and r.json() == {"client": "127.0.0.1"}, r
    assert r.header("Content-Type") == "application/json;charset=utf8"
    assert r.header("x-mock-by", "").startswith("Portico/") and r.header("X-Mock") == "yes", r.headers
    t0 = time.monotonic()
    r = gw.get("/echo", host="mock-slow.test")
    assert time.monotonic() - t0 >= 1.0
    assert r.status == 200 and r.body == b"later" and r.header("x-mock-by") is None, r
    assert gw.origin_seen() == []


# ---- refused configurations -------------------------------------------------------------------------------

@pytest.mark.parametrize("plugins, field, reason", [
    ({"cors": {"allow_credential": True}}, "plugins.cors",
     "you can not set '*' for other option when 'allow_credential' is true"),
    ({"cors": {"allow_origins_by_regex": ["(open"]}}, "plugins.cors.allow_origins_by_regex[0]",
     "invalid regular expression"),
    ({"cors": {"allow_origins_by_metadata": ["EXAMPLE"]}}, "plugins.cors.allow_origins_by_metadata",
     "plugin metadata is not supported"),
    ({"ip-restriction": {"whitelist": ["10.0.0.1", "300.1.1.1"]}}, "plugins.ip-restriction.whitelist[1]",
     "invalid ip address: 300.1.1.1"),
    ({"ip-restriction": {"whitelist": ["::1"], "blacklist": ["::2"]}}, "plugins.ip-restriction",
     "value should match only one schema"),
    ({"consumer-restriction": {"type": "consumer_group_id", "whitelist": ["g1"]}},
     "plugins.consumer-restriction.type", "consumer groups are not supported"),
    ({"fault-injection": {"abort": {"http_status": 500, "vars": [[["arg_a", "=", "1"]]]}}},
     "plugins.fault-injection.abort.vars[0][0][1]", "must be an operator"),
    ({"fault-injection": {"abort": {"http_status": 500, "body": "$server_addr"}}},
     "plugins.fault-injection.abort.body", "unknown variable $server_addr"),
    ({"fault-injection": {"delay": {"percentage": 10}}}, "plugins.fault-injection.delay.duration",
     "property \"duration\" is required"),
    ({"mocking": {"response_schema": {"type": "object"}}}, "plugins.mocking.response_schema",
     "not supported by this version"),
    ({"mocking": {"response_example": "x", "response_headers": {"Content-Length": "9"}}},
     "plugins.mocking.response_headers.Content-Length", "is managed by Portico itself"),
])
def test_invalid_configurations_are_refused_at_their_field(gw, plugins, field, reason):
    good = route("good", "/echo", gw.origin, plugins={"cors": {}})
    gw.apply({"routes": [good]})
    err = gw.apply_expect_error({"routes": [good, route("bad", "/echo", gw.origin, host="bad.test",
                                                        plugins=plugins)]})
    assert err.resource == ("routes", "bad"), err
    assert err.fields == [field], err
    assert reason in err.errors[0][1], err
    assert gw.get("/echo").header("Access-Control-Allow-Origin") == "*"
