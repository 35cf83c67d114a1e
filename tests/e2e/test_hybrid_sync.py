"""Hybrid sync end to end (docs/sync-protocol.md): control planes (role control_plane) on one etcd publish signed
states; data planes (role data_plane, dataplane.py) follow them by long poll, fail over between replicas, serve
from their cache when no control plane answers, refuse what does not verify, and report to the fleet view
(docs/admin-api.md, "Fleet view").

Run with -s to see the measured numbers (they are recorded in docs/reliability.md):
    /usr/bin/python3 -m pytest -q tests/e2e/test_hybrid_sync.py -s

The module shares one single-member etcd, two control-plane replicas A and B (same etcd, same signing key, fixed
admin and sync ports so that they can be SIGKILLed and restarted at the same addresses) and two data planes:
dp1 lists [A, B], dp2 lists [B, A]. Other data planes are started by the tests that need them. After every test
the replicas and the two data planes run again and serve the published content.
"""

import base64
import hashlib
import http.client
import json
import re
import secrets
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import LOOPBACK, free_port, wait_for

RESULTS = {}
PROPAGATION = {}  # data plane name -> creation propagation times of test (1), reused by (2)
ORIGIN_ID = "hs"
KINDS = ("routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs", "credentials")
ALWAYS_WRITTEN = 7  # src/sync/resource_set.h kAlwaysWrittenKinds: later kinds are written only when not empty
EXTRA_NODES = ("dp-cache", "dp-empty", "dp-corrupt", "dp-wrongkey")


# ------------------------------------------------------------------------------------------------------------
# Snapshot files (src/sync/envelope.h): header lines, a blank line, the document
# ------------------------------------------------------------------------------------------------------------

def canonical(value):
    """nlohmann's compact dump() with sorted keys (src/sync/README.md "Canonical form"), for ASCII values."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


HASH_BUCKETS = 1024  # src/sync/resource_set.h kHashBuckets


def hash_bucket(rid):
    """FNV-1a 64 of the id's bytes, modulo HASH_BUCKETS (src/sync/resource_set.h hash_bucket)."""
    h = 0xcbf29ce484222325
    for b in rid.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % HASH_BUCKETS


def document_hash(document):
    """The content hash of a snapshot document (src/sync/resource_set.h content_hash): a two-level Merkle hash.
    Bucket digest = SHA-256 over the bucket's resources in id byte order, each as kind NUL id NUL value NUL; root =
    SHA-256 over u32be(kind index) u32be(bucket) digest for every non-empty bucket, kinds in KINDS order."""
    doc = json.loads(document)
    root = hashlib.sha256()
    for k, kind in enumerate(KINDS):
        id_field = "username" if kind == "consumers" else "id"
        buckets = {}
        for v in doc.get(kind) or []:
            rid = str(v[id_field])
            buckets.setdefault(hash_bucket(rid), []).append((rid.encode(), canonical(v)))
        for b in sorted(buckets):
            h = hashlib.sha256()
            for rid, value in sorted(buckets[b]):
                h.update(kind.encode() + b"\0" + rid + b"\0" + value.encode() + b"\0")
            root.update(k.to_bytes(4, "big") + b.to_bytes(4, "big") + h.digest())
    return root.hexdigest()


def document_text(doc):
    """A document as src/sync/resource_set.cc document() writes it, from {kind: [value, ...]} (values in id
    order): every kind of the first ALWAYS_WRITTEN, later ones only when they hold something."""
    return ("{" + ",".join('"%s":[%s]' % (k, ",".join(canonical(v) for v in doc.get(k) or []))
                           for i, k in enumerate(KINDS) if i < ALWAYS_WRITTEN or doc.get(k)) + "}").encode()


def parse_snapshot(data):
    """(header as an ordered list of (name, value), document bytes)."""
    head, sep, document = data.partition(b"\n\n")
    assert sep, "no blank line after the snapshot header: %r" % data[:300]
    lines = head.decode().split("\n")
    assert lines[0] == "portico-snapshot 1", lines[0]
    header = []
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        header.append((name, value))
    return header, document


def encode_snapshot(header, document):
    return ("portico-snapshot 1\n" + "".join("%s: %s\n" % (k, v) for k, v in header) + "\n").encode() + document


def signing_message(cluster_id, revision, content_hash):
    return ("portico-config-v1\n%s\n%s\n%s\n" % (cluster_id, revision, content_hash)).encode()


def key_id_of(public_key):
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path):
    return serialization.load_pem_public_key(Path(path).read_bytes())


def forge_snapshot(valid, revision, extra_route, signer, key_id=None):
    """A snapshot built from the valid snapshot bytes `valid`: `extra_route` added to its document, the header's
    revision and content hash recomputed, signed by `signer` (an Ed25519PrivateKey the data plane does not trust).
    key_id defaults to the signer's own."""
    header, document = parse_snapshot(valid)
    h = dict(header)
    doc = json.loads(document)
    doc["routes"] = (doc.get("routes") or []) + [extra_route]
    doc["routes"].sort(key=lambda v: str(v["id"]).encode())
    new_doc = document_text(doc)
    sha = document_hash(new_doc)
    sig = signer.sign(signing_message(h["cluster_id"], revision, sha))
    new_header = [("cluster_id", h["cluster_id"]), ("revision", str(revision)), ("sha256", sha),
                  ("key_id", key_id or key_id_of(signer.public_key())),
                  ("signature", base64.b64encode(sig).decode())]
    return encode_snapshot(new_header, new_doc)


# ------------------------------------------------------------------------------------------------------------
# The module's cluster
# ------------------------------------------------------------------------------------------------------------

class Hybrid:
    def __init__(self, etcd, cps, dps, origin, tokens, pub, urls):
        self.etcd = etcd
        self.cps = cps            # [A, B]
        self.dps = dps            # [dp1, dp2]
        self.origin = origin
        self.tokens = tokens      # node id -> token
        self.pub = pub            # signing.pub the data planes trust
        self.urls = urls          # {cp: "http://127.0.0.1:SYNC"}

    @property
    def a(self):
        return self.cps[0]

    @property
    def b(self):
        return self.cps[1]

    def url(self, cp):
        return self.urls[cp.name]

    def sync_addr(self, cp):
        return self.url(cp)[len("http://"):]

    def cp_by_url(self, url):
        for cp in self.cps:
            if self.url(cp) == url:
                return cp
        raise AssertionError("no control plane at %r" % url)

    def route(self, host, **kw):
        r = {"uri": "/id", "hosts": [host], "upstream": {"type": "roundrobin", "nodes": {self.origin.node: 1}}}
        r.update(kw)
        return r

    def put_route(self, rid, host, via=None):
        cp = via or self.a
        r = cp.admin("PUT", "/routes/%s" % rid, self.route(host))
        assert r.status in (200, 201), "PUT /routes/%s via %s: %r" % (rid, cp.name, r)
        return r

    def delete_route(self, rid, via=None):
        cp = via or self.a
        r = cp.admin("DELETE", "/routes/%s" % rid)
        assert r.status == 200, "DELETE /routes/%s via %s: %r" % (rid, cp.name, r)
        return r

    def published(self, cp=None):
        """(revision, hash) the control plane publishes (its /status/config)."""
        st = (cp or self.a).config_status()
        return st["published_revision"], st["published_hash"]

    def fleet(self, cp):
        r = cp.admin("GET", "/data_planes")
        assert r.status == 200 and isinstance(r.body, dict), "GET /apisix/admin/data_planes via %s: %r" % (cp.name, r)
        return r.body

    def fleet_entry(self, cp, node):
        for it in self.fleet(cp)["list"]:
            if it.get("node_id") == node:
                return it
        return None

    def kill_cp(self, cp):
        cp.proc.kill()
        cp.proc.wait(10)

    def kill_all_cps(self):
        for cp in self.cps:
            self.kill_cp(cp)

    def start_cp(self, cp):
        if cp.running():
            return
        cp.spawn()
        try:
            cp.wait_up(ready=True, timeout=20)
        except Exception as e:
            raise AssertionError("restarting %s failed: %s\n--- log tail ---\n%s" % (cp.name, e, cp.log_tail(30)))

    def start_all_cps(self):
        for cp in self.cps:
            self.start_cp(cp)

    def published_states(self):
        """{cp name: (revision, hash)} of the running control planes."""
        return {cp.name: self.published(cp) for cp in self.cps if cp.running()}

    def wait_dp_synced(self, dp, timeout=20.0, cp=None):
        """Waits until `dp` serves what the control planes publish: their content hash, at the revision that `cp`
        (default: any running replica) publishes. Replicas agree on content; a replica restarted since the last
        content change publishes it under its load revision (see test_restarted_replica_state), so the revision
        is compared with one replica's."""
        def synced():
            states = [self.published(cp)] if cp is not None else list(self.published_states().values())
            st = dp.config_status()
            return (st["sync_revision"], st["sync_hash"]) in states and st
        return wait_for(synced, timeout=timeout, interval=0.05,
                        message=lambda: "%s to serve the published state %r (status %r)"
                        % (dp.name, self.published_states(), dp.try_config_status()))

    def restore(self):
        self.start_all_cps()
        for dp in self.dps:
            if not dp.running():
                dp.start(wait_ready=True)
        for dp in self.dps:
            self.wait_dp_synced(dp, timeout=25)


@pytest.fixture(scope="module")
def hs(etcd_module, controlplane_module, dataplane_module, origin_module, tmp_path_factory):
    e = etcd_module(size=1, name="etcd-hs")
    o = origin_module(ORIGIN_ID)
    work = tmp_path_factory.mktemp("hybrid")
    tokens = {n: secrets.token_hex(12) for n in ("dp1", "dp2") + EXTRA_NODES}
    tokens_file = work / "dp-tokens"
    tokens_file.write_text("# node-id token\n" + "".join("%s %s\n" % kv for kv in tokens.items()))
    tokens_file.chmod(0o600)
    ports = {n: (free_port(), free_port()) for n in ("cpA", "cpB")}
    cp_a = controlplane_module(e.endpoints_arg(), name="cpA", admin_listen="%s:%d" % (LOOPBACK, ports["cpA"][0]),
                               sync_listen="%s:%d" % (LOOPBACK, ports["cpA"][1]), dp_tokens_file=str(tokens_file))
    cp_b = controlplane_module(e.endpoints_arg(), name="cpB", admin_listen="%s:%d" % (LOOPBACK, ports["cpB"][0]),
                               sync_listen="%s:%d" % (LOOPBACK, ports["cpB"][1]), dp_tokens_file=str(tokens_file),
                               signing_key_file=str(cp_a.state_dir / "signing.key"))
    pub = cp_a.state_dir / "signing.pub"
    assert pub.exists(), "the control plane did not write %s" % pub
    urls = {n: "http://%s:%d" % (LOOPBACK, ports[n][1]) for n in ports}
    dp1 = dataplane_module([urls["cpA"], urls["cpB"]], pub, tokens["dp1"], "dp1")
    dp2 = dataplane_module([urls["cpB"], urls["cpA"]], pub, tokens["dp2"], "dp2")
    h = Hybrid(e, [cp_a, cp_b], [dp1, dp2], o, tokens, pub, urls)
    h.tokens_file = tokens_file
    for dp in h.dps:
        h.wait_dp_synced(dp)
    yield h
    if RESULTS:
        print("\n=== hybrid sync results ===")
        for k, v in RESULTS.items():
            print("%s: %s" % (k, json.dumps(v, sort_keys=True)))


@pytest.fixture(autouse=True)
def restored(hs):
    """Every test leaves both control planes and both module data planes running and in sync."""
    yield
    hs.restore()


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def summary(values):
    return {"n": len(values), "p50_ms": round(statistics.median(values) * 1000, 1),
            "p90_ms": round(pct(values, 90) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def wait_served(dp, host, want=(200, ORIGIN_ID), timeout=10.0):
    wait_for(lambda: dp.served(host) == want, timeout=timeout, interval=0.01,
             message=lambda: "%s to answer %r for %s (last %r; status %r)" % (dp.name, want, host, dp.served(host),
                                                                             dp.try_config_status()))


def propagate(hs, dps, change, check, timeout=10.0):
    """Runs change() (an Admin API call that returns once acknowledged), then polls every data plane until
    check(dp) holds. Returns {dp.name: seconds from the acknowledgement to the data plane serving it}."""
    change()
    t_ack = time.monotonic()
    pending = list(dps)
    out = {}
    while pending:
        for dp in list(pending):
            if check(dp):
                out[dp.name] = time.monotonic() - t_ack
                pending.remove(dp)
        if pending and time.monotonic() - t_ack > timeout:
            raise AssertionError("not propagated within %.0fs to %s: %r" % (
                timeout, [d.name for d in pending], [(d.name, d.try_config_status()) for d in pending]))
        time.sleep(0.002)
    return out


def measure_propagation(hs, tag, n):
    """n route creations through A, then their deletions; times per data plane, acknowledgement → served."""
    created = {dp.name: [] for dp in hs.dps}
    deleted = {dp.name: [] for dp in hs.dps}
    for i in range(n):
        host = "%s-%d.hs.test" % (tag, i)
        t = propagate(hs, hs.dps, lambda: hs.put_route("%s_%d" % (tag, i), host),
                      lambda dp: dp.served(host) == (200, ORIGIN_ID))
        for k, v in t.items():
            created[k].append(v)
    for i in range(n):
        host = "%s-%d.hs.test" % (tag, i)
        t = propagate(hs, hs.dps, lambda: hs.delete_route("%s_%d" % (tag, i)),
                      lambda dp: dp.served(host)[0] == 404)
        for k, v in t.items():
            deleted[k].append(v)
    return created, deleted


# ------------------------------------------------------------------------------------------------------------
# (1) a route PUT through the Admin API is served by the data planes; DELETE → 404; the cache holds it
# ------------------------------------------------------------------------------------------------------------

def test_dp_serves_admin_changes_and_caches_them(hs):
    created, deleted = measure_propagation(hs, "hs1", 30)
    stats = {"create": {k: summary(v) for k, v in created.items()},
             "delete": {k: summary(v) for k, v in deleted.items()}}
    RESULTS["propagation"] = stats
    PROPAGATION.update(created)
    print("\npropagation (PUT/DELETE answer -> data plane serving it): %s" % json.dumps(stats, sort_keys=True))

    # One more route that stays, then the cache: the newest file is the state being served, signed by the
    # control planes' key, its document hashing to the signed hash.
    hs.put_route("hs1_keep", "hs1-keep.hs.test")
    dp1 = hs.dps[0]
    # Served first, then synced: waiting for "synced" first could match the state before the write, published
    # by a replica that had not seen it yet (the data plane then moved on to the write's revision). And both
    # replicas must have published it: one may lag the other by a watch event.
    wait_served(dp1, "hs1-keep.hs.test")

    def settled():
        st = dp1.config_status()
        state = (st["sync_revision"], st["sync_hash"])
        return (hs.published(hs.a)[1] == hs.published(hs.b)[1] == st["sync_hash"]
                and state == hs.published(hs.cp_by_url(st["control_plane"])) and st)
    st = wait_for(settled, timeout=20, interval=0.05,
                  message=lambda: "dp1 to serve what both replicas publish: %r, %r"
                  % (dp1.try_config_status(), hs.published_states()))
    rev, sha = st["sync_revision"], st["sync_hash"]
    assert (rev, sha) == hs.published(hs.cp_by_url(st["control_plane"])), (st, hs.published_states())
    assert hs.published(hs.a)[1] == hs.published(hs.b)[1] == sha, hs.published_states()
    path = dp1.snapshot_path(rev)
    wait_for(path.exists, timeout=5, message=lambda: "%s in %s (has %s)" % (path.name, dp1.cache_dir,
                                                                          dp1.snapshots()))
    files = dp1.snapshots()
    assert files[-1][0] == rev, "the newest cache file is not the served revision %d: %s" % (rev, files)
    header, document = parse_snapshot(path.read_bytes())
    h = dict(header)
    assert [k for k, _ in header] == ["cluster_id", "revision", "sha256", "key_id", "signature"], header
    assert int(h["revision"]) == rev and h["sha256"] == sha and h["cluster_id"] == st["cluster_id"], (h, st)
    assert document_hash(document) == sha, "the cached document does not hash to the signed hash"
    pub = load_public_key(hs.pub)
    assert h["key_id"] == key_id_of(pub), (h["key_id"], key_id_of(pub))
    pub.verify(base64.b64decode(h["signature"]), signing_message(h["cluster_id"], rev, sha))  # raises if bad
    doc = json.loads(document)
    r = hs.a.admin("GET", "/routes")
    assert r.status == 200, r
    assert sorted(v["id"] for v in doc["routes"]) == sorted(it["value"]["id"] for it in r.body["list"]), \
        "the cached document's routes differ from the Admin API's"
    assert "hs1_keep" in [v["id"] for v in doc["routes"]]
    assert not any(v["id"].startswith("hs1_") and v["id"] != "hs1_keep" for v in doc["routes"]), \
        "deleted routes are still in the cache file"
    assert (path.stat().st_mode & 0o777) & 0o077 == 0, "cache file readable by others: %o" % path.stat().st_mode


# ------------------------------------------------------------------------------------------------------------
# (2) push, not polling
# ------------------------------------------------------------------------------------------------------------

def test_propagation_is_push_not_polling(hs):
    """The long poll waits up to 20 s; a change must be answered at once, not at the next heartbeat."""
    created = dict(PROPAGATION)
    if not created:  # run alone: measure here
        created, _ = measure_propagation(hs, "hs2", 15)
    for name, values in created.items():
        p50 = statistics.median(values)
        assert p50 < 1.0, "%s: propagation p50 %.3fs (of %d changes) is not push: %r" % (name, p50, len(values),
                                                                                       summary(values))
        assert max(values) < 5.0, "%s: slowest change took %.3fs: %r" % (name, max(values), summary(values))


# ------------------------------------------------------------------------------------------------------------
# (3) two data planes, two control-plane replicas: convergence, and failover when one replica dies
# ------------------------------------------------------------------------------------------------------------

def test_two_cps_two_dps_converge_and_fail_over(hs):
    dp1, dp2 = hs.dps
    wait_for(lambda: dp1.config_status()["control_plane"] == hs.url(hs.a), timeout=10,
             message=lambda: "dp1 on A (first in its list): %r" % dp1.try_config_status())
    wait_for(lambda: dp2.config_status()["control_plane"] == hs.url(hs.b), timeout=10,
             message=lambda: "dp2 on B (first in its list): %r" % dp2.try_config_status())

    # Every change, through either replica, reaches both data planes, and they hold the same content.
    times = []
    for i in range(10):
        via = hs.cps[i % 2]
        host = "hs3-%d.hs.test" % i
        t = propagate(hs, hs.dps, lambda: hs.put_route("hs3_%d" % i, host, via=via),
                      lambda dp: dp.served(host) == (200, ORIGIN_ID))
        times += list(t.values())
    s1, s2 = hs.wait_dp_synced(dp1), hs.wait_dp_synced(dp2)
    assert s1["sync_hash"] == s2["sync_hash"] == hs.published(hs.b)[1]
    for i in range(10):
        for dp in hs.dps:
            assert dp.served("hs3-%d.hs.test" % i) == (200, ORIGIN_ID)

    # SIGKILL the replica dp1 is connected to, and write through the other one at once: dp1 must fail over
    # and apply it (measured from the kill), dp2 stays where it is.
    victim = hs.cp_by_url(dp1.config_status()["control_plane"])
    survivor = hs.b if victim is hs.a else hs.a
    dp2_cp = dp2.config_status()["control_plane"]
    t_kill = time.monotonic()
    hs.kill_cp(victim)
    host = "hs3-failover.hs.test"
    hs.put_route("hs3_failover", host, via=survivor)
    wait_for(lambda: dp1.served(host) == (200, ORIGIN_ID), timeout=15, interval=0.005,
             message=lambda: "dp1 to apply a change through %s after %s was killed: %r" % (
                 survivor.name, victim.name, dp1.try_config_status()))
    failover_s = time.monotonic() - t_kill
    st = wait_for(lambda: (lambda s: s["control_plane"] == hs.url(survivor) and s["connected"] and s)(
        dp1.config_status()), timeout=5, interval=0.01,
        message=lambda: "dp1's status to name %s: %r" % (survivor.name, dp1.try_config_status()))
    assert st["sync_source"] == "control_plane"
    wait_served(dp2, host)

    # And keeps applying new changes, from the survivor.
    after = []
    for i in range(5):
        host = "hs3-after-%d.hs.test" % i
        t = propagate(hs, hs.dps, lambda: hs.put_route("hs3_after_%d" % i, host, via=survivor),
                      lambda dp: dp.served(host) == (200, ORIGIN_ID))
        after += list(t.values())
    hs.wait_dp_synced(dp1, cp=survivor)
    assert dp1.config_status()["control_plane"] == hs.url(survivor)
    assert dp2.config_status()["control_plane"] == dp2_cp, "dp2 moved although its replica is alive"
    for dp in hs.dps:
        assert dp.ready()
    stats = {"converge": summary(times), "killed": victim.name,
             "kill_to_change_served_by_failed_over_dp_s": round(failover_s, 3),
             "after_failover": summary(after)}
    RESULTS["failover"] = stats
    print("\nfailover: %s" % json.dumps(stats, sort_keys=True))


def test_failover_status_names_new_cp_promptly(hs):
    """After a failover with no change to carry, /status/config (control_plane, connected) and the fleet view
    should say within seconds that the data plane is fine on the other replica: SyncStatus.control_plane is
    documented as "the endpoint in use", and the data plane's long poll to the survivor is open at once."""
    dp2 = hs.dps[1]
    # A content change first, so that both replicas publish the same state as the data plane (a replica
    # restarted earlier publishes its load revision until the next change).
    hs.put_route("hs3_status_pre", "hs3-status-pre.hs.test")
    wait_served(dp2, "hs3-status-pre.hs.test")
    st = hs.wait_dp_synced(dp2)
    states = hs.published_states()
    assert states["cpA"] == states["cpB"] == (st["sync_revision"], st["sync_hash"]), (states, st)
    wait_for(lambda: dp2.config_status()["connected"], timeout=10, message="dp2 connected")
    victim = hs.cp_by_url(dp2.config_status()["control_plane"])
    survivor = hs.b if victim is hs.a else hs.a
    t_kill = time.monotonic()
    hs.kill_cp(victim)
    samples = []  # (t, control_plane, connected, fleet status on the survivor)

    def named():
        st = dp2.config_status()
        ent = hs.fleet_entry(survivor, "dp2")
        samples.append((round(time.monotonic() - t_kill, 2), st["control_plane"], st["connected"],
                        ent and ent["status"]))
        return st["control_plane"] == hs.url(survivor) and st["connected"]

    wait_for(named, timeout=28, interval=0.25,
             message=lambda: "dp2 to name %s: %r" % (survivor.name, dp2.try_config_status()))
    took = time.monotonic() - t_kill
    # Meanwhile the data plane was in fact on the survivor: a change made now is applied at once.
    host = "hs3-status.hs.test"
    t = propagate(hs, [dp2], lambda: hs.put_route("hs3_status", host, via=survivor),
                  lambda dp: dp.served(host) == (200, ORIGIN_ID))
    failing_seen = sorted({s[0] for s in samples if s[3] == "failing"})
    RESULTS["failover_status_lag"] = {"kill_to_status_names_survivor_s": round(took, 3),
                                      "fleet_failing_seen_for_s": [failing_seen[0], failing_seen[-1]]
                                      if failing_seen else None,
                                      "change_after_s": round(t["dp2"], 3)}
    print("\nfailover status lag: %s" % json.dumps(RESULTS["failover_status_lag"]))
    assert took <= 5.0, (
        "after %s was killed, dp2's /status/config kept naming it (connected=false, sync_error set) for %.1fs, "
        "although its long poll to %s was open: the status only changes when that poll completes (up to the "
        "20 s wait). Fleet view meanwhile: %s. Samples (t, control_plane, connected, fleet status): %r"
        % (victim.name, took, survivor.name, "failing" if failing_seen else "not failing", samples[::4]))


def test_hung_control_plane_is_left_before_the_long_poll_times_out(hs):
    """A control plane that accepts connections and never answers (SIGSTOP: the kernel still completes TCP
    handshakes) used to hold a data plane for the long poll's whole timeout (20 s wait + 10 s slack). Its
    silence to two reports in a row now makes the data plane leave it: a change made through the other
    replica is served well before that."""
    dp2 = hs.dps[1]
    wait_for(lambda: dp2.config_status()["connected"], timeout=10, message="dp2 connected")
    victim = hs.cp_by_url(dp2.config_status()["control_plane"])
    survivor = hs.b if victim is hs.a else hs.a
    # A change through the victim answers dp2's long poll, so dp2 has just opened a fresh one there: without
    # the fix it would wait ~30 s from now.
    host = "hs-hung-pre.hs.test"
    hs.put_route("hs_hung_pre", host, via=victim)
    wait_served(dp2, host)
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        host = "hs-hung.hs.test"
        t = propagate(hs, [dp2], lambda: hs.put_route("hs_hung", host, via=survivor),
                      lambda dp: dp.served(host) == (200, ORIGIN_ID), timeout=25)
        RESULTS["hung_cp_failover_s"] = round(t["dp2"], 2)
        print("\nhung control plane left after %.2f s" % t["dp2"])
        assert t["dp2"] < 15, "dp2 waited %.1f s on a hung control plane" % t["dp2"]
        assert "no answer to 2 reports in a row" in dp2.error_log(), dp2.log_tail(20)
    finally:
        victim.proc.send_signal(signal.SIGCONT)


def test_restarted_replica_state(hs):
    """A replica restarted with no content change since: same content hash as the other replica, and the data
    planes keep serving that content. (Its published revision is recorded: it may differ, see the report.)"""
    hs.put_route("hs3_restart", "hs3-restart.hs.test")
    for dp in hs.dps:
        wait_served(dp, "hs3-restart.hs.test")
    before = hs.published_states()
    assert before["cpA"] == before["cpB"], before
    hs.kill_cp(hs.b)
    hs.start_cp(hs.b)
    after = hs.published_states()
    RESULTS["restarted_replica"] = {"before": before, "after": after}
    print("\nrestarted replica published state: %s" % json.dumps(RESULTS["restarted_replica"]))
    assert after["cpA"][1] == after["cpB"][1] == before["cpA"][1], after
    for dp in hs.dps:
        hs.wait_dp_synced(dp)
        assert dp.served("hs3-restart.hs.test") == (200, ORIGIN_ID)


def test_failover_to_a_replica_with_another_label_needs_no_full_snapshot(hs):
    """Replicas label the same content with different revisions (here: B restarted after an etcd write outside
    the config, so it publishes under the newer revision). A data plane failing over from A to B sends its
    content hash and takes B's label without a full snapshot; B's next change reaches it as a delta."""
    dp = hs.dps[0]  # lists [A, B]
    hs.wait_dp_synced(dp, cp=hs.a)
    hs.etcd.put("/portico-test/bump", "1")  # moves etcd's revision, not the config
    hs.kill_cp(hs.b)
    hs.start_cp(hs.b)
    wait_for(lambda: hs.published(hs.b)[1] == hs.published(hs.a)[1], timeout=10,
             message=lambda: "B to publish: %r" % hs.published_states())
    a, b = hs.published(hs.a), hs.published(hs.b)
    assert a[1] == b[1] and a[0] != b[0], "the scenario needs one content under two labels: A %r, B %r" % (a, b)
    mark = dp.log_size()
    hs.kill_cp(hs.a)
    wait_for(lambda: dp.config_status()["sync_revision"] == b[0], timeout=30,
             message=lambda: "dp1 to take B's label %d: %r" % (b[0], dp.try_config_status()))
    hs.put_route("hs3_label", "hs3-label.hs.test", via=hs.b)
    wait_served(dp, "hs3-label.hs.test")
    log = dp.log_since(mark)
    assert "full snapshot" not in log, log
    assert re.search(r"applied revision %d .* \(delta of 0 changes\)" % b[0], log), log
    hs.delete_route("hs3_label", via=hs.b)


# ------------------------------------------------------------------------------------------------------------
# (4) every control plane down: the data planes keep serving; back: changes flow again
# ------------------------------------------------------------------------------------------------------------

def test_all_cps_down_dps_keep_serving(hs):
    host = "hs4-live.hs.test"
    hs.put_route("hs4_live", host)
    for dp in hs.dps:
        wait_served(dp, host)
        hs.wait_dp_synced(dp)
    served_rev = hs.published()

    log = []  # (dp name, started, ended, status or error, body)
    stop = threading.Event()

    def hammer(dp):
        while not stop.is_set():
            t = time.monotonic()
            try:
                r = dp.get("/id", host=host, timeout=5)
                log.append((dp.name, t, time.monotonic(), r.status, (r.body or b"").decode(errors="replace")))
            except OSError as ex:
                log.append((dp.name, t, time.monotonic(), "error", repr(ex)))
            time.sleep(0.005)  # pacing of the load, not synchronisation

    threads = [threading.Thread(target=hammer, args=(dp,), daemon=True) for dp in hs.dps]
    for th in threads:
        th.start()
    try:
        wait_for(lambda: {n for n, *_ in log} == {dp.name for dp in hs.dps}, timeout=5, message="first requests")
        errors_before = {dp.name: dp.config_status()["sync_errors"] for dp in hs.dps}
        t_down = time.monotonic()
        hs.kill_all_cps()

        # The data planes notice, and still say they are ready and serve the last good state.
        for dp in hs.dps:
            wait_for(lambda: dp.config_status()["connected"] is False, timeout=10,
                     message=lambda: "%s to notice the control planes are gone: %r" % (dp.name,
                                                                                     dp.try_config_status()))
        t_noticed = time.monotonic() - t_down

        def outage_long_enough():
            n = {dp.name: sum(1 for r in log if r[0] == dp.name and r[1] >= t_down) for dp in hs.dps}
            return time.monotonic() - t_down >= 5.0 and min(n.values()) >= 50

        wait_for(outage_long_enough, timeout=30, interval=0.1, message="5 s of outage with traffic")
        for dp in hs.dps:
            st = dp.config_status()
            assert dp.ready(), "%s /readyz not 200 with every control plane down" % dp.name
            assert (st["sync_revision"], st["sync_hash"]) == served_rev and st["sync_source"] == "control_plane", st
            assert st["sync_errors"] > errors_before[dp.name], "sync_errors did not count the outage: %r" % st
            assert st["sync_error"], "no sync_error while every control plane is down: %r" % st
            m = dp.metrics()
            assert m.value("portico_sync_connected") == 0 and m.value("portico_sync_errors_total") >= 1
        t_up0 = time.monotonic()
        hs.start_all_cps()
        t_up = time.monotonic()
        outage_s = t_up0 - t_down

        # Back: a new change reaches both data planes.
        new_host = "hs4-after.hs.test"
        t = propagate(hs, hs.dps, lambda: hs.put_route("hs4_after", new_host),
                      lambda dp: dp.served(new_host) == (200, ORIGIN_ID), timeout=30)
        for dp in hs.dps:
            wait_for(lambda: dp.config_status()["connected"] is True, timeout=10, message="%s connected" % dp.name)
    finally:
        stop.set()
        for th in threads:
            th.join(10)

    during = [r for r in log if r[1] >= t_down and r[2] <= t_up]
    bad = [r for r in log if not (r[3] == 200 and r[4].strip() == ORIGIN_ID)]
    stats = {"outage_s": round(outage_s, 3), "noticed_s": round(t_noticed, 3),
             "cps_restart_s": round(t_up - t_up0, 3),
             "requests_total": len(log), "requests_during_outage": len(during),
             "failures_total": len(bad), "failures_during_outage": len([r for r in during if r in bad]),
             "first_change_after_restart_s": {k: round(v, 3) for k, v in t.items()}}
    RESULTS["all_cps_down"] = stats
    print("\nall control planes down: %s" % json.dumps(stats, sort_keys=True))
    assert not bad, "requests failed while the control planes were down or coming back: %r" % bad[:10]
    assert len(during) >= 100, stats


# ------------------------------------------------------------------------------------------------------------
# (5) restarted while every control plane is down: starts from its cache
# ------------------------------------------------------------------------------------------------------------

def test_dp_restarted_with_cps_down_starts_from_cache(hs, dataplane):
    host = "hs5.hs.test"
    hs.put_route("hs5", host)
    dp = dataplane([hs.url(hs.a), hs.url(hs.b)], hs.pub, hs.tokens["dp-cache"], "dp-cache")
    wait_served(dp, host)
    st = hs.wait_dp_synced(dp)
    rev, sha = st["sync_revision"], st["sync_hash"]
    wait_for(dp.snapshot_path(rev).exists, timeout=5, message="the cache file of revision %d" % rev)

    hs.kill_all_cps()
    dp.stop()
    assert not dp.running()
    t0 = time.monotonic()
    dp.start(wait_ready=True, timeout=10)
    ready_s = time.monotonic() - t0
    st = dp.config_status()
    assert st["sync_source"] == "cache", st
    assert (st["sync_revision"], st["sync_hash"]) == (rev, sha), st
    assert st["connected"] is False, st
    assert dp.served(host) == (200, ORIGIN_ID)
    assert dp.served("hs4-live.hs.test") == (200, ORIGIN_ID)   # every cached route, not only the newest
    assert dp.served("hs5-nope.hs.test")[0] == 404
    m = dp.metrics()
    assert m.value("portico_config_source", source="cache") == 1, m.text[-600:]
    assert m.value("portico_sync_revision") == rev

    # Control planes back: it switches to them.
    hs.start_all_cps()
    t1 = time.monotonic()
    wait_for(lambda: dp.config_status()["sync_source"] == "control_plane", timeout=20, interval=0.05,
             message=lambda: "dp-cache to switch to a control plane: %r" % dp.try_config_status())
    RESULTS["restart_from_cache"] = {"start_to_ready_s": round(ready_s, 3), "revision": rev,
                                     "cps_back_to_source_control_plane_s": round(time.monotonic() - t1, 3)}
    print("\nrestart from cache: %s" % json.dumps(RESULTS["restart_from_cache"]))


# ------------------------------------------------------------------------------------------------------------
# (6) a new data plane with an empty cache and no control plane: never ready, requests 503
# ------------------------------------------------------------------------------------------------------------

def test_new_dp_without_cache_or_cp_stays_unready(hs, dataplane):
    hs.kill_all_cps()
    dp = dataplane([hs.url(hs.a), hs.url(hs.b)], hs.pub, hs.tokens["dp-empty"], "dp-empty", wait_ready=False)
    assert dp.snapshots() == []
    t_end = time.monotonic() + 2.0
    polls = []
    while time.monotonic() < t_end:
        polls.append(dp.status_get("/readyz", timeout=2)[0])
        time.sleep(0.05)
    assert polls and set(polls) == {503}, "/readyz with no config: %r" % sorted(set(polls))
    r = dp.get("/id", host="hs4-live.hs.test")
    assert r.status == 503, r
    assert b"configuration" in (r.body or b""), "the 503 body should say there is no configuration: %r" % r.body
    st = dp.config_status()
    assert st["sync_source"] == "none" and st["sync_revision"] == 0 and st["connected"] is False, st
    assert st["sync_errors"] >= 1 and st["sync_error"], st
    assert dp.metrics().value("portico_config_source", source="none") == 1

    # A control plane answers: it becomes ready and serves (the 503 was for the missing config only).
    hs.start_all_cps()
    dp.wait_up(ready=True, timeout=20)
    wait_served(dp, "hs4-live.hs.test")
    RESULTS["empty_cache_no_cp"] = {"readyz_polls": len(polls), "all_503": True}


# ------------------------------------------------------------------------------------------------------------
# (7) corrupt and forged cache files are skipped (renamed *.bad) and an older valid one is used
# ------------------------------------------------------------------------------------------------------------

def logged_reason(log, name, reason):
    """Whether a line of `log` names the file `name` with `reason`."""
    return any(name in line and reason in line for line in log.splitlines())


def test_corrupt_or_forged_cache_files_are_skipped(hs, dataplane):
    dp = dataplane([hs.url(hs.a), hs.url(hs.b)], hs.pub, hs.tokens["dp-corrupt"], "dp-corrupt")
    revs = []
    for k in range(3):
        host = "hs7-%d.hs.test" % k
        hs.put_route("hs7_%d" % k, host)
        wait_served(dp, host)
        revs.append(hs.wait_dp_synced(dp)["sync_revision"])
        wait_for(dp.snapshot_path(revs[-1]).exists, timeout=5, message="cache file of revision %d" % revs[-1])
    assert revs == sorted(set(revs)), revs
    assert [r for r, _ in dp.snapshots()][-3:] == revs, dp.snapshots()
    hs.kill_all_cps()
    dp.stop()

    def restart_from_cache():
        mark = dp.log_size()
        dp.start(wait_ready=True, timeout=10)
        st = dp.config_status()
        assert st["sync_source"] == "cache", st
        return st, dp.log_since(mark)

    # (a) A byte of the newest file's document flipped (the JSON stays valid: a host name changes).
    newest = dp.snapshot_path(revs[2])
    data = bytearray(newest.read_bytes())
    doc_at = data.index(b"\n\n") + 2
    pos = data.index(b'"hosts":["hs7-2.hs.test"]', doc_at) + len('"hosts":["')
    data[pos] ^= 0x01  # 'h' -> 'i'
    newest.write_bytes(bytes(data))
    st, log = restart_from_cache()
    assert st["sync_revision"] == revs[1], "did not fall back to revision %d: %r" % (revs[1], st)
    assert dp.served("hs7-1.hs.test") == (200, ORIGIN_ID)
    assert dp.served("hs7-2.hs.test")[0] == 404 and dp.served("is7-2.hs.test")[0] == 404
    assert not newest.exists() and Path(str(newest) + ".bad").exists(), (dp.bad_files(), dp.snapshots())
    assert logged_reason(log, newest.name, "content does not match its hash"), \
        "the skipped file and the reason should be logged:\n%s" % log
    dp.stop()

    # (b) A character of the next file's signature changed, plus two forged newer files: one signed by an
    # untrusted key under its own key id, one claiming the trusted key's id.
    second = dp.snapshot_path(revs[1])
    data = bytearray(second.read_bytes())
    sig_at = data.index(b"\nsignature: ") + len(b"\nsignature: ") + 10
    data[sig_at] = ord("A") if data[sig_at] != ord("A") else ord("B")
    second.write_bytes(bytes(data))
    attacker = Ed25519PrivateKey.generate()
    valid = dp.snapshot_path(revs[0]).read_bytes()
    evil = {"id": "hs7_evil", "uri": "/id", "hosts": ["hs7-evil.hs.test"],
            "upstream": {"nodes": {hs.origin.node: 1}, "type": "roundrobin"}}
    forged_own = dp.snapshot_path(revs[2] + 100)
    forged_own.write_bytes(forge_snapshot(valid, revs[2] + 100, evil, attacker))
    forged_trusted = dp.snapshot_path(revs[2] + 50)
    forged_trusted.write_bytes(forge_snapshot(valid, revs[2] + 50, evil, attacker,
                                              key_id=key_id_of(load_public_key(hs.pub))))
    st, log = restart_from_cache()
    assert st["sync_revision"] == revs[0], "did not fall back to revision %d: %r" % (revs[0], st)
    assert dp.served("hs7-0.hs.test") == (200, ORIGIN_ID)
    assert dp.served("hs7-1.hs.test")[0] == 404
    assert dp.served("hs7-evil.hs.test")[0] == 404, "a forged snapshot was served"
    for p, reason in ((second, "signature does not verify"), (forged_own, "unknown signing key"),
                      (forged_trusted, "signature does not verify")):
        assert not p.exists() and Path(str(p) + ".bad").exists(), "%s not set aside: %s / %s" % (
            p.name, dp.bad_files(), dp.snapshots())
        assert logged_reason(log, p.name, reason), "%s not logged with %r:\n%s" % (p.name, reason, log)
    RESULTS["corrupt_cache"] = {"revisions": revs, "bad_files": dp.bad_files()}


# ------------------------------------------------------------------------------------------------------------
# (8) a wrong token: never ready, the error says so, not in the fleet view
# ------------------------------------------------------------------------------------------------------------

def test_wrong_token_never_ready_not_in_fleet(hs, dataplane):
    node = "dp-badtoken"
    dp = dataplane([hs.url(hs.a), hs.url(hs.b)], hs.pub, "not-a-listed-token-" + secrets.token_hex(6), node,
                   wait_ready=False)
    wait_for(lambda: "token" in dp.config_status()["sync_error"], timeout=10,
             message=lambda: "sync_error to mention the token: %r" % dp.try_config_status())
    wait_for(lambda: "report" in dp.error_log(), timeout=15,
             message=lambda: "a report attempt:\n%s" % dp.log_tail(20))
    t_end = time.monotonic() + 2.0
    polls = []
    while time.monotonic() < t_end:
        polls.append(dp.status_get("/readyz", timeout=2)[0])
        time.sleep(0.05)
    assert set(polls) == {503}, polls
    assert dp.get("/id", host="hs4-live.hs.test").status == 503
    st = dp.config_status()
    assert st["sync_source"] == "none" and st["connected"] is False and st["sync_errors"] >= 1, st
    assert "token" in dp.error_log(), dp.log_tail(20)
    for cp in hs.cps:
        nodes = [it["node_id"] for it in hs.fleet(cp)["list"]]
        assert node not in nodes, "%s lists the node with a wrong token: %r" % (cp.name, nodes)

    # The two kinds of credentials do not cross: an admin key on the sync listener, a data-plane token on
    # the Admin API.
    port = int(hs.url(hs.a).rsplit(":", 1)[1])
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    conn.request("GET", "/portico/v1/snapshot", headers={"Authorization": "Bearer " + hs.a.admin_key})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 401, (r.status, body)
    r = hs.a.admin("GET", "/routes", key=hs.tokens["dp1"])
    assert r.status == 401, r


def test_tokens_file_reloads_on_sighup(hs, dataplane):
    """A data plane added to the tokens file is let in after SIGHUP, without restarting the control planes; one
    removed is shut out; a broken file keeps the tokens in force."""
    node, token = "dp-late", secrets.token_hex(12)
    original = hs.tokens_file.read_text()
    dp = dataplane([hs.url(hs.a), hs.url(hs.b)], hs.pub, token, node, wait_ready=False)
    try:
        wait_for(lambda: "token" in dp.config_status()["sync_error"], timeout=10,
                 message=lambda: "the unknown token refused: %r" % dp.try_config_status())
        hs.tokens_file.write_text(original + "%s %s\n" % (node, token))
        for cp in hs.cps:
            mark = cp.log_size()
            cp.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "data-plane tokens reloaded" in cp.log_since(mark), timeout=10,
                     message=lambda: "%s to log the reload:\n%s" % (cp.name, cp.log_tail(10)))
        wait_for(lambda: dp.status_get("/readyz", timeout=2)[0] == 200, timeout=20,
                 message=lambda: "the added data plane to sync: %r" % dp.try_config_status())

        # A file that does not parse changes nothing: the node stays in.
        hs.tokens_file.write_text(original + "%s\n" % node)
        mark = hs.a.log_size()
        hs.a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "tokens not reloaded" in hs.a.log_since(mark), timeout=10,
                 message=lambda: "cpA to refuse the broken file:\n%s" % hs.a.log_tail(10))
        assert dp.status_get("/readyz", timeout=2)[0] == 200

        # Removed from the file: shut out at its next request (a long poll already waiting is answered).
        hs.tokens_file.write_text(original)
        for cp in hs.cps:
            mark = cp.log_size()
            cp.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "data-plane tokens reloaded" in cp.log_since(mark), timeout=10,
                     message=lambda: "%s to log the reload:\n%s" % (cp.name, cp.log_tail(10)))
        hs.put_route("late-probe-1", "late1.hs.test")  # ends the poll it is in
        wait_for(lambda: "token" in (dp.config_status()["sync_error"] or ""), timeout=40,
                 message=lambda: "the removed node refused: %r" % dp.try_config_status())
        hs.put_route("late-probe-2", "late2.hs.test")
        wait_served(hs.dps[0], "late2.hs.test")
        assert dp.get("/id", host="late2.hs.test").status == 404  # it gets nothing any more
    finally:
        hs.tokens_file.write_text(original)
        for cp in hs.cps:
            cp.proc.send_signal(signal.SIGHUP)
        for rid in ("late-probe-1", "late-probe-2"):
            hs.a.admin("DELETE", "/routes/%s" % rid)


# ------------------------------------------------------------------------------------------------------------
# (9) configs a data plane refuses
# ------------------------------------------------------------------------------------------------------------

def test_untrusted_signing_key_is_refused_and_reported(hs, dataplane, tmp_path):
    """A data plane that trusts another key (a botched key rotation) refuses every state: never ready, and the
    fleet view shows it failing, with the reason."""
    node = "dp-wrongkey"
    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    dp = dataplane([hs.url(hs.a), hs.url(hs.b)], other, hs.tokens[node], node, wait_ready=False)
    cp_key = key_id_of(load_public_key(hs.pub))
    wait_for(lambda: "unknown signing key" in dp.config_status()["sync_error"], timeout=10,
             message=lambda: "sync_error to name the unknown key: %r" % dp.try_config_status())
    assert cp_key in dp.config_status()["sync_error"]
    t_end = time.monotonic() + 2.0
    polls = []
    while time.monotonic() < t_end:
        polls.append(dp.status_get("/readyz", timeout=2)[0])
        time.sleep(0.05)
    assert set(polls) == {503}, polls
    assert dp.get("/id", host="hs4-live.hs.test").status == 503
    assert dp.snapshots() == [], "a refused state was cached: %s" % dp.snapshots()
    for cp in hs.cps:
        e = wait_for(lambda: (lambda it: it and it["status"] == "failing" and it)(hs.fleet_entry(cp, node)),
                     timeout=15, interval=0.2,
                     message=lambda: "%s to list %s as failing: %r" % (cp.name, node, hs.fleet_entry(cp, node)))
        assert "signing key" in e["last_error"] and e["revision"] == 0 and e["source"] == "none", e


def test_hand_written_value_the_dp_refuses_does_not_block_sync(hs):
    """A consumer written straight into etcd at a key that is a valid id but not a valid username, with no
    username in the value. The control plane's copy admits it (the key is a valid id; the value validates when
    the username is left to the key) and publishes it with username = the key; the data planes' loader refuses
    the whole config (username: failed to match pattern "^[a-zA-Z0-9_-]+\\z" with "hs9.bad").

    The documented contract (resource_store.h: a value that fails its kind's validator is kept out of the copy,
    "so nothing downstream ever sees it"; publishable(): "one bad key cannot hold back every other change") is
    that a good change written after the bad key still reaches every data plane. The data planes' safety net
    (keep serving the last good config, report failing) is checked on the way."""
    e = hs.etcd
    before_host, good_host = "hs9-before.hs.test", "hs9-good.hs.test"
    hs.put_route("hs9_before", before_host)
    for dp in hs.dps:
        wait_served(dp, before_host)
        hs.wait_dp_synced(dp)
    errors_before = {dp.name: dp.config_status()["sync_errors"] for dp in hs.dps}
    rev_before = {dp.name: dp.config_status()["sync_revision"] for dp in hs.dps}
    bad_key = "/apisix/consumers/hs9.bad"
    # The Admin API refuses this very consumer (the username it would get is not valid) ...
    r = hs.a.admin("PUT", "/consumers/hs9.bad", {})
    assert r.status == 400 and "username" in r.raw.decode(errors="replace"), r
    # ... written straight into etcd, it gets through.
    e.put(bad_key, "{}")
    arrived = {}
    observed = {}
    try:
        hs.put_route("hs9_good", good_host)
        for dp in hs.dps:
            try:
                wait_served(dp, good_host, timeout=5)
                arrived[dp.name] = True
            except AssertionError:
                arrived[dp.name] = False
        cp_status = hs.a.config_status()
        observed["cp_rejected_keys"] = cp_status.get("rejected_keys")
        observed["cp_published"] = hs.published()
        for dp in hs.dps:
            st = dp.config_status()
            observed[dp.name] = {k: st[k] for k in ("sync_revision", "sync_error", "sync_errors", "connected")}
            if not arrived[dp.name]:
                # The safety net: the refused state is not served; the last good one is, and it says why.
                assert st["sync_revision"] == rev_before[dp.name], st
                assert dp.served(before_host) == (200, ORIGIN_ID)
                assert dp.ready()
                assert "refused" in st["sync_error"] and "username" in st["sync_error"], st
                assert st["sync_errors"] > errors_before[dp.name], st
                assert dp.metrics().value("portico_sync_errors_total") > errors_before[dp.name]
                for cp in hs.cps:
                    ent = wait_for(lambda: (lambda it: it and it["status"] == "failing" and it)(
                        hs.fleet_entry(cp, dp.name)), timeout=15, interval=0.2,
                        message=lambda: "%s to list %s as failing: %r" % (cp.name, dp.name,
                                                                         hs.fleet_entry(cp, dp.name)))
                    assert "username" in ent["last_error"], ent
                    observed["fleet_%s_%s" % (cp.name, dp.name)] = {k: ent[k] for k in ("status", "revision")}
    finally:
        e.delete(bad_key)
    # Fixed (key deleted): every data plane catches up.
    for dp in hs.dps:
        wait_served(dp, good_host, timeout=15)
        hs.wait_dp_synced(dp)
        for cp in hs.cps:
            wait_for(lambda: (lambda it: it and it["status"] == "in_sync")(hs.fleet_entry(cp, dp.name)),
                     timeout=15, interval=0.2, message="%s in_sync again on %s" % (dp.name, cp.name))
    RESULTS["hand_written_refused_value"] = {"arrived_while_bad_key_present": arrived, "observed": observed}
    print("\nhand-written consumer: %s" % json.dumps(RESULTS["hand_written_refused_value"], sort_keys=True))
    assert all(arrived.values()), (
        "a good change made after one bad hand-written etcd value did not reach the data planes: the control "
        "plane published %s (its copy admitted it, rejected_keys=%r) and every data plane refused the whole "
        "config: %r" % (bad_key, observed.get("cp_rejected_keys"), observed))


# ------------------------------------------------------------------------------------------------------------
# (11) metrics
# ------------------------------------------------------------------------------------------------------------

def test_metrics_follow_published_revision(hs):
    r = hs.put_route("hs11", "hs11.hs.test")
    write_rev = r.body["modifiedIndex"]
    for dp in hs.dps:
        wait_served(dp, "hs11.hs.test")
        st = hs.wait_dp_synced(dp)
        rev, sha = hs.published()
        assert rev == write_rev, "published revision %d is not the last content change's %d" % (rev, write_rev)
        m = wait_for(lambda: (lambda m: m.value("portico_sync_revision") == rev and m)(dp.metrics()), timeout=5,
                     message="%s portico_sync_revision == %d" % (dp.name, rev))
        sources = m.find("portico_config_source")
        assert [(l["source"], v) for _, l, v in sources] == [("control_plane", 1.0)], sources
        assert m.value("portico_sync_connected") == 1
        assert 0 <= m.value("portico_sync_seconds_since_success") < 30, m.value("portico_sync_seconds_since_success")
        assert m.value("portico_sync_errors_total") == st["sync_errors"]


# ------------------------------------------------------------------------------------------------------------
# (10) fleet view: both replicas list both data planes in sync; a killed one turns stale
# ------------------------------------------------------------------------------------------------------------

def test_fleet_view_lists_in_sync_then_stale(hs):
    dp1, dp2 = hs.dps
    hs.put_route("hs10", "hs10.hs.test")
    for dp in hs.dps:
        wait_served(dp, "hs10.hs.test")
        hs.wait_dp_synced(dp)

    def both_in_sync(cp):
        body = hs.fleet(cp)
        got = {it["node_id"]: it for it in body["list"] if it["node_id"] in ("dp1", "dp2")}
        ok = len(got) == 2 and all(it["status"] == "in_sync" and it["revision"] == body["revision"]
                                   and it["content_hash"] == body["content_hash"] for it in got.values())
        return ok and (body, got)

    views = {}
    for cp in hs.cps:
        views[cp.name] = wait_for(lambda: both_in_sync(cp), timeout=12, interval=0.2,
                                  message=lambda: "%s to list dp1 and dp2 in_sync: %r" % (cp.name, hs.fleet(cp)))
    (ba, ga), (bb, gb) = views["cpA"], views["cpB"]
    assert (ba["revision"], ba["content_hash"]) == (bb["revision"], bb["content_hash"]) == hs.published(), (ba, bb)
    assert ba["total"] == len(ba["list"]), ba
    for node, dp in (("dp1", dp1), ("dp2", dp2)):
        it = ga[node]
        assert it["source"] == "control_plane" and it["last_error"] == "" and it["version"], it
        assert it["hostname"] and it["seconds_since_report"] < 15, it
        assert "http://" + it["control_plane"] == dp.config_status()["control_plane"], (it, dp.config_status())

    # dp2 killed: within ~20 s both replicas list it as stale; dp1 stays in_sync.
    t_kill = time.monotonic()
    dp2.kill()
    seen = {}
    for cp in hs.cps:
        seen[cp.name] = wait_for(lambda: (lambda it: it and it["status"] == "stale" and it)(hs.fleet_entry(cp, "dp2")),
                                 timeout=25, interval=0.25,
                                 message=lambda: "%s to list dp2 as stale: %r" % (cp.name, hs.fleet_entry(cp, "dp2")))
        assert hs.fleet_entry(cp, "dp1")["status"] == "in_sync", hs.fleet_entry(cp, "dp1")
    stale_s = time.monotonic() - t_kill
    for it in seen.values():
        assert it["seconds_since_report"] >= 15, "listed stale after %.1fs silent (documented: 15 s)" % (
            it["seconds_since_report"])
    assert stale_s <= 22, stale_s
    RESULTS["fleet_stale"] = {"kill_to_stale_on_both_s": round(stale_s, 3),
                              "seconds_since_report_when_stale": [round(it["seconds_since_report"], 2)
                                                                  for it in seen.values()]}
    print("\nfleet view: %s" % json.dumps(RESULTS["fleet_stale"]))
