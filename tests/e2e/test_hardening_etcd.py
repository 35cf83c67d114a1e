"""etcd hardening (issue 9, item 7): a data-plane token cannot fill etcd, and etcd's history is compacted.

- Reports (POST /portico/v1/report) are bounded: a body over 16 KiB is refused with 413 before it is read, a
  field over its bound (or of the wrong type) with 400 naming the field, and a long error text is kept to its
  first 1024 bytes. 100 reports of 1.4 MB used to grow etcd's database by about 150 MB.
- A data plane's record is written to etcd 3 times back to back at most, then once per 5 s, always its newest
  report: a burst of reports costs a bounded number of etcd revisions, and the last one still reaches etcd.
- The control plane compacts etcd behind its mirror's horizon (--etcd-compaction-interval/-retention), also
  past revisions written outside its prefix (fleet records), without ever forcing its own mirror into a full
  read.

Everything runs against a real single-member etcd, a real control plane and the data-plane tokens file; the
reports are sent as a data plane (or a token holder) would, over loopback.
"""

import base64
import json
import re
import secrets
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import LOOPBACK, free_port, wait_for

WRITE_INTERVAL = 5.0  # SyncServiceOptions::fleet_write_interval
WRITE_BURST = 3  # SyncServiceOptions::fleet_write_burst
FLEET_PREFIX = "/apisix-fleet/"


def _b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def etcd_call(e, path, body, timeout=5.0):
    """POST `body` to etcd's JSON gateway; (http status, parsed answer)."""
    req = urllib.request.Request(e.endpoints()[0] + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def db_size(e):
    st, ans = etcd_call(e, "/v3/maintenance/status", {})
    assert st == 200, ans
    return int(ans["dbSize"])


def fleet_record(e, node):
    """The record of `node` in etcd (parsed) and its raw size, or (None, 0)."""
    raw = e.get(FLEET_PREFIX + node)
    return (None, 0) if raw is None else (json.loads(raw), len(raw.encode()))


def _read_response(sock, deadline):
    """(status, body bytes) of one HTTP/1.1 response on `sock`; skips nothing (the caller handles 100)."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head: %r" % data[:200])
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[:length]


def post_report(port, token, body, timeout=10.0):
    """POST /portico/v1/report with Expect: 100-continue, as a client that does not want to upload a body the
    server refuses: a refusal comes before the body is sent; otherwise the body follows the 100. (status,
    body text)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(("POST /portico/v1/report HTTP/1.1\r\nHost: cp\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n"
                   "Connection: close\r\n\r\n" % (token, len(body))).encode())
        status, text = _read_response(s, deadline)
        if status == 100:
            s.sendall(body)
            status, text = _read_response(s, deadline)
    return status, text.decode(errors="replace")


def report(revision=7, sync_errors=0, last_error="", **extra):
    """What a data plane sends (src/sync/sync_client.cc report_body)."""
    body = {"hostname": "dp-host", "version": "0.1.0", "node_id": "x", "revision": revision,
            "content_hash": "ab" * 32, "source": "control_plane", "last_sync": time.time(),
            "last_error": last_error, "sync_errors": sync_errors}
    body.update(extra)
    return body


@pytest.fixture
def cp_with_tokens(etcd, controlplane, tmp_path):
    """A single-member etcd and a control plane with a sync listener and 40 data-plane tokens; extra flags for
    the control plane are taken by the returned function."""

    def start(**flags):
        e = etcd(size=1)
        tokens = {"dp%d" % i: secrets.token_hex(16) for i in range(40)}
        tokens_file = tmp_path / "dp-tokens"
        tokens_file.write_text("".join("%s %s\n" % kv for kv in tokens.items()))
        tokens_file.chmod(0o600)
        sync_port = free_port()
        cp = controlplane(e.endpoints_arg(), sync_listen="%s:%d" % (LOOPBACK, sync_port),
                          dp_tokens_file=str(tokens_file), **flags)
        return e, cp, sync_port, tokens

    return start


def test_oversized_reports_refused_and_etcd_stays_small(cp_with_tokens):
    e, cp, port, tokens = cp_with_tokens()
    token = tokens["dp1"]
    db_before, rev_before = db_size(e), e.revision()

    # 100 reports of 1.4 MB (a 1.4 MB error text): refused before the body is read.
    huge = json.dumps(report(last_error="x" * (1400 * 1024)))
    for i in range(100):
        status, text = post_report(port, token, huge)
        assert status == 413, "report %d of 1.4 MB: %s %s" % (i, status, text[:300])
    # Under the body limit but over a field's bound, or of the wrong type: 400 naming the field.
    for field, value in (("hostname", "h" * 10000), ("version", "v" * 200), ("content_hash", "z" * 64),
                         ("source", "somewhere"), ("revision", -1), ("sync_errors", "many"),
                         ("last_sync", "yesterday"), ("node_id", "n" * 100)):
        for _ in range(10):
            status, text = post_report(port, token, report(**{field: value}))
            assert status == 400 and "report.%s" % field in text, (field, status, text[:300])
    status, text = post_report(port, token, "[1, 2]")
    assert status == 400 and "JSON object" in text, (status, text)
    assert e.revision() == rev_before, "a refused report was written to etcd"

    # A long error text from a real data plane (a refused config lists every error) is kept, cut to its start.
    long_error = "refused revision 9: " + "routes[1].upstream: bad; " * 600
    status, text = post_report(port, token, report(last_error=long_error))
    assert status == 204, (status, text)
    rec, size = wait_for(lambda: (lambda r: r[0] and r)(fleet_record(e, "dp1")), timeout=10,
                         message="the accepted report in etcd")
    assert size < 2048, "a fleet record of %d bytes" % size
    assert rec["last_error"].startswith(long_error[:1000]) and rec["last_error"].endswith(
        "(%d bytes in all)" % len(long_error)), rec["last_error"][-80:]
    assert rec["node_id"] == "dp1" and rec["hostname"] == "dp-host" and rec["revision"] == 7, rec

    # Every field is optional: an older data plane's report, without some of them, is taken.
    for partial in ({"version": "0.0.9"}, {"hostname": "old-dp", "revision": 3}, {}):
        status, text = post_report(port, tokens["dp3"], partial)
        assert status == 204, (partial, status, text)
    wait_for(lambda: fleet_record(e, "dp3")[0], timeout=10, message="dp3's record in etcd")

    db_after = db_size(e)
    assert db_after - db_before < 2 * 1024 * 1024, "etcd's database grew from %d to %d bytes" % (db_before, db_after)
    writes = e.revision() - rev_before
    assert 2 <= writes <= 1 + 3, "two data planes' accepted reports made %d etcd writes" % writes


def test_report_burst_costs_a_bounded_number_of_etcd_writes(cp_with_tokens):
    e, cp, port, tokens = cp_with_tokens()
    token = tokens["dp2"]
    rev_before = e.revision()

    def in_etcd():
        return (fleet_record(e, "dp2")[0] or {}).get("sync_errors")

    # A data plane's start: WRITE_BURST reports in a row are written at once, each one.
    t0 = time.monotonic()
    for i in range(WRITE_BURST):
        assert post_report(port, token, report(revision=100 + i, sync_errors=i))[0] == 204
        wait_for(lambda: in_etcd() == i, timeout=5, message=lambda: "report %d in etcd: %r" % (i, in_etcd()))
    # Then a burst, each report a meaningful change (another error count), while the writer waits.
    n = 60
    for i in range(WRITE_BURST, n):
        status, text = post_report(port, token, report(revision=100 + i, sync_errors=i))
        assert status == 204, (i, status, text)
    burst = time.monotonic() - t0
    writes = e.revision() - rev_before
    # WRITE_BURST writes at once, then at most one per interval (the newest report each time).
    bound = WRITE_BURST + int(burst // WRITE_INTERVAL)
    assert WRITE_BURST <= writes <= bound, "%d reports in %.1fs made %d etcd writes (bound %d)" % (
        n, burst, writes, bound)

    # The replica that received the burst lists the newest report at once...
    fleet = cp.admin("GET", "/data_planes")
    assert fleet.status == 200, fleet
    entry = [it for it in fleet.body["list"] if it["node_id"] == "dp2"]
    assert entry and entry[0]["sync_errors"] == n - 1, fleet.body
    # ... and it reaches etcd when the rate limit allows the next write, an interval after the first: nothing
    # reported is lost, nor held back longer.
    wait_for(lambda: in_etcd() == n - 1, timeout=max(0.5, t0 + WRITE_INTERVAL + 2.5 - time.monotonic()),
             interval=0.1, message=lambda: "the newest report in etcd within %.1fs of the first: %r" % (
                 WRITE_INTERVAL + 2.5, fleet_record(e, "dp2")))
    total = e.revision() - rev_before
    bound = WRITE_BURST + int((time.monotonic() - t0) // WRITE_INTERVAL)
    assert total <= bound, "%d etcd writes for %d reports (bound %d)" % (total, n, bound)


def compacted_at(e, revision):
    """True when a range at `revision` answers etcd's "compacted" error, False when it is served."""
    st, ans = etcd_call(e, "/v3/kv/range", {"key": _b64("/"), "range_end": _b64("0"), "limit": 1,
                                            "revision": str(revision)})
    if st == 200:
        return False
    assert "compacted" in json.dumps(ans), (st, ans)
    return True


def full_reads(cp):
    return re.findall(r"full read \(([^)]*)\)", cp.error_log())


def test_control_plane_compacts_behind_its_mirror(cp_with_tokens):
    e, cp, port, tokens = cp_with_tokens(etcd_compaction_interval=0.5, etcd_compaction_retention=20)
    upstream = {"type": "roundrobin", "nodes": {"127.0.0.1:1": 1}}
    last = 0
    for i in range(60):
        r = cp.admin("PUT", "/routes/c%d" % i, {"uri": "/c%d" % i, "upstream": upstream})
        assert r.status in (200, 201), r
        last = r.body["modifiedIndex"]
    # Compacted behind the mirror: min(horizon one interval ago, horizon - 20).
    got = wait_for(lambda: (lambda c: c >= last - 20 and c)(cp.config_status().get("etcd_compacted_revision", 0)),
                   timeout=15, interval=0.1,
                   message=lambda: "the compaction to reach %d: %r" % (last - 20, cp.config_status()))
    assert got <= last - 20, "compacted at %d, less than 20 revisions behind %d" % (got, last)
    assert compacted_at(e, got - 1) and not compacted_at(e, got), got

    # Only fleet records are written now (outside the mirror's prefix): the horizon moves past them, so does the
    # compaction.
    for node in list(tokens)[:30]:
        assert post_report(port, tokens[node], report())[0] == 204
    wait_for(lambda: e.revision() >= last + 30, timeout=10, message="30 fleet records in etcd")
    got = wait_for(lambda: (lambda c: c > last and c)(cp.config_status()["etcd_compacted_revision"]), timeout=15,
                   interval=0.1, message=lambda: "the compaction to pass %d: %r" % (last, cp.config_status()))
    assert compacted_at(e, got - 1)

    # The control plane never read everything again because of its own compaction, and keeps serving writes.
    r = cp.admin("PUT", "/routes/after", {"uri": "/after", "upstream": upstream})
    assert r.status in (200, 201), r
    wait_for(lambda: cp.config_status()["revision"] >= r.body["modifiedIndex"], timeout=5,
             message="the copy to apply the write made after compaction")
    assert cp.admin("GET", "/routes/c0").status == 200
    assert full_reads(cp) == ["start"], full_reads(cp)
