"""proxy-rewrite, response-rewrite, redirect and request-id, end to end in the three modes (file, admin, hybrid:
gateway_modes.py, one module-scoped gateway per mode). Each field's effect is asserted where it lands: on what
the origin received (gw.origin_seen()) or on what the client got. Also: precedence (route > plugin config >
service), `_meta.disable`, a global rule's request-id running before the route's plugins, and invalid
configurations refused with the field path (docs/plugins/traffic.md).
"""

import re

import pytest

from conftest import route
from gateway_modes import header_values

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def gw(gateway_module):
    return gateway_module


def seen_one(gw, contains=None):
    recs = gw.origin_seen(contains)
    assert len(recs) == 1, recs
    return recs[0]


def one(record, name):
    values = header_values(record, name)
    assert len(values) == 1, (name, record["headers"])
    return values[0]


def test_proxy_rewrite_fields_reach_the_origin(gw):
    gw.apply({"routes": [
        route("pr", "/old/*", gw.origin, host="pr.test", plugins={"proxy-rewrite": {
            "uri": "/echo?via=$arg_v", "host": "backend.internal:8080", "method": "PUT",
            "headers": {"add": {"X-Added": "a"}, "set": {"X-From": "$remote_addr $http_x_user", "X-User": "set"},
                        "remove": ["X-Drop"]}}}),
        route("rx", "/api/*", gw.origin, host="rx.test", plugins={"proxy-rewrite": {
            "regex_uri": ["^/api/nomatch/(.*)", "/never/$1", "^/api/(\\w+)/(\\d+)$", "/echo/$1/$2"],
            "headers": {"X-Cap": "$1:$2"}}}),
    ]})

    r = gw.request("GET", "/old/x?v=1&k=2", host="pr.test", headers=[("X-User", "alice"), ("X-Drop", "1")])
    assert r.status == 200, r
    rec = seen_one(gw)
    assert rec["target"] == "/echo?via=1&v=1&k=2"  # the template's query, then the client's
    assert rec["method"] == "PUT"
    assert one(rec, "Host") == "backend.internal:8080"
    assert one(rec, "X-Added") == "a"
    assert one(rec, "X-From") == "127.0.0.1 alice"  # values read the request as received
    assert one(rec, "X-User") == "set"
    assert header_values(rec, "X-Drop") == []

    gw.origin.reset()
    r = gw.request("GET", "/api/users/42?q=1", host="rx.test")
    rec = seen_one(gw)
    assert rec["target"] == "/echo/users/42?q=1"
    assert one(rec, "X-Cap") == "users:42"
    # No pair matches: the path goes unchanged, the captures are empty.
    gw.origin.reset()
    gw.request("GET", "/api/x/y", host="rx.test")
    rec = seen_one(gw)
    assert rec["target"] == "/api/x/y"
    assert one(rec, "X-Cap") == ":"


def test_proxy_rewrite_values_cannot_escape_the_path(gw):
    gw.apply({"routes": [route("esc", "/esc", gw.origin, host="esc.test",
                               plugins={"proxy-rewrite": {"uri": "/files/$arg_f"}})]})
    gw.request("GET", "/esc?f=..%2F..%2Fadmin", host="esc.test")
    assert seen_one(gw)["target"] == "/admin?f=..%2F..%2Fadmin"  # normalized like a received path
    gw.origin.reset()
    gw.request("GET", "/esc?f=a%20b%3Fc%23d", host="esc.test")
    assert seen_one(gw)["target"] == "/files/a%20b%3Fc%23d?f=a%20b%3Fc%23d"
    gw.origin.reset()
    r = gw.request("GET", "/esc?f=%00", host="esc.test")
    assert r.status == 400 and r.json() == {"message": "invalid rewritten uri"}
    assert gw.origin_seen() == []


def test_precedence_route_over_plugin_config_over_service_and_meta_disable(gw):
    doc = {
        "services": [{"id": "svc", "upstream": gw.upstream(),
                      "plugins": {"proxy-rewrite": {"uri": "/echo", "headers": {"X-Layer": "service"}}}}],
        "plugin_configs": [{"id": "pc", "plugins": {"proxy-rewrite": {"uri": "/echo",
                                                                      "headers": {"X-Layer": "plugin_config"}}}}],
        "routes": [
            route("only-svc", "/p1", host="prec.test", service_id="svc"),
            route("with-pc", "/p2", host="prec.test", service_id="svc", plugin_config_id="pc"),
            route("own", "/p3", host="prec.test", service_id="svc", plugin_config_id="pc",
                  plugins={"proxy-rewrite": {"uri": "/echo", "headers": {"X-Layer": "route"}}}),
            route("disabled", "/p4", host="prec.test", service_id="svc", plugin_config_id="pc",
                  plugins={"proxy-rewrite": {"uri": "/never", "_meta": {"disable": True}}}),
        ],
    }
    gw.apply(doc)
    for path, layer in (("/p1", "service"), ("/p2", "plugin_config"), ("/p3", "route")):
        gw.origin.reset()
        r = gw.request("GET", path, host="prec.test")
        assert r.status == 200, r
        assert header_values(r.json(), "X-Layer") == [layer], path
    # The route's disabled proxy-rewrite overrides the lower layers' and then does not run at all.
    gw.origin.reset()
    gw.request("GET", "/p4", host="prec.test")
    rec = seen_one(gw)
    assert rec["target"] == "/p4" and header_values(rec, "X-Layer") == []


def test_response_rewrite(gw):
    gw.apply({"routes": [
        route("rr", "/echo", gw.origin, host="rr.test", plugins={"response-rewrite": {
            "status_code": 203, "body": "replaced\n",
            "headers": {"add": ["X-Added: $uri"], "set": {"X-Set": "$arg_a"}, "remove": ["X-Origin-Id"]},
            "vars": [["status", "==", 200]]}}),
        route("rr-b64", "/status/*", gw.origin, host="rr.test", plugins={"response-rewrite": {
            "body": "aGVsbG8K", "body_base64": True, "vars": [["status", "==", 201]]}}),
        route("rr-reply", "/gone", gw.origin, host="rr.test", plugins={
            "redirect": {"uri": "/elsewhere"},
            "response-rewrite": {"headers": {"set": {"X-On-Reply": "yes"}}}}),
    ]})
    r = gw.request("GET", "/echo?a=1", host="rr.test")
    assert (r.status, r.body) == (203, b"replaced\n")
    assert r.header("Content-Length") == "9"
    assert r.header("X-Added") == "/echo" and r.header("X-Set") == "1"
    assert r.header("X-Origin-Id") is None
    assert r.header("Content-Type") == "application/json"  # the origin's, untouched
    # HEAD: the head as for GET, no body.
    r = gw.request("HEAD", "/echo", host="rr.test")
    assert r.status == 203 and r.header("Content-Length") == "9" and not r.body
    # vars: only a 201 gets the base64 body; a 404 goes through as the origin sent it.
    r = gw.request("GET", "/status/201", host="rr.test")
    assert (r.status, r.body) == (201, b"hello\n")
    r = gw.request("GET", "/status/404", host="rr.test")
    assert (r.status, r.body) == (404, b"status 404\n")
    # The response phase runs on a plugin's own answer too.
    r = gw.request("GET", "/gone", host="rr.test")
    assert r.status == 302 and r.header("X-On-Reply") == "yes"


def test_redirect(gw):
    gw.apply({"routes": [
        route("to", "/to/*", gw.origin, host="rd.test", plugins={"redirect": {
            "uri": "/new$uri?from=$host", "ret_code": 301, "append_query_string": True}}),
        route("re", "/re/*", gw.origin, host="rd.test", plugins={"redirect": {
            "regex_uri": ["^/re/(\\w+)$", "/moved/$1"]}}),
        route("enc", "/enc", gw.origin, host="rd.test", plugins={"redirect": {
            "uri": "/search/$arg_q", "encode_uri": True}}),
        route("https", "/s/*", gw.origin, host="rd.test", plugins={"redirect": {"http_to_https": True}}),
    ]})
    r = gw.request("GET", "/to/a?k=v", host="rd.test")
    assert r.status == 301 and r.header("Location") == "/new/to/a?from=rd.test&k=v"
    assert r.body == b""
    r = gw.request("GET", "/re/abc", host="rd.test")
    assert r.status == 302 and r.header("Location") == "/moved/abc"
    # regex_uri without a match: no redirect, the request goes to the origin.
    r = gw.request("GET", "/re/a/b", host="rd.test")
    assert r.status == 404 and r.header("Location") is None
    assert [x["target"] for x in gw.origin_seen()] == ["/re/a/b"]
    r = gw.request("GET", "/enc?q=a%20b%0D%0AX-Evil:%201", host="rd.test")
    assert r.status == 302 and r.header("Location") == "/search/a%20b%0D%0AX-Evil:%201"
    assert r.header("X-Evil") is None
    r = gw.request("GET", "/s/p?x=1", host="rd.test:9080")
    assert r.status == 301 and r.header("Location") == "https://rd.test/s/p?x=1"
    r = gw.request("POST", "/s/p", host="rd.test", body=b"")
    assert r.status == 308
    gw.origin.reset()
    r = gw.request("GET", "/s/p", host="rd.test", headers=[("X-Forwarded-Proto", "https")])
    assert r.status == 404 and r.header("Location") is None  # already https (per the proxy in front)
    assert len(gw.origin_seen()) == 1


def test_request_id(gw):
    gw.apply({"routes": [
        route("rid", "/echo", gw.origin, host="rid.test", plugins={"request-id": {}}),
        route("quiet", "/id", gw.origin, host="rid.test", plugins={"request-id": {
            "include_in_response": False, "header_name": "X-Trace", "algorithm": "nanoid"}}),
    ]})
    r = gw.request("GET", "/echo", host="rid.test")
    sent = r.header("X-Request-Id")
    assert UUID.match(sent), sent
    assert header_values(r.json(), "X-Request-Id") == [sent]
    r2 = gw.request("GET", "/echo", host="rid.test")
    assert r2.header("X-Request-Id") != sent
    # The client's own id is kept, upstream and in the answer.
    r = gw.request("GET", "/echo", host="rid.test", headers=[("X-Request-Id", "client-1")])
    assert r.header("X-Request-Id") == "client-1"
    assert header_values(r.json(), "X-Request-Id") == ["client-1"]
    gw.origin.reset()
    r = gw.request("GET", "/id", host="rid.test")
    assert r.status == 200 and r.header("X-Trace") is None
    assert re.match(r"^[A-Za-z0-9_-]{21}$", one(seen_one(gw), "X-Trace"))


def test_global_request_id_runs_before_the_route_plugins(gw):
    """The route's proxy-rewrite is given a priority above request-id's (12015): on one route it would run first
    and see no id; the global rule's request-id runs before every route plugin, so it sees it."""
    gw.apply({
        "global_rules": [{"id": "g1", "plugins": {"request-id": {"header_name": "X-Global-Id"}}}],
        "routes": [route("late", "/echo", gw.origin, host="glob.test", plugins={"proxy-rewrite": {
            "_meta": {"priority": 20000}, "headers": {"X-Seen-Id": "$request_id", "X-Seen-Header": "$http_x_global_id"}}})],
    })
    r = gw.request("GET", "/echo", host="glob.test")
    gid = r.header("X-Global-Id")
    assert gid is not None and UUID.match(gid), r
    echoed = r.json()
    assert header_values(echoed, "X-Global-Id") == [gid]
    assert header_values(echoed, "X-Seen-Id") == [gid]
    assert header_values(echoed, "X-Seen-Header") == [gid]


@pytest.mark.parametrize("plugin,conf,field", [
    ("proxy-rewrite", {"headers": {"set": {"Content-Length": "1"}}}, "plugins.proxy-rewrite.headers.set.Content-Length"),
    ("proxy-rewrite", {"headers": {"Host": "x"}}, "plugins.proxy-rewrite.headers.Host"),
    ("proxy-rewrite", {"uri": "/x/$nope"}, "plugins.proxy-rewrite.uri"),
    ("proxy-rewrite", {"regex_uri": ["^/(a", "/b"]}, "plugins.proxy-rewrite.regex_uri[0]"),
    ("proxy-rewrite", {"use_real_request_uri_unsafe": True}, "plugins.proxy-rewrite.use_real_request_uri_unsafe"),
    ("response-rewrite", {"filters": [{"regex": "a", "replace": "b"}]}, "plugins.response-rewrite.filters"),
    ("response-rewrite", {"headers": {"remove": ["Transfer-Encoding"]}},
     "plugins.response-rewrite.headers.remove[0]"),
    ("response-rewrite", {"body": "!!", "body_base64": True}, "plugins.response-rewrite.body"),
    ("redirect", {"uri": "/a", "ret_code": 99}, "plugins.redirect.ret_code"),
    ("request-id", {"header_name": "Connection"}, "plugins.request-id.header_name"),
])
def test_invalid_configurations_are_refused_at_the_field(gw, plugin, conf, field):
    good = route("ok", "/echo", gw.origin, host="bad.test")
    gw.apply({"routes": [good]})
    err = gw.apply_expect_error({"routes": [good, route("bad", "/echo", gw.origin, host="bad.test",
                                                        plugins={plugin: conf})]})
    assert err.resource == ("routes", "bad"), err
    assert err.fields == [field], err
    assert gw.request("GET", "/echo", host="bad.test").status == 200
