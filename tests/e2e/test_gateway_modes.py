"""The three-mode gateway harness (gateway_modes.py) with plain routes, no plugins: every test runs in the file,
admin and hybrid modes (module-scoped gateway_module, one gateway per mode) and asserts right after each change,
with no polling of its own: apply(), put() and delete() return once the proxy serves the change.

What differs between the modes is only how a refusal is reported (apply_expect_error):
  file          the whole file is refused; error paths start at the document's root: "routes[1].uri".
  admin/hybrid  the Admin API refuses one PUT with 400; error paths are relative to that resource: "uri",
                and the reply's error_msg says "invalid configuration: uri: ...".
GatewayError.resource and .fields ("uri") are the same in every mode.
"""

import signal
import threading

import pytest

from conftest import route
from gateway_modes import SYNC_MARKER, header_values

ROLES = {"file": "standalone", "admin": "traditional", "hybrid": "data_plane"}


@pytest.fixture
def gw(gateway_module):
    return gateway_module


def served(gw, host, target="/id"):
    r = gw.request("GET", target, host=host)
    return r.status, r.header("X-Origin-Id")


def test_apply_change_delete_a_route(gw):
    gw.apply({"routes": [route("r1", "/id", gw.origin, host="one.test")]})
    assert served(gw, "one.test") == (200, "gw")
    assert gw.request("GET", "/id", host="two.test").status == 404

    # Change: the same route now answers another host.
    gw.apply({"routes": [route("r1", "/id", gw.origin, host="two.test")]})
    assert served(gw, "two.test") == (200, "gw")
    assert gw.request("GET", "/id", host="one.test").status == 404

    # Delete: one resource, then the whole document.
    gw.put("routes", "r2", route("r2", "/echo", gw.origin, host="two.test"))
    assert gw.request("GET", "/echo", host="two.test").status == 200
    gw.delete("routes", "r1")
    assert gw.request("GET", "/id", host="two.test").status == 404
    assert gw.request("GET", "/echo", host="two.test").status == 200
    assert [r["id"] for r in gw.document()["routes"]] == ["r2"]
    gw.apply({"routes": []})
    assert gw.request("GET", "/echo", host="two.test").status == 404
    assert gw.metrics().value("portico_config_routes") == 0


def test_references_are_written_and_removed_in_dependency_order(gw):
    doc = {
        "routes": [route("ref", "/id", host="ref.test", service_id="svc")],
        "services": [{"id": "svc", "upstream_id": "up"}],
        "upstreams": [dict(gw.upstream(), id="up")],
    }
    gw.apply(doc)
    assert served(gw, "ref.test") == (200, "gw")
    # Everything goes at once: the route before the service before the upstream.
    gw.apply({})
    assert gw.request("GET", "/id", host="ref.test").status == 404
    assert gw.document() == {"routes": []}
    if gw.mode != "file":
        for kind in ("routes", "services", "upstreams"):
            listed = [it["value"]["id"] for it in gw.admin("GET", "/" + kind).body["list"]]
            assert listed == ([SYNC_MARKER] if gw.mode == "hybrid" and kind == "upstreams" else []), listed


def test_a_change_returns_only_once_the_proxy_serves_it(gw):
    """With the serving process stopped (SIGSTOP), put() keeps waiting; it returns once that process has taken
    the change. (The admin mode's proxy is also its Admin API, so there the write itself would wait: that mode
    checks the revision instead.)"""
    gw.apply({"routes": []})
    value = route("wait", "/id", gw.origin, host="wait.test")
    if gw.mode == "admin":
        reply = gw.put("routes", "wait", value)
        assert gw.config_status()["config_revision"] >= int(reply.headers["x-portico-revision"])
        assert served(gw, "wait.test") == (200, "gw")
        return
    done = []
    gw.proxy.signal(signal.SIGSTOP)
    try:
        t = threading.Thread(target=lambda: done.append(gw.put("routes", "wait", value)), daemon=True)
        t.start()
        t.join(0.5)
        assert t.is_alive() and not done, "put() returned while the serving process was stopped"
    finally:
        gw.proxy.signal(signal.SIGCONT)
    t.join(15)
    assert done, "put() did not return after SIGCONT"
    assert served(gw, "wait.test") == (200, "gw")


def test_bad_field_is_refused_and_the_last_good_config_keeps_serving(gw):
    good = route("good", "/id", gw.origin, host="good.test")
    gw.apply({"routes": [good]})
    before = gw.config_status()
    bad_doc = {"routes": [good, route("new", "/id", gw.origin, host="new.test"),
                          dict(route("bad", "/id", gw.origin, host="bad.test"), uri=5)]}

    err = gw.apply_expect_error(bad_doc)

    assert err.resource == ("routes", "bad"), err
    assert err.fields == ["uri"], err
    if gw.mode == "file":
        assert err.paths == ["routes[2].uri"], err
        assert err.status is None
    else:
        assert err.paths == ["uri"], err
        assert err.status == 400 and err.message.startswith("invalid configuration: uri: "), err
    assert "wrong type: expected string, got number" in err.errors[0][1], err
    # Nothing of the refused document serves, not even its valid new route (the admin modes undo it).
    assert served(gw, "good.test") == (200, "gw")
    assert gw.request("GET", "/id", host="new.test").status == 404
    assert gw.document() == {"routes": [good]}
    after = gw.config_status()
    assert after["routes"] == before["routes"] == 1 and not after["last_error"], (before, after)
    if gw.mode != "hybrid":  # (the hybrid mode's sync marker changes the content hash)
        assert after["hash"] == before["hash"], (before, after)
    # And the gateway takes the next good document.
    gw.apply({"routes": [good, route("new", "/id", gw.origin, host="new.test")]})
    assert served(gw, "new.test") == (200, "gw")


def test_a_valid_document_given_to_apply_expect_error_fails_the_test(gw):
    gw.apply({"routes": [route("v1", "/id", gw.origin, host="v1.test")]})
    with pytest.raises(AssertionError, match="expected to be refused"):
        gw.apply_expect_error({"routes": [route("v2", "/id", gw.origin, host="v2.test")]})
    # The previous document is back.
    assert served(gw, "v1.test") == (200, "gw")
    assert gw.request("GET", "/id", host="v2.test").status == 404


def test_origin_seen_lists_heads_since_the_last_apply(gw):
    gw.apply({"routes": [route("seen", "/echo", gw.origin, host="seen.test")]})
    assert gw.origin_seen() == []
    r = gw.request("GET", "/echo?m=seen-1", host="seen.test", headers=[("X-Probe", "p1")])
    assert r.status == 200
    # A request that matches no route never reaches the origin.
    assert gw.request("GET", "/echo?m=seen-2", host="other.test").status == 404
    recs = gw.origin_seen()
    assert [x["target"] for x in recs] == ["/echo?m=seen-1"], recs
    assert header_values(recs[0], "x-probe") == ["p1"], recs[0]
    assert gw.origin_seen("seen-2") == []
    gw.apply({"routes": [route("seen", "/echo", gw.origin, host="seen.test")]})
    assert gw.origin_seen() == [], "apply() did not start a new log"


def test_put_of_an_unchanged_value_returns(gw):
    """In the hybrid mode such a write publishes nothing new; put() must still return (the sync marker)."""
    value = route("same", "/id", gw.origin, host="same.test")
    gw.apply({"routes": [value]})
    for _ in range(2):
        reply = gw.put("routes", "same", value)
        assert (reply is None) == (gw.mode == "file"), reply
        assert served(gw, "same.test") == (200, "gw")


def test_status_of_the_proxy_process(gw):
    gw.apply({"routes": [route("st%d" % i, "/id", gw.origin, host="st%d.test" % i) for i in range(3)]})
    st = gw.config_status()
    assert st["role"] == ROLES[gw.mode] and st["routes"] == 3, st
    assert gw.metrics().value("portico_config_routes") == 3
    assert gw.status_port == gw.proxy.status_port


def test_admin_api_writes_outside_apply_are_cleaned_up(gw):
    if gw.mode == "file":
        with pytest.raises(AssertionError, match="no Admin API"):
            gw.admin("GET", "/routes")
        return
    gw.apply({"routes": [route("kept", "/id", gw.origin, host="kept.test")]})
    r = gw.admin("PUT", "/routes/stray", {"uri": "/id", "hosts": ["stray.test"], "upstream": gw.upstream()})
    assert r.status == 201, r
    r = gw.admin("PATCH", "/routes/kept", {"host": "moved.test"})
    assert r.status == 200, r
    # The next apply() removes what it does not name, and writes again what gw.admin() changed.
    gw.apply({"routes": [route("kept", "/id", gw.origin, host="kept.test")]})
    assert gw.request("GET", "/id", host="stray.test").status == 404
    assert gw.request("GET", "/id", host="moved.test").status == 404
    assert served(gw, "kept.test") == (200, "gw")
    assert [it["value"]["id"] for it in gw.admin("GET", "/routes").body["list"]] == ["kept"]


def test_the_function_scoped_fixture_starts_empty(gateway):
    assert gateway.document() == {"routes": []}
    assert gateway.config_status()["role"] == ROLES[gateway.mode]
    assert gateway.request("GET", "/id").status == 404
    gateway.put("routes", "fn", route("fn", "/id", gateway.origin))
    assert served(gateway, "test.local") == (200, "gw")
