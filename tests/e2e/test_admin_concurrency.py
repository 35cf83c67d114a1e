"""Optimistic concurrency (If-Match / If-None-Match) and consistency between two control-plane replicas on the
same etcd (docs/admin-api.md "Optimistic concurrency", "Consistency and failures")."""

import threading
import time

import pytest

from conftest import wait_for


@pytest.fixture(scope="module")
def replicas(etcd_module, controlplane_module):
    e = etcd_module(size=1)
    a = controlplane_module(e.endpoints_arg(), name="cp-a")
    b = controlplane_module(e.endpoints_arg(), name="cp-b")
    return e, a, b


def route_body(uri, **kw):
    b = {"uri": uri, "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}}
    b.update(kw)
    return b


def run_together(fns):
    """Runs the callables at the same moment (a barrier), returns their results in order."""
    barrier = threading.Barrier(len(fns))
    out = [None] * len(fns)
    errs = []

    def run(i, fn):
        try:
            barrier.wait(5)
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(e)

    ts = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errs, errs
    return out


@pytest.mark.parametrize("via,bodies", [("same-replica", "different"), ("two-replicas", "different"),
                                        ("same-replica", "identical"), ("two-replicas", "identical")])
def test_two_writers_same_version_one_wins(replicas, via, bodies):
    """Two writers with the same If-Match: one 200, one 412, even when both send the same body (two operators
    making the same change from the same version must still not both be told they wrote it)."""
    _, a, b = replicas
    other = a if via == "same-replica" else b
    rid = "race_%s_%s" % (via.replace("-", "_"), bodies)
    c = a.admin("PUT", "/routes/%s" % rid, route_body("/race", desc="v0"))
    assert c[0] == 201, c
    for rnd in range(5):  # the race is timing-dependent: several rounds, each must have exactly one winner
        d1, d2 = ("r%d-from-1" % rnd, "r%d-from-2" % rnd) if bodies == "different" else (("r%d-same" % rnd,) * 2)
        # Both operators read the same version...
        g1 = a.admin("GET", "/routes/%s" % rid)
        g2 = other.admin("GET", "/routes/%s" % rid)
        assert g1[2]["modifiedIndex"] == g2[2]["modifiedIndex"], (g1, g2)
        idx = g1[2]["modifiedIndex"]
        assert g1[1].get("etag", "").strip('"') == str(idx), g1
        # ...and both write it, at the same time.
        r1, r2 = run_together([
            lambda: a.admin("PUT", "/routes/%s" % rid, route_body("/race", desc=d1),
                            headers={"If-Match": str(idx)}),
            lambda: other.admin("PUT", "/routes/%s" % rid, route_body("/race", desc=d2),
                                headers={"If-Match": '"%d"' % idx}),
        ])
        statuses = sorted([r1[0], r2[0]])
        assert statuses == [200, 412], "round %d: want exactly one 200 and one 412 for two PUTs with If-Match: " \
            "%d:\n%r\n%r" % (rnd, idx, r1, r2)
        winner, loser = (r1, r2) if r1[0] == 200 else (r2, r1)
        won_desc = winner[2]["value"]["desc"]
        assert isinstance(loser[2], dict) and loser[2].get("error_msg"), loser
        for cp in (a, other):
            g = cp.admin("GET", "/routes/%s" % rid)
            assert g[0] == 200 and g[2]["value"]["desc"] == won_desc, "the loser's change is visible: %r" % (g,)
            assert g[2]["modifiedIndex"] == winner[2]["modifiedIndex"], (g, winner)


def test_if_match_stale_412_on_every_write_verb(replicas):
    e, a, _ = replicas
    c = a.admin("PUT", "/routes/stale_r", route_body("/stale", desc="v0"))
    assert c[0] == 201, c
    i1 = c[2]["modifiedIndex"]
    u = a.admin("PUT", "/routes/stale_r", route_body("/stale", desc="v1"), headers={"If-Match": '"%d"' % i1})
    assert u[0] == 200, u
    i2 = u[2]["modifiedIndex"]
    assert i2 > i1
    rev0 = e.revision()
    for method, path, body in (("PUT", "/routes/stale_r", route_body("/stale", desc="stale-put")),
                               ("PUT", "/routes/stale_r", route_body("/stale", desc="v1")),  # = current value
                               ("PATCH", "/routes/stale_r", {"desc": "stale-patch"}),
                               ("PATCH", "/routes/stale_r/desc", '"stale-sub"'),
                               ("DELETE", "/routes/stale_r", None)):
        for im in (str(i1), '"%d"' % i1, str(i2 + 1000)):
            r = a.admin(method, path, body, headers={"If-Match": im})
            assert r[0] == 412, "%s with If-Match %s (current %d): %r" % (method, im, i2, r)
    assert e.revision() == rev0, "a 412 write changed etcd"
    g = a.admin("GET", "/routes/stale_r")
    assert g[2]["value"]["desc"] == "v1" and g[2]["modifiedIndex"] == i2, g
    # With the current index every verb goes through.
    p = a.admin("PATCH", "/routes/stale_r", {"desc": "v2"}, headers={"If-Match": str(i2)})
    assert p[0] == 200 and p[2]["value"]["desc"] == "v2", p
    d = a.admin("DELETE", "/routes/stale_r", headers={"If-Match": str(p[2]["modifiedIndex"])})
    assert d[0] == 200, d


def test_if_none_match_star(replicas):
    _, a, b = replicas
    r = a.admin("PUT", "/routes/inm_r", route_body("/inm", desc="first"), headers={"If-None-Match": "*"})
    assert r[0] == 201, r
    again = b.admin("PUT", "/routes/inm_r", route_body("/inm", desc="second"), headers={"If-None-Match": "*"})
    assert again[0] == 412, again
    g = a.admin("GET", "/routes/inm_r")
    assert g[2]["value"]["desc"] == "first" and g[2]["modifiedIndex"] == r[2]["modifiedIndex"], g
    # Two creators at once: one 201, one 412 (with different bodies, and with the same body).
    for n, (d1, d2) in enumerate([("a", "b"), ("same", "same")] * 3):
        rid = "inm_race_%d" % n
        r1, r2 = run_together([
            lambda: a.admin("PUT", "/routes/%s" % rid, route_body("/inm2", desc=d1), headers={"If-None-Match": "*"}),
            lambda: b.admin("PUT", "/routes/%s" % rid, route_body("/inm2", desc=d2), headers={"If-None-Match": "*"}),
        ])
        assert sorted([r1[0], r2[0]]) == [201, 412], "two creators of %s (%s/%s) with If-None-Match: *:\n%r\n%r" % (
            rid, d1, d2, r1, r2)
        winner = r1 if r1[0] == 201 else r2
        assert a.admin("GET", "/routes/%s" % rid)[2]["value"]["desc"] == winner[2]["value"]["desc"]


def test_concurrent_read_modify_write_exact_count(replicas):
    _, a, b = replicas
    threads, per_thread = 6, 8
    assert a.admin("PUT", "/routes/counter_r", route_body("/counter", priority=0))[0] == 201
    conflicts = [0]
    errors = []
    lock = threading.Lock()

    def worker(n):
        cp = a if n % 2 == 0 else b
        done = 0
        attempts = 0
        while done < per_thread:
            attempts += 1
            if attempts > 500:
                errors.append("thread %d: too many attempts" % n)
                return
            st, _, g = cp.admin("GET", "/routes/counter_r")
            if st != 200:
                errors.append(("GET", st, g))
                return
            cur = g["value"]["priority"]
            r = cp.admin("PUT", "/routes/counter_r", route_body("/counter", priority=cur + 1),
                         headers={"If-Match": str(g["modifiedIndex"])})
            if r[0] == 200:
                done += 1
            elif r[0] == 412:
                with lock:
                    conflicts[0] += 1
            else:
                errors.append(("PUT", r))
                return

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts), "workers did not finish"
    assert not errors, errors
    final = a.admin("GET", "/routes/counter_r")
    print("\nread-modify-write: %d threads x %d increments over 2 replicas in %.2fs, %d conflicts (412) retried"
          % (threads, per_thread, time.monotonic() - t0, conflicts[0]))
    assert final[2]["value"]["priority"] == threads * per_thread, \
        "lost updates: counter %s, want %d" % (final[2]["value"]["priority"], threads * per_thread)
    assert b.admin("GET", "/routes/counter_r")[2]["modifiedIndex"] == final[2]["modifiedIndex"]


def test_write_via_one_replica_read_via_other(replicas):
    _, a, b = replicas
    for i in range(5):
        rid = "conv_%d" % i
        w = a.admin("PUT", "/routes/%s" % rid, route_body("/conv/%d" % i))
        assert w[0] == 201, w
        t0 = time.monotonic()
        g = wait_for(lambda: (lambda r: r[0] == 200 and r)(b.admin("GET", "/routes/%s" % rid)), timeout=2,
                     interval=0.01, message="replica B to see %s" % rid)
        assert g[2]["modifiedIndex"] == w[2]["modifiedIndex"] and g[2]["createdIndex"] == w[2]["createdIndex"], (w, g)
        assert g[2]["value"] == w[2]["value"], (w, g)
        if i == 0:
            print("\nB saw A's write after %.3fs" % (time.monotonic() - t0))
    # The other way round, with an update and a delete.
    u = b.admin("PATCH", "/routes/conv_0", {"desc": "via-b"})
    assert u[0] == 200, u
    wait_for(lambda: a.admin("GET", "/routes/conv_0")[2]["modifiedIndex"] == u[2]["modifiedIndex"], timeout=2,
             interval=0.01, message="replica A to see B's PATCH")
    assert a.admin("GET", "/routes/conv_0")[2]["value"]["desc"] == "via-b"
    assert b.admin("DELETE", "/routes/conv_1")[0] == 200
    wait_for(lambda: a.admin("GET", "/routes/conv_1")[0] == 404, timeout=2, interval=0.01,
             message="replica A to see B's DELETE")
    # The replicas' copies are at the same revision.
    wait_for(lambda: a.config_status()["revision"] == b.config_status()["revision"], timeout=2,
             message="both replicas at the same revision")


def test_read_after_write_on_other_replica_is_immediate(replicas):
    """The spec: a read asks etcd for the current revision and waits for the replica's watch to reach it, so a
    GET on B right after A acknowledged a write sees it without polling."""
    _, a, b = replicas
    misses = []
    for i in range(20):
        rid = "raw_%d" % i
        w = a.admin("PUT", "/routes/%s" % rid, route_body("/raw/%d" % i))
        assert w[0] == 201, w
        g = b.admin("GET", "/routes/%s" % rid)
        if g[0] != 200 or g[2]["modifiedIndex"] != w[2]["modifiedIndex"]:
            misses.append((rid, g[0]))
    assert not misses, "B did not see A's acknowledged write on the first read: %r" % misses
