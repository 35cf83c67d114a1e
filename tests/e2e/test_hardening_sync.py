"""A data plane against hostile or impersonated control planes, and a hostile cache directory (docs/sync-protocol.md,
"Bounds" and "Cluster identity").

The control plane here is a fake one: a small HTTP server in this process, on loopback, that holds an Ed25519 key
the data plane trusts and answers the sync protocol as each test needs, from well-formed down to hostile
(a /changes answer of 250 MiB, bodies that never end, a genuine state of another etcd cluster). What it signs is
genuine: the data plane cannot tell it from a real control plane whose key leaked or whose address was taken.

Run with -s to see the memory figures.
"""

import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import LOOPBACK, free_port, wait_for
from test_hybrid_sync import document_hash, document_text, encode_snapshot, key_id_of, signing_message

MIB = 1 << 20
MAX_DELTA = 32 * MIB      # src/sync/envelope.h kMaxDeltaBytes
MAX_SNAPSHOT = 128 * MIB  # src/sync/envelope.h kMaxSnapshotBytes
HOST = "hard.test"
ORIGIN_ID = "hard"


class Signer:
    """An Ed25519 key whose public half the data planes of a test trust (written to `pub_path`)."""

    def __init__(self, workdir):
        self.key = Ed25519PrivateKey.generate()
        self.pub_path = workdir / "trusted.pub"
        self.pub_path.write_bytes(self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.key_id = key_id_of(self.key.public_key())

    def state(self, cluster_id, revision, sha):
        sig = self.key.sign(signing_message(cluster_id, revision, sha))
        return {"cluster_id": cluster_id, "revision": revision, "sha256": sha, "key_id": self.key_id,
                "signature": base64.b64encode(sig).decode()}

    def snapshot(self, cluster_id, revision, routes):
        doc = {"routes": sorted(routes, key=lambda r: r["id"].encode())}
        document = document_text(doc)
        st = self.state(cluster_id, revision, document_hash(document))
        header = [(k, str(st[k])) for k in ("cluster_id", "revision", "sha256", "key_id", "signature")]
        return encode_snapshot(header, document), st


class FakeControlPlane:
    """The sync listener of a control plane, impersonated. `mode` decides the answers:
      normal           /snapshot: the signed snapshot; /changes: a heartbeat after at most 1 s
      huge_changes     /changes: 200 with a 250 MiB JSON body (Content-Length set), many changes
      endless_changes  /changes: 200, no length, a JSON body that never ends
      endless_snapshot /changes: 409 (full snapshot needed); /snapshot: 200, no length, never ends
      big_delta        /changes: 200 with a well-formed 30 MiB delta (under the bound): 30 values of 1 MiB
    `sent` lists the body bytes of every hostile answer sent before the data plane hung up."""

    def __init__(self, signer, cluster_id, revision, routes):
        self.signer = signer
        self.cluster_id = cluster_id
        self.revision = revision
        self.snapshot_bytes, self.state = signer.snapshot(cluster_id, revision, routes)
        self.mode = "normal"
        self.huge_size = 250 * MIB
        self.sent = []
        self.counts = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.handle(self)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.count("report")
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
        self.server.daemon_threads = True
        self.url = "http://%s:%d" % (LOOPBACK, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # -- answers -------------------------------------------------------------------------------------------------
    def handle(self, h):
        url = urlparse(h.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        mode = self.mode
        if url.path == "/portico/v1/snapshot":
            self.count("snapshot")
            if mode == "endless_snapshot":
                return self.endless(h, b"portico-snapshot 1\n", b"x" * 65536)
            return self.reply(h, 200, self.snapshot_bytes, "application/vnd.portico.snapshot")
        if url.path != "/portico/v1/changes":
            return self.reply(h, 404, b'{"error_msg":"not found"}')
        self.count("changes")
        if q.get("cluster") != self.cluster_id or mode == "endless_snapshot":
            return self.reply(h, 409, b'{"error_msg":"full snapshot needed","full":true}')
        head = ('{"cluster_id":"%s","from":%d,"revision":%d,"changes":['
                % (self.cluster_id, self.revision, self.revision + 1)).encode()
        change = (',{"kind":"routes","id":"x","value":{"id":"x","uri":"/x","hosts":["a.test","b.test"],'
                  '"desc":"' + "d" * 60 + '"}}').encode()
        if mode == "huge_changes":
            return self.sized(h, head, change, self.huge_size)
        if mode == "big_delta":
            values = ['{"kind":"routes","id":"x%d","value":{"desc":"%s","id":"x%d","uri":"/x"}}'
                      % (i, "d" * MIB, i) for i in range(30)]
            body = head + ",".join(values).encode() + b'],"state":' + json.dumps(self.state).encode() + b"}"
            with self.lock:
                self.sent.append(len(body))
            return self.reply(h, 200, body)
        if mode == "endless_changes":
            return self.endless(h, head + change[1:], change)
        # normal: the heartbeat (nothing new) after a short wait
        self.stopping.wait(min(float(q.get("wait", 1)), 1.0))
        body = {"cluster_id": self.cluster_id, "from": self.revision, "revision": self.revision, "changes": [],
                "state": self.state}
        return self.reply(h, 200, json.dumps(body).encode())

    def reply(self, h, status, body, content_type="application/json"):
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the data plane hung up (it refused a body, or it stopped)
            h.close_connection = True

    def sized(self, h, head, change, size):
        """A well-formed /changes answer of exactly `size` bytes: `change` repeated, then a state."""
        tail = (b'],"state":' + json.dumps(self.state).encode() + b"}")
        first = change[1:]
        n = (size - len(head) - len(first) - len(tail)) // len(change)
        pad = size - len(head) - len(first) - n * len(change) - len(tail)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(size))
        h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        block = change * 1024
        try:
            h.wfile.write(head + first)
            sent += len(head) + len(first)
            left = n
            while left > 0 and not self.stopping.is_set():
                k = min(left, 1024)
                h.wfile.write(block if k == 1024 else change * k)
                sent += k * len(change)
                left -= k
            h.wfile.write(b" " * pad + tail)
            sent += pad + len(tail)
        except OSError:
            pass
        finally:
            with self.lock:
                self.sent.append(sent)
            h.close_connection = True

    def endless(self, h, first, chunk, bound=2048 * MIB):
        """200 with no length and a body that goes on until the client hangs up (or `bound`, the test's own)."""
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        try:
            h.wfile.write(first)
            sent = len(first)
            while sent < bound and not self.stopping.is_set():
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            with self.lock:
                self.sent.append(sent)
            h.close_connection = True


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------

def route(origin, rid="1", host=HOST):
    return {"id": rid, "uri": "/id", "hosts": [host], "upstream": {"type": "roundrobin", "nodes": {origin.node: 1}}}


def start_dp(dataplane, cps, signer, name, **flags):
    urls = [cp.url if hasattr(cp, "url") else cp for cp in cps]
    return dataplane(urls, signer.pub_path, "token-0123456789-%s" % name, name, **flags)


def served(dp, host=HOST):
    return dp.served(host)


def limit_address_space(dp, headroom):
    """RLIMIT_AS of the data plane = its current address space + `headroom` bytes: a larger allocation fails with
    std::bad_alloc instead of growing (the memory limit of a container, made strict)."""
    size = dp.memory_kb()["VmSize"] * 1024 + headroom
    resource.prlimit(dp.pid, resource.RLIMIT_AS, (size, size))
    return size


def wait_hostile_answers(dp, fake, n, what, timeout=60):
    """Waits until the data plane hung up on `n` hostile answers and logged the refusal of each kind."""
    wait_for(lambda: len(fake.sent) >= n and what in dp.error_log(), timeout=timeout, interval=0.05,
             message=lambda: "%d refused answers and %r in the log (sent %r, alive %s)\n%s"
             % (n, what, fake.sent, dp.running(), dp.log_tail(30)))


def assert_still_serving(dp, revision):
    assert dp.running(), "the data plane died:\n%s" % dp.log_tail(40)
    assert dp.status_get("/readyz")[0] == 200
    assert served(dp) == (200, ORIGIN_ID), served(dp)
    assert dp.config_status()["sync_revision"] == revision, dp.config_status()


RESULTS = {}


def report(name, **figures):
    RESULTS[name] = figures
    print("\n%s: %s" % (name, json.dumps(figures, sort_keys=True)))


# ------------------------------------------------------------------------------------------------------------
# Item 4: bounded bodies, and allocation failures on the sync thread never take the proxy down
# ------------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def dp_behind_fake_control_plane(dataplane, origin, tmp_path, name):
    """A data plane serving revision 7 from a fake control plane (the hostile peer the test then turns it into)."""
    o = origin(ORIGIN_ID)
    signer = Signer(tmp_path)
    fake = FakeControlPlane(signer, "4242", 7, [route(o)])
    try:
        dp = start_dp(dataplane, [fake], signer, name)
        wait_for(lambda: served(dp) == (200, ORIGIN_ID), timeout=10)
        yield dp, fake
    finally:
        fake.stop()


def test_huge_changes_answer_is_refused_with_bounded_memory(dataplane, origin, tmp_path):
    """A 250 MiB /changes answer (under the old 256 MiB bound, so it used to be parsed: 2.4 GB RSS) is refused
    at 32 MiB. Under a strict address-space limit the data plane lives on, keeps serving, and says why."""
    with dp_behind_fake_control_plane(dataplane, origin, tmp_path, "dp-huge") as (dp, fake):
        before = dp.memory_kb()
        limit_address_space(dp, 768 * MIB)
        fake.mode = "huge_changes"
        wait_hostile_answers(dp, fake, 2, "/changes answer refused")
        after = dp.memory_kb()
        fake.mode = "normal"
        assert_still_serving(dp, 7)
        growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024.0
        report("huge_changes", rss_before_mib=round(before["VmRSS"] / 1024.0, 1),
               peak_after_mib=round(after["VmHWM"] / 1024.0, 1), growth_mib=round(growth_mib, 1),
               body_bytes_sent_before_hangup=fake.sent)
        # The body is never buffered past the bound, and no more than one at a time.
        assert growth_mib < MAX_DELTA / MIB + 64, (before, after)
        for sent in fake.sent:
            assert sent < MAX_DELTA + 16 * MIB, fake.sent


def test_endless_changes_and_snapshot_bodies_are_cut_at_their_bounds(dataplane, origin, tmp_path):
    """Bodies that never end: /changes is cut at 32 MiB, /snapshot at 128 MiB (no more: growing the buffer never
    reserves past the bound), and the data plane goes on serving what it had."""
    with dp_behind_fake_control_plane(dataplane, origin, tmp_path, "dp-endless") as (dp, fake):
        before = dp.memory_kb()
        limit_address_space(dp, 768 * MIB)
        fake.mode = "endless_changes"
        wait_hostile_answers(dp, fake, 2, "/changes answer refused")
        assert all(s < MAX_DELTA + 16 * MIB for s in fake.sent), fake.sent
        mid = dp.memory_kb()
        del fake.sent[:]
        fake.mode = "endless_snapshot"
        wait_hostile_answers(dp, fake, 2, "answer larger than %d bytes" % MAX_SNAPSHOT)
        after = dp.memory_kb()
        fake.mode = "normal"
        assert all(s < MAX_SNAPSHOT + 16 * MIB for s in fake.sent), fake.sent
        assert_still_serving(dp, 7)
        report("endless_bodies", rss_before_mib=round(before["VmRSS"] / 1024.0, 1),
               peak_after_changes_mib=round(mid["VmHWM"] / 1024.0, 1),
               peak_after_snapshot_mib=round(after["VmHWM"] / 1024.0, 1))
        assert (mid["VmHWM"] - before["VmRSS"]) / 1024.0 < MAX_DELTA / MIB + 64, (before, mid)
        assert (after["VmHWM"] - before["VmRSS"]) / 1024.0 < MAX_SNAPSHOT / MIB + 64, (before, after)


@pytest.mark.parametrize("headroom_mib,expected", [
    (16, "long poll failed: out of memory receiving the answer"),  # the 30 MiB body does not fit
    (40, "failed: std::bad_alloc; still serving revision 7"),      # it does; taking it apart does not
])
def test_allocation_failure_on_the_sync_thread_is_survived(dataplane, origin, tmp_path, monkeypatch,
                                                           headroom_mib, expected):
    """A delta under the bound while the process may grow by less than twice its size (a container's limit, made
    strict: one malloc arena, so that the heap counts against RLIMIT_AS as it grows): the allocation failure on
    the sync thread is caught, logged and counted; the proxy keeps serving its config."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    with dp_behind_fake_control_plane(dataplane, origin, tmp_path, "dp-oom") as (dp, fake):
        errors_before = dp.metrics().value("portico_sync_errors_total")
        limit_address_space(dp, headroom_mib * MIB)
        fake.mode = "big_delta"
        wait_for(lambda: len(fake.sent) >= 1 and expected in dp.error_log(), timeout=30, interval=0.05,
                 message=lambda: "%r in the log (alive %s)\n%s" % (expected, dp.running(), dp.log_tail(30)))
        fake.mode = "normal"
        assert_still_serving(dp, 7)
        assert dp.metrics().value("portico_sync_errors_total") > errors_before


# ------------------------------------------------------------------------------------------------------------
# Item 10: another etcd cluster's genuine state does not replace ours while ours is served
# ------------------------------------------------------------------------------------------------------------

def test_other_clusters_state_does_not_replace_ours(dataplane, origin, tmp_path):
    """Two control planes with the same key: the first listed serves another etcd cluster at a lower revision
    (say, a staging cluster, or an old one replayed), the second ours. The data plane stays on ours, and its
    cache file is not pruned."""
    o = origin(ORIGIN_ID)
    signer = Signer(tmp_path)
    ours = FakeControlPlane(signer, "4242", 70, [route(o)])
    foreign = FakeControlPlane(signer, "9999", 3, [route(o, host="other.test")])
    try:
        dp = start_dp(dataplane, [ours], signer, "dp-cluster")
        wait_for(lambda: dp.snapshots() and dp.snapshots()[-1][0] == 70, timeout=10, message="revision 70 cached")
        dp.stop()
        dp.control_planes = [foreign.url, ours.url]
        dp.start()
        wait_for(lambda: foreign.counts.get("snapshot", 0) >= 1 and ours.counts.get("changes", 0) >= 3,
                 timeout=20, message=lambda: "both control planes asked (%r %r)" % (foreign.counts, ours.counts))
        st = dp.config_status()
        assert st["sync_revision"] == 70, st
        assert served(dp) == (200, ORIGIN_ID) and served(dp, "other.test")[0] == 404
        assert "serves etcd cluster 9999" in dp.error_log(), dp.log_tail(30)
        assert [r for r, _ in dp.snapshots()] == [70], dp.snapshots()
    finally:
        ours.stop()
        foreign.stop()


# ------------------------------------------------------------------------------------------------------------
# Item 12: a FIFO named like a cache snapshot
# ------------------------------------------------------------------------------------------------------------

def test_fifo_in_cache_dir_neither_blocks_start_nor_stop(dataplane, origin, tmp_path):
    """A FIFO named like the newest snapshot used to block start-up inside open(), SIGTERM ignored. It is skipped
    (and left alone); the valid older file serves; SIGTERM stops the process."""
    o = origin(ORIGIN_ID)
    signer = Signer(tmp_path)
    snapshot, _ = signer.snapshot("4242", 7, [route(o)])
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / ("snapshot-%020d.psnap" % 7)).write_bytes(snapshot)
    fifo = cache / ("snapshot-%020d.psnap" % 9)
    os.mkfifo(str(fifo), 0o600)
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    dead = "http://%s:%d" % (LOOPBACK, s.getsockname()[1])  # bound, never listening: refused at once
    try:
        dp = start_dp(dataplane, [dead], signer, "dp-fifo", cache_dir=str(cache))  # waits for /readyz 200
        assert served(dp) == (200, ORIGIN_ID)
        assert dp.config_status()["sync_source"] == "cache"
        assert "skipped: not a regular file" in dp.error_log()
        t0 = time.monotonic()
        dp.signal(signal.SIGTERM)
        try:
            dp.proc.wait(10)
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM did not stop the data plane within 10 s:\n%s" % dp.log_tail(20))
        assert time.monotonic() - t0 < 10
        assert os.path.exists(str(fifo)) and not os.path.exists(str(fifo) + ".bad")
    finally:
        s.close()
