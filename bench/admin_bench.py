#!/usr/bin/python3
"""Control-plane benchmark: the Admin API over a 3-member etcd cluster, on loopback (`bench/admin-bench.sh`).

Everything runs in a temporary directory and is killed at the end: 3 etcd members (the e2e suite's raft timings:
heartbeat 100 ms, election timeout 1000 ms), a small HTTP origin (this file with --origin), a `--role
control_plane` process (prefix /benchcp) and later a `--role traditional` process (prefix /apisix).

 1. writes  : N sequential PUTs of distinct routes through the control plane on one keep-alive connection
              (p50/p90/p99/max), then T client threads (one keep-alive connection each) writing distinct
              routes for a fixed time (writes/s). Baseline: the same etcd cluster's own put and linearizable
              range through its JSON gateway (no Admin API), and the members' WAL fsync time.
 2. reads   : with R routes in etcd (loaded directly, batches of 128 puts per txn: etcd's default
              --max-txn-ops), GET of one route, GET of the full list, GET ?page=1&page_size=100; then sequential
              PUTs with the R routes present (the write path's cost as the table grows).
 3. propagation (traditional role): the time from a PUT's 2xx answer (on the traditional process's own Admin
              API) to the proxy answering 200 from the origin on the new route's path, polled on loopback
              every --poll-ms on a keep-alive connection; C changes with 10 routes loaded, then C changes with
              R routes loaded. Also the process's CPU time (utime+stime from /proc/PID/stat) per change and the
              applier's own timing from its log ("config applied ... in X ms (load+validate Y, build Z)").

Python 3 standard library only. Results: a summary table on stdout and RESULTS.json in --out.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------------
# Small helpers: free_port is the e2e suite's (it keeps ports below the ephemeral range)
# ---------------------------------------------------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import free_port  # noqa: E402


def wait_for(predicate, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling
            last = e
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0f s waiting for %s (last error %r)" % (timeout, what, last))
        time.sleep(interval)


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def dist_ms(values):
    """{n, p50, p90, p99, max, mean} in ms of a list of seconds."""
    if not values:
        return {"n": 0}
    ms = [v * 1000.0 for v in values]
    return {"n": len(ms), "p50": pct(ms, 50), "p90": pct(ms, 90), "p99": pct(ms, 99), "max": max(ms),
            "mean": statistics.fmean(ms)}


def cpu_seconds(pid):
    """utime+stime of a process, in seconds (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


MACHINE_FIELDS = ("busy", "iowait", "steal", "irq", "total")


def machine_cpu():
    """Jiffies of the whole machine from the `cpu` line of /proc/stat: busy (user, nice, system, irq, softirq),
    iowait, steal, irq (irq + softirq alone), total."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq, iowait, steal, irq + softirq, sum(v))


def machine_share(m0, m1):
    """Each field of machine_cpu() but total, as cores (of os.cpu_count()) between two machine_cpu() samples."""
    total = (m1[4] - m0[4]) or 1
    n = os.cpu_count()
    return {k: (m1[i] - m0[i]) * n / total for i, k in enumerate(MACHINE_FIELDS[:4])}


def self_cpu():
    t = os.times()
    return t.user + t.system


def ours_cpu():
    """CPU seconds of this process and every live process it started."""
    total = self_cpu()
    for p in PROCS:
        if p.poll() is None:
            try:
                total += cpu_seconds(p.pid)
            except OSError:
                pass
    return total


OTHER = {}


def metered(name, fn, *args, **kw):
    """Runs fn and notes in OTHER[name] the cores that processes not of this benchmark used meanwhile
    (machine busy time minus interrupts minus this benchmark's processes): the noise indicator of that phase."""
    m0, o0, t0 = machine_cpu(), ours_cpu(), time.monotonic()
    res = fn(*args, **kw)
    share = machine_share(m0, machine_cpu())
    OTHER[name] = round(share["busy"] - share["irq"] - (ours_cpu() - o0) / (time.monotonic() - t0), 3)
    return res


def log(msg):
    sys.stderr.write("[admin-bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------

PROCS = []


def spawn(argv, logfile, cwd):
    out = open(logfile, "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(cwd))
    out.close()
    PROCS.append(p)
    return p


def kill_all():
    for p in reversed(PROCS):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Etcd:
    """A 3-member cluster (argv as tests/e2e/etcd_cluster.py)."""

    def __init__(self, workdir, size=3):
        self.workdir = Path(workdir)
        self.token = "portico-bench-%d-%d" % (os.getpid(), random.randint(0, 1 << 30))
        self.members = [{"name": "m%d" % i, "client": free_port(), "peer": free_port()} for i in range(size)]
        self.procs = []

    def endpoints(self):
        return ["http://%s:%d" % (LOOPBACK, m["client"]) for m in self.members]

    def start(self):
        initial = ",".join("%s=http://%s:%d" % (m["name"], LOOPBACK, m["peer"]) for m in self.members)
        for m in self.members:
            client = "http://%s:%d" % (LOOPBACK, m["client"])
            peer = "http://%s:%d" % (LOOPBACK, m["peer"])
            argv = [os.environ.get("ETCD_BIN", "etcd"), "--name", m["name"],
                    "--data-dir", str(self.workdir / (m["name"] + ".data")),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", self.token,
                    "--heartbeat-interval", "100", "--election-timeout", "1000",
                    "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
                    "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
            self.procs.append(spawn(argv, self.workdir / (m["name"] + ".log"), self.workdir))
        for ep, p in zip(self.endpoints(), self.procs):
            def healthy(ep=ep, p=p):
                if p.poll() is not None:
                    raise SystemExit("etcd member exited (%s); see %s" % (p.returncode, self.workdir))
                with urllib.request.urlopen(ep + "/health", timeout=1) as r:
                    return json.loads(r.read()).get("health") in ("true", True)
            wait_for(healthy, 30, "etcd member %s healthy" % ep, interval=0.05)
        return self

    def gateway(self, ep, path, body, timeout=10):
        req = urllib.request.Request(ep + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")

    def leader_endpoint(self):
        ids = {}
        leader = None
        for ep in self.endpoints():
            st = self.gateway(ep, "/v3/maintenance/status", {})
            ids[st["header"]["member_id"]] = ep
            leader = st.get("leader")
        return ids[leader]

    def load(self, items):
        """Puts (key, value) pairs in transactions of 128 puts (etcd's default --max-txn-ops); returns the time."""
        ep = self.leader_endpoint()
        t0 = time.monotonic()
        for i in range(0, len(items), 128):
            ops = [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in items[i:i + 128]]
            ans = self.gateway(ep, "/v3/kv/txn", {"success": ops}, timeout=30)
            if not ans.get("succeeded", False):
                raise RuntimeError("etcd txn failed: %r" % (ans,))
        return time.monotonic() - t0

    def delete_prefix(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self.gateway(self.leader_endpoint(), "/v3/kv/deleterange", {"key": b64(prefix), "range_end": b64(end)})

    def cpu(self):
        """utime+stime of all members, in seconds."""
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def wal_fsync(self):
        """(sum seconds, count) of etcd_disk_wal_fsync_duration_seconds per member, from /metrics."""
        out = []
        for ep in self.endpoints():
            with urllib.request.urlopen(ep + "/metrics", timeout=5) as r:
                text = r.read().decode()
            s = re.search(r"^etcd_disk_wal_fsync_duration_seconds_sum (\S+)$", text, re.M)
            c = re.search(r"^etcd_disk_wal_fsync_duration_seconds_count (\S+)$", text, re.M)
            out.append((float(s.group(1)), int(float(c.group(1)))))
        return out


class Portico:
    def __init__(self, binary, workdir, role, endpoints, prefix, workers=2):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.admin_port = free_port()
        self.status_port = free_port()
        self.port = free_port() if role == "traditional" else None
        self.error_log = self.workdir / "error.log"
        argv = [str(binary), "--role", role, "--etcd-endpoints", ",".join(endpoints), "--etcd-prefix", prefix,
                "--admin-listen", "%s:%d" % (LOOPBACK, self.admin_port),
                "--status-listen", "%s:%d" % (LOOPBACK, self.status_port),
                "--state-dir", str(self.workdir / "state"), "--error-log", str(self.error_log),
                "--log-level", "info", "--drain-delay", "0", "--drain-timeout", "2"]
        if role == "traditional":
            argv += ["--listen", "%s:%d" % (LOOPBACK, self.port), "--workers", str(workers), "--access-log", "off"]
        self.argv = argv
        self.proc = spawn(argv, self.workdir / "stdout.log", self.workdir)

    @property
    def pid(self):
        return self.proc.pid

    def status(self, path):
        c = http.client.HTTPConnection(LOOPBACK, self.status_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def config(self):
        return json.loads(self.status("/status/config")[1])

    def wait_ready(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise SystemExit("portico (%s) exited with %s:\n%s" % (self.role, self.proc.returncode,
                                                                       self.log_text()[-3000:]))
            return self.status("/readyz")[0] == 200
        wait_for(ready, timeout, "portico (%s) /readyz" % self.role)
        return self

    def key(self):
        return (self.workdir / "state" / "admin.key").read_text().strip()

    def log_text(self):
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Client:
    """One keep-alive HTTP/1.1 connection (http.client), reopened if the server closes it."""

    def __init__(self, port, headers=None, timeout=30):
        self.port = port
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.conn = None
        self.reconnects = -1

    def request(self, method, path, body=None):
        hdrs = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            hdrs["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.reconnects += 1
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, raw
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def admin_client(p):
    return Client(p.admin_port, {"X-API-KEY": p.key()})


# ---------------------------------------------------------------------------------------------------------------
# The origin (run as a subprocess: admin_bench.py --origin PORT)
# ---------------------------------------------------------------------------------------------------------------

def run_origin(port):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self):
            # One write for head and body: two small writes would meet Nagle and the proxy's delayed ACK (40 ms).
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((LOOPBACK, port), H)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv.serve_forever()


# ---------------------------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------------------------

def route_value(rid, uri, now):
    """A route as the Admin API stores it (id, create_time, update_time added by the API)."""
    return json.dumps({"create_time": now, "id": rid, "update_time": now, "upstream_id": "u1", "uri": uri},
                      separators=(",", ":"), sort_keys=True)


def etcd_baseline(etcd, n, threads, seconds):
    """Sequential put / linearizable range / serializable range of one key via the leader's JSON gateway."""
    ep = etcd.leader_endpoint()
    port = ep.rsplit(":", 1)[1]
    c = Client(int(port))
    out = {}
    for name, path, mk in (
            ("put", "/v3/kv/put", lambda i: {"key": b64("/etcdbench/k%d" % i), "value": b64("x" * 100)}),
            ("range_linearizable", "/v3/kv/range", lambda i: {"key": b64("/etcdbench/k%d" % i)}),
            ("range_serializable", "/v3/kv/range", lambda i: {"key": b64("/etcdbench/k%d" % i),
                                                               "serializable": True})):
        lat = []
        e0 = etcd.cpu()
        for i in range(n):
            t0 = time.perf_counter()
            st, raw = c.request("POST", path, json.dumps(mk(i)).encode())
            lat.append(time.perf_counter() - t0)
            assert st == 200, (name, st, raw[:200])
        out[name] = dict(dist_ms(lat), etcd_cpu_ms_per_op=(etcd.cpu() - e0) * 1000 / n)
    c.close()

    # The same put from `threads` clients at once, for `seconds` (what etcd alone sustains on this machine).
    stop_at = time.perf_counter() + seconds
    counts = [0] * threads
    lats = [[] for _ in range(threads)]

    def worker(t):
        cl = Client(int(port))
        while time.perf_counter() < stop_at:
            body = json.dumps({"key": b64("/etcdbench/c%d_%d" % (t, counts[t])), "value": b64("x" * 100)}).encode()
            t0 = time.perf_counter()
            try:
                st, raw = cl.request("POST", "/v3/kv/put", body)
            except OSError:
                st = None
                cl.close()
            lats[t].append(time.perf_counter() - t0)
            if st == 200:
                counts[t] += 1
        cl.close()

    e0, t0, m0 = etcd.cpu(), time.perf_counter(), machine_cpu()
    ths = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(seconds + 30)
    wall = time.perf_counter() - t0
    out["put_concurrent"] = dict(dist_ms([x for l in lats for x in l]), threads=threads,
                                 puts_per_s=sum(counts) / wall, etcd_cpu_cores=(etcd.cpu() - e0) / wall,
                                 machine=machine_share(m0, machine_cpu()))
    etcd.delete_prefix("/etcdbench/")
    return out


def phase_writes(cp, etcd, seq, threads, seconds, max_per_thread):
    res = {}
    c = admin_client(cp)
    for i in range(20):  # warm-up (connection, etcd client, allocator)
        st, raw = c.request("PUT", "/apisix/admin/routes/warm%d" % i, {"uri": "/warm/%d" % i, "upstream_id": "u1"})
        assert st in (200, 201), (st, raw[:300])
    fs0 = etcd.wal_fsync()
    cpu0, ecpu0, scpu0 = cpu_seconds(cp.pid), etcd.cpu(), self_cpu()
    lat = []
    statuses = {}
    t_start = time.perf_counter()
    for i in range(seq):
        body = {"uri": "/seq/%d" % i, "upstream_id": "u1"}
        t0 = time.perf_counter()
        st, raw = c.request("PUT", "/apisix/admin/routes/seq%d" % i, body)
        lat.append(time.perf_counter() - t0)
        statuses[st] = statuses.get(st, 0) + 1
    wall = time.perf_counter() - t_start
    cpu1, ecpu1, scpu1 = cpu_seconds(cp.pid), etcd.cpu(), self_cpu()
    fs1 = etcd.wal_fsync()
    res["sequential"] = dict(dist_ms(lat), statuses={str(k): v for k, v in statuses.items()}, writes_per_s=seq / wall,
                             cp_cpu_ms_per_write=(cpu1 - cpu0) * 1000 / seq,
                             etcd_cpu_ms_per_write=(ecpu1 - ecpu0) * 1000 / seq,
                             client_cpu_ms_per_write=(scpu1 - scpu0) * 1000 / seq)
    d_sum = sum(b[0] - a[0] for a, b in zip(fs0, fs1))
    d_cnt = sum(b[1] - a[1] for a, b in zip(fs0, fs1))
    res["sequential"]["wal_fsync_ms_mean"] = d_sum * 1000 / d_cnt if d_cnt else None
    res["sequential"]["wal_fsyncs_per_write_per_member"] = d_cnt / seq / len(fs0)
    c.close()

    # Concurrency: `threads` clients, each its own keep-alive connection, distinct ids, fixed duration.
    lats = [[] for _ in range(threads)]
    stat = [dict() for _ in range(threads)]
    stop_at = [0.0]
    go = threading.Barrier(threads + 1)

    def worker(t):
        cl = admin_client(cp)
        cl.request("GET", "/apisix/admin/upstreams/u1")  # connect before the clock starts
        go.wait()
        n = 0
        while time.perf_counter() < stop_at[0] and n < max_per_thread:
            t0 = time.perf_counter()
            try:
                st, raw = cl.request("PUT", "/apisix/admin/routes/c%d_%d" % (t, n),
                                     {"uri": "/c/%d/%d" % (t, n), "upstream_id": "u1"})
            except OSError:
                st = "conn-error"
                cl.close()
            lats[t].append(time.perf_counter() - t0)
            stat[t][st] = stat[t].get(st, 0) + 1
            n += 1
        cl.close()

    ths = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in ths:
        t.start()
    cpu0, ecpu0, scpu0, m0 = cpu_seconds(cp.pid), etcd.cpu(), self_cpu(), machine_cpu()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    go.wait()
    for t in ths:
        t.join(seconds + 60)
    wall = time.perf_counter() - t0
    cpu1, ecpu1, scpu1, m1 = cpu_seconds(cp.pid), etcd.cpu(), self_cpu(), machine_cpu()
    all_lat = [x for l in lats for x in l]
    statuses = {}
    for s in stat:
        for k, v in s.items():
            statuses[k] = statuses.get(k, 0) + v
    ok = sum(v for k, v in statuses.items() if isinstance(k, int) and 200 <= k < 300)
    res["concurrent"] = dict(dist_ms(all_lat), threads=threads, seconds=wall,
                             statuses={str(k): v for k, v in statuses.items()},
                             writes_per_s=ok / wall, cp_cpu_ms_per_write=(cpu1 - cpu0) * 1000 / max(1, ok),
                             cp_cpu_cores=(cpu1 - cpu0) / wall, etcd_cpu_cores=(ecpu1 - ecpu0) / wall,
                             client_cpu_cores=(scpu1 - scpu0) / wall, machine=machine_share(m0, m1))
    return res


def phase_reads(cp, etcd, n_routes, reps_get, reps_list, reps_page):
    res = {}
    # What etcd alone takes to answer the range the list makes (the whole prefix, through the JSON gateway).
    ep = etcd.leader_endpoint()
    g = Client(int(ep.rsplit(":", 1)[1]))
    body = json.dumps({"key": b64("/benchcp/routes/"), "range_end": b64("/benchcp/routes0")}).encode()
    for name, reps, extra in (("etcd_range_prefix", reps_list, {}), ("etcd_range_prefix_limit100", reps_page,
                                                                     {"limit": 100})):
        b = dict(json.loads(body), **extra)
        lat = []
        e0 = etcd.cpu()
        for _ in range(reps):
            t0 = time.perf_counter()
            st, raw = g.request("POST", "/v3/kv/range", json.dumps(b).encode())
            lat.append(time.perf_counter() - t0)
            assert st == 200, (st, raw[:200])
        res[name] = dict(dist_ms(lat), bytes=len(raw), etcd_cpu_ms_per_request=(etcd.cpu() - e0) * 1000 / reps)
    g.close()
    c = admin_client(cp)
    for name, path, reps in (("get_one", "/apisix/admin/routes/b%d" % (n_routes // 2), reps_get),
                             ("list_page_100", "/apisix/admin/routes?page=1&page_size=100", reps_page),
                             ("list_all", "/apisix/admin/routes", reps_list)):
        st, raw = c.request("GET", path)  # warm-up
        assert st == 200, (path, st, raw[:300])
        if name != "get_one":
            total = json.loads(raw)["total"]
            assert total == n_routes, "list total %s, expected %s" % (total, n_routes)
        cpu0, e0 = cpu_seconds(cp.pid), etcd.cpu()
        lat = []
        for _ in range(reps):
            t0 = time.perf_counter()
            st, raw = c.request("GET", path)
            lat.append(time.perf_counter() - t0)
            assert st == 200, (path, st)
        cpu1, e1 = cpu_seconds(cp.pid), etcd.cpu()
        res[name] = dict(dist_ms(lat), bytes=len(raw), cp_cpu_ms_per_request=(cpu1 - cpu0) * 1000 / reps,
                         etcd_cpu_ms_per_request=(e1 - e0) * 1000 / reps)
    # Writes with the large table present (after the lists, which must see exactly n_routes).
    cpu0, e0 = cpu_seconds(cp.pid), etcd.cpu()
    lat = []
    for i in range(reps_page):
        t0 = time.perf_counter()
        st, raw = c.request("PUT", "/apisix/admin/routes/x%d" % i, {"uri": "/x/%d" % i, "upstream_id": "u1"})
        lat.append(time.perf_counter() - t0)
        assert st == 201, (st, raw[:300])
    cpu1, e1 = cpu_seconds(cp.pid), etcd.cpu()
    res["put_sequential"] = dict(dist_ms(lat), cp_cpu_ms_per_request=(cpu1 - cpu0) * 1000 / reps_page,
                                 etcd_cpu_ms_per_request=(e1 - e0) * 1000 / reps_page)
    c.close()
    return res


APPLIED = re.compile(r"config applied generation=(\d+) routes=(\d+) .*? in ([\d.]+) ms "
                     r"\(load\+validate ([\d.]+) ms, build ([\d.]+) ms\)")


def applied_lines(text):
    return [(int(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5)))
            for m in APPLIED.finditer(text)]


def phase_propagation(tr, admin, proxy, changes, tag, poll_s, warmup=5, timeout=15.0):
    """`changes` PUTs of new routes /prop<tag>/<i>; per change: PUT latency, then time to the proxy's first 200."""
    put_lat, prop, polls, failures = [], [], [], 0
    mark = len(tr.log_text())
    cpu0 = None
    for i in range(-warmup, changes):
        if i == 0:
            mark = len(tr.log_text())
            cpu0 = cpu_seconds(tr.pid)
            t_loop = time.perf_counter()
        rid = "p%s_%d" % (tag, i + warmup)
        path = "/prop%s/%d" % (tag, i + warmup)
        t0 = time.perf_counter()
        st, raw = admin.request("PUT", "/apisix/admin/routes/" + rid, {"uri": path, "upstream_id": "u1"})
        t1 = time.perf_counter()
        if st not in (200, 201):
            raise RuntimeError("PUT %s -> %s %r" % (rid, st, raw[:300]))
        n = 0
        while True:
            pst, body = proxy.request("GET", path)
            n += 1
            if pst == 200 and body == b"ok\n":  # the origin's answer
                t2 = time.perf_counter()
                break
            if time.perf_counter() - t1 > timeout:
                t2 = None
                break
            time.sleep(poll_s)
        if i < 0:
            continue
        put_lat.append(t1 - t0)
        polls.append(n)
        if t2 is None:
            failures += 1
        else:
            prop.append(t2 - t1)
    wall = time.perf_counter() - t_loop
    cpu1 = cpu_seconds(tr.pid)
    applied = applied_lines(tr.log_text()[mark:])
    res = {"put": dist_ms(put_lat), "propagation": dist_ms(prop), "failures": failures,
           "polls_per_change_mean": statistics.fmean(polls), "changes": changes, "wall_s": wall,
           "cpu_ms_per_change": (cpu1 - cpu0) * 1000 / changes,
           "cpu_cores_during_loop": (cpu1 - cpu0) / wall,
           "applies": len(applied),
           # Sync-state publishes (hybrid sync's publisher, which also runs in this role), when the binary has them.
           "sync_publishes": len(re.findall(r"published config revision", tr.log_text()[mark:]))}
    if applied:
        res["routes_at_end"] = applied[-1][0]
        res["apply_ms"] = {k: {"p50": pct([a[j] for a in applied], 50), "p99": pct([a[j] for a in applied], 99)}
                           for j, k in ((1, "total"), (2, "assemble_validate"), (3, "build"))}
    return res


def idle_cpu(pid, seconds):
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) * 1000 / seconds  # ms of CPU per s


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------

def f(v, d=1):
    return "-" if v is None else ("%.*f" % (d, v))


def machine_text(m):
    return "%.2f busy, %.2f iowait, %.2f steal (cores)" % (m["busy"], m["iowait"], m["steal"])


def summary(r):
    lines = []
    w = r["writes"]
    s, c = w["sequential"], w["concurrent"]
    e = r["etcd_baseline"]
    lines.append("| measure | n | p50 ms | p90 ms | p99 ms | max ms | other |")
    lines.append("|---|---|---|---|---|---|---|")

    def row(name, d, other=""):
        lines.append("| %s | %d | %s | %s | %s | %s | %s |" % (name, d["n"], f(d.get("p50"), 2), f(d.get("p90"), 2),
                                                           f(d.get("p99"), 2), f(d.get("max"), 2), other))
    for k, label in (("put", "etcd alone: put (JSON gateway, leader)"),
                     ("range_linearizable", "etcd alone: get one key, linearizable"),
                     ("range_serializable", "etcd alone: get one key, serializable")):
        row(label, e[k], "etcd CPU %.2f ms/op" % e[k]["etcd_cpu_ms_per_op"])
    pc = e["put_concurrent"]
    row("etcd alone: put, %d threads" % pc["threads"], pc, "**%.0f puts/s**; etcd (3) %.2f cores busy; machine %s"
        % (pc["puts_per_s"], pc["etcd_cpu_cores"], machine_text(pc["machine"])))
    row("Admin PUT, sequential (control_plane)", s,
        "%.0f writes/s; CPU ms/write: CP %.2f, etcd (3) %.2f, client %.2f; WAL fsync mean %s ms (%.1f/write/member); "
        "statuses %s" % (s["writes_per_s"], s["cp_cpu_ms_per_write"], s["etcd_cpu_ms_per_write"],
                         s["client_cpu_ms_per_write"], f(s["wal_fsync_ms_mean"], 2),
                         s["wal_fsyncs_per_write_per_member"], s["statuses"]))
    row("Admin PUT, %d threads" % c["threads"], c,
        "**%.0f writes/s**; CP CPU %.2f ms/write; cores busy: CP %.2f, etcd (3) %.2f, client %.2f; machine %s; "
        "statuses %s" % (c["writes_per_s"], c["cp_cpu_ms_per_write"], c["cp_cpu_cores"], c["etcd_cpu_cores"],
                         c["client_cpu_cores"], machine_text(c["machine"]), c["statuses"]))
    rd = r["reads"]
    n = r["params"]["routes"]
    for k, label in (("get_one", "Admin GET one route (%d routes)" % n),
                     ("list_page_100", "Admin GET list ?page=1&page_size=100 (%d routes)" % n),
                     ("list_all", "Admin GET list, all %d routes" % n),
                     ("put_sequential", "Admin PUT, sequential, %d routes present" % n)):
        d = rd[k]
        size = "%d B; " % d["bytes"] if "bytes" in d else ""
        row(label, d, "%sCPU ms/req: CP %.2f, etcd (3) %.2f" % (size, d["cp_cpu_ms_per_request"],
                                                               d["etcd_cpu_ms_per_request"]))
    for k, label in (("etcd_range_prefix", "etcd alone: range of the %d route keys" % n),
                     ("etcd_range_prefix_limit100", "etcd alone: same range, limit 100")):
        d = rd[k]
        row(label, d, "%d B; etcd CPU %.2f ms/req" % (d["bytes"], d["etcd_cpu_ms_per_request"]))
    for key in ("prop_small", "prop_large"):
        p = r[key]
        label = "%d" % r["params"]["small"] if key == "prop_small" else "%d" % n
        am = p.get("apply_ms", {})
        other = ("CPU %.1f ms/change; applier %s ms (assemble+validate %s, build %s) p50; %d applies, %d sync "
                 "publishes; %.1f polls/change"
                 % (p["cpu_ms_per_change"], f(am.get("total", {}).get("p50")),
                    f(am.get("assemble_validate", {}).get("p50")), f(am.get("build", {}).get("p50")),
                    p["applies"], p["sync_publishes"], p["polls_per_change_mean"]))
        if p["failures"]:
            other += "; %d changes NOT served within the timeout" % p["failures"]
        row("traditional, %s routes: PUT (own Admin API)" % label, p["put"])
        row("traditional, %s routes: PUT answer -> proxy 200" % label, p["propagation"], other)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--origin", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--portico", default=os.environ.get("PORTICO_BIN", str(ROOT / "build" / "portico")))
    ap.add_argument("--out", default=str(ROOT / "build" / "bench-results" / "admin"))
    ap.add_argument("--seq", type=int, default=300, help="sequential PUTs")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of the concurrent writes")
    ap.add_argument("--routes", type=int, default=10000, help="routes loaded for the read and propagation runs")
    ap.add_argument("--small", type=int, default=10, help="routes loaded for the small propagation run")
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--poll-ms", type=float, default=1.0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if a.origin:
        run_origin(a.origin)
        return 0

    # SIGTERM/SIGHUP unwind through the `finally` below, so that nothing started here outlives the run.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signo, _: sys.exit(128 + signo))
    binary = Path(a.portico)
    if not binary.exists():
        sys.exit("portico binary not found at %s (build it: make build)" % binary)
    if not shutil.which(os.environ.get("ETCD_BIN", "etcd")):
        sys.exit("etcd not found (apt-get install etcd-server)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="portico-admin-bench-"))
    r = {"params": vars(a).copy(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "nproc": os.cpu_count()}
    r["params"].pop("origin")
    # This machine is shared: note what else runs before and during the run.
    m0 = machine_cpu()
    time.sleep(1.0)
    r["busy_before"] = machine_share(m0, machine_cpu())["busy"]
    if r["busy_before"] > 0.2:
        log("warning: the machine was %.2f cores busy in the second before the run; figures will be noisy"
            % r["busy_before"])
    t_begin = time.monotonic()
    m_begin = machine_cpu()
    # A private copy of the binary, so a rebuild of build/ during the run cannot swap it halfway.
    r["binary"] = {"path": str(binary), "sha256": hashlib.sha256(binary.read_bytes()).hexdigest()[:16],
                   "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(binary.stat().st_mtime))}
    try:
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        r["binary"]["tree"] = git.stdout.strip()
    except OSError:
        pass
    shutil.copy2(binary, tmp / "portico")
    binary = tmp / "portico"
    try:
        ver = subprocess.run([os.environ.get("ETCD_BIN", "etcd"), "--version"], stdout=subprocess.PIPE, text=True)
        r["etcd_version"] = ver.stdout.split("\n")[0]
        log("etcd: 3 members in %s" % tmp)
        (tmp / "etcd").mkdir()
        etcd = Etcd(tmp / "etcd").start()
        eps = etcd.endpoints()

        origin_port = free_port()
        spawn([sys.executable, str(Path(__file__).resolve()), "--origin", str(origin_port)], tmp / "origin.log", tmp)
        wait_for(lambda: Client(origin_port).request("GET", "/")[0] == 200, 10, "the origin")

        log("etcd alone (JSON gateway)")
        r["etcd_baseline"] = metered("etcd_baseline", etcd_baseline, etcd, 200, a.threads, 3.0)

        # 1. Writes through a control_plane process.
        cp = Portico(binary, tmp / "cp", "control_plane", eps, "/benchcp").wait_ready()
        c = admin_client(cp)
        st, raw = c.request("PUT", "/apisix/admin/upstreams/u1", {"nodes": {"%s:%d" % (LOOPBACK, origin_port): 1}})
        assert st in (200, 201), (st, raw)
        c.close()
        log("writes: %d sequential, then %d threads for %.0f s" % (a.seq, a.threads, a.seconds))
        r["writes"] = metered("writes", phase_writes, cp, etcd, a.seq, a.threads, a.seconds, max_per_thread=5000)

        # 2. Reads with `routes` routes present (the write phase's routes removed first).
        etcd.delete_prefix("/benchcp/routes/")
        now = int(time.time())
        items = [("/benchcp/routes/b%d" % i, route_value("b%d" % i, "/b/%d" % i, now)) for i in range(a.routes)]
        r["load_cp_s"] = etcd.load(items)
        wait_for(lambda: cp.config()["resources"]["routes"] == a.routes, 60, "the control plane's copy to hold "
                 "%d routes" % a.routes, interval=0.05)
        log("reads with %d routes (loaded in %.2f s)" % (a.routes, r["load_cp_s"]))
        r["reads"] = metered("reads", phase_reads, cp, etcd, a.routes, 200, 20, 200)
        cp.proc.terminate()
        cp.proc.wait(15)

        # 3. Propagation through a traditional process (prefix /apisix).
        tr = Portico(binary, tmp / "tr", "traditional", eps, "/apisix")
        wait_for(lambda: (tr.admin_port and (tr.proc.poll() is None) and
                          Client(tr.status_port).request("GET", "/healthz")[0] == 200), 30, "traditional /healthz")
        admin = admin_client(tr)
        wait_for(lambda: admin.request("GET", "/apisix/admin/routes")[0] == 200, 30, "traditional Admin API")
        st, raw = admin.request("PUT", "/apisix/admin/upstreams/u1",
                                {"nodes": {"%s:%d" % (LOOPBACK, origin_port): 1}})
        assert st in (200, 201), (st, raw)
        for i in range(a.small):
            st, raw = admin.request("PUT", "/apisix/admin/routes/s%d" % i, {"uri": "/s/%d" % i, "upstream_id": "u1"})
            assert st in (200, 201), (st, raw)
        tr.wait_ready()
        proxy = Client(tr.port, timeout=10)
        wait_for(lambda: proxy.request("GET", "/s/%d" % (a.small - 1))[0] == 200, 30, "the proxy to serve /s/N")
        r["tr_idle_cpu_ms_per_s"] = idle_cpu(tr.pid, 2.0)
        log("propagation: %d changes with %d routes" % (a.changes, a.small))
        poll_s = a.poll_ms / 1000.0
        r["prop_small"] = metered("prop_small", phase_propagation, tr, admin, proxy, a.changes, "s", poll_s)

        # Load the large table directly into etcd, wait until the proxy serves its last route.
        now = int(time.time())
        items = [("/apisix/routes/r%d" % i, route_value("r%d" % i, "/r/%d" % i, now)) for i in range(a.routes)]
        mark = len(tr.log_text())
        t0 = time.monotonic()
        r["load_tr_etcd_s"] = etcd.load(items)
        wait_for(lambda: proxy.request("GET", "/r/%d" % (a.routes - 1))[0] == 200, 60,
                 "the proxy to serve /r/%d" % (a.routes - 1), interval=0.005)
        r["load_tr_served_s"] = time.monotonic() - t0
        wait_for(lambda: (applied_lines(tr.log_text()[mark:]) or [(0,)])[-1][0] >= a.routes, 60,
                 "the applier's log line for the full table")
        r["load_tr_applies"] = applied_lines(tr.log_text()[mark:])
        time.sleep(1.0)  # let the retired snapshots go (released on the applier's next turn)
        log("propagation: %d changes with %d routes (the table loaded and served in %.2f s)"
            % (a.changes, a.routes, r["load_tr_served_s"]))
        r["prop_large"] = metered("prop_large", phase_propagation, tr, admin, proxy, a.changes, "l", poll_s)
        with open("/proc/%d/status" % tr.pid) as fh:
            r["tr_rss_kb_at_end"] = int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1))
        admin.close()
        proxy.close()
        r["wall_s"] = time.monotonic() - t_begin
    finally:
        kill_all()
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        wall = time.monotonic() - t_begin
        share = machine_share(m_begin, machine_cpu())
        r["machine_busy_cores"] = share["busy"]
        r["machine_irq_cores"] = share["irq"]
        r["ours_cores"] = ours / wall
        r["not_ours_cores"] = share["busy"] - share["irq"] - ours / wall
        r["other_cores_by_phase"] = OTHER
        if a.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    (out / "RESULTS.json").write_text(json.dumps(r, indent=1, sort_keys=True))
    text = summary(r)
    (out / "summary.md").write_text(text + "\n")
    print("\n=== Control plane (Admin API over etcd), %s, %d CPUs, %s, 3 members ===" % (
        r["date"], r["nproc"], r["etcd_version"]))
    print(text)
    print("\nload of %d routes into etcd (%d txns of 128 puts): %.2f s for the control_plane prefix, %.2f s for "
          "the traditional prefix, served by the proxy after %.2f s; applies during that load: %s"
          % (a.routes, (a.routes + 127) // 128, r["load_cp_s"], r["load_tr_etcd_s"], r["load_tr_served_s"],
             ", ".join("%d routes in %.0f ms" % (x[0], x[1]) for x in r["load_tr_applies"])))
    print("binary: %(path)s built %(mtime)s UTC, sha256 %(sha256)s, work tree %(tree)s"
          % dict({"tree": "?"}, **r["binary"]))
    print("traditional process: idle CPU %.2f ms/s; RSS at the end %d MB; whole run %.0f s; results in %s"
          % (r["tr_idle_cpu_ms_per_s"], r["tr_rss_kb_at_end"] // 1024, r["wall_s"], out))
    print("machine: %.2f cores busy before the run; during it %.2f cores busy on average: %.2f charged to this "
          "benchmark's processes, %.2f interrupts (loopback softirq), %.2f other processes"
          % (r["busy_before"], r["machine_busy_cores"], r["ours_cores"], r["machine_irq_cores"],
             r["not_ours_cores"]))
    print("cores used by other processes during each phase: %s" % ", ".join("%s %.2f" % kv for kv in OTHER.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
