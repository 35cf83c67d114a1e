"""Control plane against a 3-member etcd cluster under failure (docs/admin-api.md "Consistency and failures"):
leader loss (SIGKILL) and a hung leader (SIGSTOP) during a stream of writes, all members down and back,
compaction while the control plane is frozen, and invalid values written straight into etcd.

Run with -s to see the measured numbers (they are recorded in docs/reliability.md):
    /usr/bin/python3 -m pytest -q tests/e2e/test_cp_etcd.py -s

One cluster, one control plane (role control_plane) and one traditional instance (Admin API + proxy) on the
same prefix serve the module. Every test leaves all members running and healthy.
"""

import json
import re
import signal
import threading
import time

import pytest

from conftest import wait_for

RESULTS = {}


@pytest.fixture(scope="module")
def ha(etcd_module, controlplane_module, origin_module):
    e = etcd_module(size=3, name="etcd3")
    o = origin_module("ha")
    cp = controlplane_module(e.endpoints_arg(), name="cp")
    tr = controlplane_module(e.endpoints_arg(), role="traditional", name="trad")
    yield e, cp, tr, o
    if RESULTS:
        print("\n=== control plane / etcd chaos results ===")
        for k, v in RESULTS.items():
            print("%s: %s" % (k, json.dumps(v, sort_keys=True)))


@pytest.fixture
def healthy_after(ha):
    """Makes sure every member runs again after the test, whatever happened in it."""
    yield
    e = ha[0]
    for i, m in enumerate(e.members):
        if m.stopped:
            e.cont(i)
    if any(not m.running() for m in e.members):
        e.start_all()
    e.wait_healthy(timeout=30)


def copy_routes(status):
    """Routes in a process's copy, from /status/config ("routes", or "resources": {"routes": n})."""
    if "routes" in status:
        return status["routes"]
    return status["resources"]["routes"]


def dead_upstream():
    return {"type": "roundrobin", "nodes": {"127.0.0.1:1": 1}}


def origin_route(rid, host, o, **kw):
    r = {"uri": "/id", "hosts": [host], "upstream": {"type": "roundrobin", "nodes": {o.node: 1}}}
    r.update(kw)
    return r


def served(tr, host):
    try:
        r = tr.get("/id", host=host)
    except OSError as ex:
        return ("error", repr(ex))
    return r.status, (r.body or b"").decode(errors="replace").strip()


def wait_served(tr, host, want=(200, "ha"), timeout=5.0):
    wait_for(lambda: served(tr, host) == want, timeout=timeout, interval=0.02,
             message=lambda: "proxy to answer %r for %s (last %r)" % (want, host, served(tr, host)))


# ------------------------------------------------------------------------------------------------------------
# (a) leader SIGKILL during a stream of writes
# ------------------------------------------------------------------------------------------------------------

def write_stream(ha, tag, total, fault_after, fault, restore):
    """PUTs `total` new routes (one client thread, one after the other) through the control plane. Once
    `fault_after` writes are done, `fault()` is applied (while writes are in flight); after the stream,
    `restore()`. Checks that every acknowledged write is in etcd and readable through the API, and returns
    (stats, failed writes)."""
    e, cp, tr, _ = ha
    results = []  # (i, status, elapsed, started_at, body)
    stop = threading.Event()

    def writer():
        for i in range(total):
            if stop.is_set():
                return
            t = time.monotonic()
            try:
                r = cp.admin("PUT", "/routes/%s_%03d" % (tag, i), {"uri": "/%s/%d" % (tag, i),
                                                                   "upstream": dead_upstream()}, timeout=60)
                results.append((i, r[0], r.elapsed, t, r[2] if r[0] >= 300 else None))
            except OSError as ex:
                results.append((i, None, time.monotonic() - t, t, repr(ex)))

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        wait_for(lambda: len(results) >= fault_after, timeout=30, message="the first %d writes" % fault_after)
        t_fault = time.monotonic()
        info = fault()
        t_recovered = time.monotonic()
        th.join(240)
        assert not th.is_alive(), "the write stream did not finish within 240 s"
    finally:
        stop.set()
        restore()

    ok = [r for r in results if r[1] is not None and 200 <= r[1] < 300]
    failed = [r for r in results if not (r[1] is not None and 200 <= r[1] < 300)]
    longest = max(results, key=lambda r: r[2])
    stalled_until = max((r[3] + r[2] for r in results if r[2] >= 0.5), default=None)
    slow = [r for r in results if r[2] >= 0.5]
    stats = dict(info or {}, **{
        "writes": len(results), "acknowledged": len(ok), "failed": len(failed),
        "failed_statuses": sorted({str(r[1]) for r in failed}),
        "longest_write_s": round(longest[2], 3), "longest_write_index": longest[0],
        "writes_over_0.5s": len(slow), "total_stall_s": round(sum(r[2] for r in slow), 3),
        "fault_applied_s": round(t_recovered - t_fault, 3),
        "writes_normal_again_after_fault_s": 0.0 if stalled_until is None else round(stalled_until - t_fault, 3),
        "stream_s": round(results[-1][3] + results[-1][2] - results[0][3], 3) if results else None,
        "non_201": sorted({str(r[1]) for r in ok if r[1] != 201}),
    })

    # No acknowledged write is lost: every one is in etcd and readable through the API.
    in_etcd = e.get_prefix("/apisix/routes/%s_" % tag)
    st, _, lst = cp.admin("GET", "/routes")
    assert st == 200, lst
    in_api = {it["key"] for it in lst["list"]}
    lost_etcd = [r[0] for r in ok if "/apisix/routes/%s_%03d" % (tag, r[0]) not in in_etcd]
    lost_api = [r[0] for r in ok if "/apisix/routes/%s_%03d" % (tag, r[0]) not in in_api]
    assert not lost_etcd, "acknowledged writes missing from etcd: %r (%r)" % (lost_etcd, stats)
    assert not lost_api, "acknowledged writes missing from the API: %r (%r)" % (lost_api, stats)
    for r in ok[:: max(1, len(ok) // 30)]:
        g = cp.admin("GET", "/routes/%s_%03d" % (tag, r[0]))
        assert g[0] == 200 and g[2]["value"]["uri"] == "/%s/%d" % (tag, r[0]), g
    # The traditional instance got every route too.
    wait_for(lambda: tr.config_status()["revision"] >= e.revision(), timeout=10,
             message="the traditional instance to catch up with etcd")
    return stats, failed


def test_leader_kill_during_write_stream(ha, healthy_after):
    e = ha[0]
    killed = {}

    def fault():
        killed["i"] = e.leader_index()
        t = time.monotonic()
        e.kill(killed["i"])  # SIGKILL
        new = e.leader_index(timeout=15)
        return {"killed_member": killed["i"], "new_leader": new, "election_s": round(time.monotonic() - t, 3)}

    def restore():
        if "i" in killed:
            e.start(killed["i"])  # same data dir

    stats, failed = write_stream(ha, "ha_a", 300, 30, fault, restore)
    RESULTS["leader_kill"] = stats
    print("\nleader SIGKILL: %s" % json.dumps(stats, sort_keys=True))
    # A member's loss, the leader's included, is retried across the other endpoints: no write fails.
    assert not failed, "writes failed during the leader loss: %r" % [(r[0], r[1], r[4]) for r in failed[:10]]
    assert not stats["non_201"], ("a write of a new route was answered %s instead of 201 (an ambiguous retry "
                                  "reported as a replace?)" % stats["non_201"])


def test_leader_sigstop_during_write_stream(ha, healthy_after):
    """A hung leader (SIGSTOP: its sockets still accept, nothing answers) for the rest of the stream."""
    e = ha[0]
    stopped = {}

    def fault():
        stopped["i"] = e.leader_index()
        t = time.monotonic()
        e.kill(stopped["i"], signal.SIGSTOP)
        new = e.leader_index(timeout=15)
        return {"stopped_member": stopped["i"], "new_leader": new, "election_s": round(time.monotonic() - t, 3)}

    def restore():
        if "i" in stopped:
            e.cont(stopped["i"])
            e.wait_healthy(timeout=30)

    stats, failed = write_stream(ha, "ha_s", 150, 20, fault, restore)
    RESULTS["leader_sigstop"] = stats
    print("\nleader SIGSTOP: %s" % json.dumps(stats, sort_keys=True))
    assert not failed, "writes failed with a hung leader: %r" % [(r[0], r[1], r[4]) for r in failed[:10]]
    assert not stats["non_201"], stats


# ------------------------------------------------------------------------------------------------------------
# (b) all members down, then back
# ------------------------------------------------------------------------------------------------------------

def test_all_members_down_then_back(ha, healthy_after):
    e, cp, tr, o = ha
    host = "b-live.test"
    r = cp.admin("PUT", "/routes/ha_b_live", origin_route("ha_b_live", host, o))
    assert r[0] in (200, 201), r
    wait_served(tr, host)
    stats = {}
    pids = (cp.pid, tr.pid)

    t_down = time.monotonic()
    e.kill_all()  # SIGKILL every member

    # Writes: 503 with a message that says etcd is unreachable, within a bounded time, nothing written.
    w = cp.admin("PUT", "/routes/ha_b_down", {"uri": "/down", "upstream": dead_upstream()}, timeout=60)
    stats["write_503_after_s"] = round(w.elapsed, 3)
    assert w[0] == 503, "write with every etcd member down: %r" % (w,)
    msg = w[2].get("error_msg", "") if isinstance(w[2], dict) else ""
    assert re.search(r"etcd", msg, re.I), "503 should say etcd is unreachable: %r" % (w,)
    assert w.elapsed <= 10.0, "the 503 took %.1fs" % w.elapsed
    w2 = cp.admin("POST", "/upstreams", dead_upstream(), timeout=60)
    assert w2[0] == 503 and w2.elapsed <= 10.0, w2
    stats["second_write_503_after_s"] = round(w2.elapsed, 3)

    # Reads: answered from memory, marked stale.
    g = cp.admin("GET", "/routes/ha_b_live", timeout=60)
    stats["stale_read_s"] = round(g.elapsed, 3)
    assert g[0] == 200 and g[2]["value"]["hosts"] == [host], g
    assert g[1].get("x-portico-stale") == "true", "read while etcd is down should carry X-Portico-Stale: %r" % (g,)
    assert g.elapsed <= 10.0, "stale read took %.1fs" % g.elapsed
    lst = cp.admin("GET", "/routes", timeout=60)
    assert lst[0] == 200 and lst[1].get("x-portico-stale") == "true" and lst[2]["total"] >= 1, lst
    wait_for(lambda: cp.config_status()["stale"] is True, timeout=10, message="CP /status/config stale")
    wait_for(lambda: tr.config_status()["stale"] is True, timeout=10, message="traditional /status/config stale")

    # The traditional proxy keeps serving its last configuration.
    for _ in range(20):
        assert served(tr, host) == (200, "ha")
    stats["down_for_s"] = round(time.monotonic() - t_down, 3)

    # Members back: no restart of the control plane.
    t_up0 = time.monotonic()
    e.start_all()
    t_up = time.monotonic()
    stats["etcd_restart_s"] = round(t_up - t_up0, 3)
    # A write straight into etcd right away (before the control plane has necessarily reconnected).
    direct_host = "b-direct.test"
    e.put("/apisix/routes/ha_b_direct", json.dumps(dict(origin_route("ha_b_direct", direct_host, o),
                                                        id="ha_b_direct")))

    def write_ok():
        r = cp.admin("PUT", "/routes/ha_b_after", {"uri": "/after", "upstream": dead_upstream()}, timeout=60)
        return r[0] in (200, 201) and r

    wait_for(write_ok, timeout=30, interval=0.1, message="a write to succeed after etcd is back")
    stats["first_write_ok_after_members_up_s"] = round(time.monotonic() - t_up, 3)
    wait_for(lambda: cp.config_status()["stale"] is False, timeout=10, message="CP stale to clear")
    stats["cp_stale_cleared_after_s"] = round(time.monotonic() - t_up, 3)
    g = wait_for(lambda: (lambda r: r[0] == 200 and r)(cp.admin("GET", "/routes/ha_b_direct")), timeout=10,
                 message="the direct etcd write to show up in the API")
    assert g[1].get("x-portico-stale") in (None, "false"), g
    wait_for(lambda: tr.config_status()["stale"] is False, timeout=10, message="traditional stale to clear")
    wait_served(tr, direct_host, timeout=10)
    stats["direct_write_served_after_s"] = round(time.monotonic() - t_up, 3)
    assert (cp.pid, tr.pid) == pids and cp.running() and tr.running(), "the processes were restarted"
    # Nothing of what was refused with 503 was written.
    assert cp.admin("GET", "/routes/ha_b_down")[0] == 404
    assert e.get("/apisix/routes/ha_b_down") is None
    assert served(tr, host) == (200, "ha")
    RESULTS["all_down"] = stats
    print("\nall members down: %s" % json.dumps(stats, sort_keys=True))


# ------------------------------------------------------------------------------------------------------------
# (c) compaction while the control plane is frozen
# ------------------------------------------------------------------------------------------------------------

def test_compaction_while_frozen_full_reread(ha, healthy_after):
    """Both etcd-backed processes are frozen (SIGSTOP), their connections cut, etcd changed and compacted, then
    they are continued. Their copies must be re-read in full: GETs of the Admin API go to etcd, so the copies
    are observed through what does use them: the traditional proxy's routing and /status/config."""
    e, cp, tr, o = ha
    gone_host, mod_host, mod2_host = "c-gone.test", "c-mod.test", "c-mod2.test"
    for rid, host in (("ha_c_gone", gone_host), ("ha_c_mod", mod_host)):
        r = cp.admin("PUT", "/routes/%s" % rid, origin_route(rid, host, o, desc="v0"))
        assert r[0] in (200, 201), r
    wait_served(tr, gone_host)
    wait_served(tr, mod_host)
    rev_before = e.revision()
    wait_for(lambda: cp.config_status()["revision"] == rev_before and tr.config_status()["revision"] == rev_before,
             timeout=5, message="both copies at revision %d" % rev_before)
    marks = {p: p.log_size() for p in (cp, tr)}
    cp.sigstop()
    tr.sigstop()
    try:
        # First cut every connection the frozen processes have (their watches included) with a rolling restart
        # that keeps quorum, so that nothing written from now on can reach them, not even into socket buffers.
        for i in range(e.size):
            e.stop(i)
            e.start(i)
        # Changes the frozen copies miss: creations, an update, and a delete (which only a full read can learn
        # once its event has been compacted away).
        for i in range(5):
            e.put("/apisix/routes/ha_c_new_%d" % i, json.dumps(dict(origin_route("x", "c-new-%d.test" % i, o),
                                                                    id="ha_c_new_%d" % i)))
        e.put("/apisix/routes/ha_c_mod", json.dumps(dict(origin_route("x", mod2_host, o), id="ha_c_mod",
                                                         desc="v1")))
        e.delete("/apisix/routes/ha_c_gone")
        # On resume they must re-watch from their old revision, which is now compacted.
        compact_rev = e.compact()
        assert compact_rev > rev_before + 1
    finally:
        cp.sigcont()
        tr.sigcont()
    t_cont = time.monotonic()

    # The traditional proxy: new routes served, the modified one moved, the deleted one gone.
    def proxy_caught_up():
        return (all(served(tr, "c-new-%d.test" % i) == (200, "ha") for i in range(5))
                and served(tr, mod2_host) == (200, "ha") and served(tr, mod_host)[0] == 404
                and served(tr, gone_host)[0] == 404)

    wait_for(proxy_caught_up, timeout=15, interval=0.05,
             message=lambda: "the traditional copy to be re-read after compaction: new %r, mod %r/%r, gone %r; log "
             "since SIGCONT:\n%s" % ([served(tr, "c-new-%d.test" % i) for i in range(5)], served(tr, mod_host),
                                      served(tr, mod2_host), served(tr, gone_host), tr.log_since(marks[tr])[-3000:]))
    took = time.monotonic() - t_cont
    # Both copies hold what etcd holds.
    n_routes = len(e.keys("/apisix/routes/"))
    for p in (cp, tr):
        wait_for(lambda: (lambda s: s["revision"] >= compact_rev and copy_routes(s) == n_routes and not s["stale"])(
            p.config_status()), timeout=10, message=lambda: "%s copy: %r, etcd has %d routes at %d" % (
            p.name, p.config_status(), n_routes, compact_rev))
    # And both say so in their logs.
    found = {}
    for p in (cp, tr):
        wait_for(lambda: re.search(r"compact", p.log_since(marks[p]), re.I), timeout=10,
                 message=lambda: "%s to log the compaction / full re-read:\n%s" % (p.name,
                                                                               p.log_since(marks[p])[-3000:]))
        found[p.name] = [line for line in p.log_since(marks[p]).splitlines()
                         if re.search(r"compact|full read|re-?read", line, re.I)][:4]
    RESULTS["compaction"] = {"proxy_caught_up_after_sigcont_s": round(took, 3), "compacted_at": compact_rev,
                             "log": found}
    print("\ncompaction: traditional proxy caught up %.3fs after SIGCONT; log: %s" % (took, json.dumps(found)))


# ------------------------------------------------------------------------------------------------------------
# (d) an invalid value written straight into etcd
# ------------------------------------------------------------------------------------------------------------

def test_invalid_value_in_etcd_is_skipped(ha):
    e, cp, tr, o = ha
    good_host = "d-good.test"
    assert cp.admin("PUT", "/routes/ha_d_good", origin_route("ha_d_good", good_host, o))[0] in (200, 201)
    wait_served(tr, good_host)
    mark_cp, mark_tr = cp.log_size(), tr.log_size()

    e.put("/apisix/routes/ha_d_bad", '{"uri": 5}')
    e.put("/apisix/upstreams/ha_d_badjson", "this is not json")
    # A valid change after the bad ones must still arrive (the watch is not stuck on them).
    after_host = "d-after.test"
    rev_after = e.put("/apisix/routes/ha_d_after", json.dumps(dict(origin_route("ha_d_after", after_host, o),
                                                                   id="ha_d_after")))
    wait_served(tr, after_host, timeout=10)
    for _ in range(10):
        assert served(tr, good_host) == (200, "ha"), "the traditional proxy lost its good route"
    wait_for(lambda: cp.config_status()["revision"] >= rev_after, timeout=5, message="CP past the bad values")
    assert cp.config_status()["stale"] is False

    # Both processes logged the skipped keys.
    wait_for(lambda: "ha_d_bad" in cp.log_since(mark_cp) and "ha_d_badjson" in cp.log_since(mark_cp), timeout=5,
             message=lambda: "the CP to log the invalid keys:\n%s" % cp.log_since(mark_cp)[-2000:])
    wait_for(lambda: "ha_d_bad" in tr.log_since(mark_tr), timeout=5,
             message=lambda: "the traditional instance to log the invalid key:\n%s" % tr.log_since(mark_tr)[-2000:])
    assert cp.running() and tr.running()

    # The CP keeps serving the API.
    st, _, lst = cp.admin("GET", "/routes")
    assert st == 200 and any(it["key"] == "/apisix/routes/ha_d_after" for it in lst["list"]), (st, lst)
    g = cp.admin("GET", "/routes/ha_d_bad")
    assert g[0] < 500, g
    assert cp.admin("GET", "/upstreams")[0] == 200
    w = cp.admin("PUT", "/routes/ha_d_other", {"uri": "/d/other", "upstream": dead_upstream()})
    assert w[0] == 201, w

    # Fixing the bad key through the API makes it serve.
    fixed_host = "d-fixed.test"
    f = cp.admin("PUT", "/routes/ha_d_bad", origin_route("ha_d_bad", fixed_host, o))
    assert f[0] in (200, 201), f
    wait_served(tr, fixed_host, timeout=5)
    assert cp.admin("DELETE", "/upstreams/ha_d_badjson")[0] in (200, 404)
