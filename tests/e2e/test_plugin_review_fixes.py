"""Regressions found in review of the plugin pipeline, in the three modes (gateway_modes.py):

- a credential hidden by key-auth (`hide_credentials`) must not come back through proxy-rewrite's `$args`;
- a response-rewrite to a status without a body (204) on an origin's 200 with a body must not leave that body
  on a keep-alive connection, where the client would read it as the next response (and the reverse: a 304
  made into a 200 must not make the client wait for the 304's Content-Length);
- a client's underscore spelling of X-Consumer-Username must not reach the origin next to Portico's own.
"""

import pytest

from conftest import RawConn, route
from gateway_modes import header_values


@pytest.fixture
def gw(gateway_module):
    return gateway_module


CONSUMER = {"username": "rf_alice", "plugins": {"key-auth": {"key": "rf-secret-key"}}}


def test_a_hidden_key_does_not_come_back_through_args(gw):
    gw.apply({"consumers": [CONSUMER], "routes": [
        route("rf-args", "/rf/args", gw.origin, plugins={
            "key-auth": {"hide_credentials": True},
            "proxy-rewrite": {"uri": "/echo?all=$args", "headers": {"set": {"X-Args": "$args"}}}}),
    ]})
    r = gw.request("GET", "/rf/args?z=1&apikey=rf-secret-key&y=2")
    assert r.status == 200, r
    recs = gw.origin_seen()
    assert len(recs) == 1, recs
    assert "rf-secret-key" not in recs[0]["target"], recs[0]["target"]
    assert header_values(recs[0], "X-Args") == ["z=1&y=2"]
    assert not any("rf-secret-key" in v for vs in recs[0]["headers"] for v in vs), recs[0]["headers"]


def test_a_status_without_a_body_keeps_the_connection_in_step(gw):
    gw.apply({"routes": [
        route("rf-204", "/rf/204", gw.origin, plugins={
            "proxy-rewrite": {"uri": "/bytes/20"}, "response-rewrite": {"status_code": 204}}),
        route("rf-next", "/rf/next", gw.origin, plugins={"proxy-rewrite": {"uri": "/bytes/5"}}),
    ]})
    with RawConn(gw.proxy.port) as c:
        c.send(b"GET /rf/204 HTTP/1.1\r\nHost: t\r\n\r\nGET /rf/next HTTP/1.1\r\nHost: t\r\n\r\n")
        first = c.read_response()
        assert first.status == 204, first
        assert first.header("Content-Length") is None, first.raw_head
        second = c.read_response()
        assert second.status == 200, second
        assert len(second.body) == 5, second


def test_an_underscore_spelling_of_the_consumer_header_is_dropped(gw):
    gw.apply({"consumers": [CONSUMER], "routes": [
        route("rf-id", "/rf/id", gw.origin, plugins={"key-auth": {}, "proxy-rewrite": {"uri": "/echo"}}),
    ]})
    r = gw.request("GET", "/rf/id", headers=[("apikey", "rf-secret-key"), ("X_Consumer_Username", "admin")])
    assert r.status == 200, r
    rec = gw.origin_seen()[0]
    assert header_values(rec, "X-Consumer-Username") == ["rf_alice"]
    assert header_values(rec, "X_Consumer_Username") == []
