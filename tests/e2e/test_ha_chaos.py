"""Chaos tests of the HA playground (scripts/ha-cluster): 3 etcd members, 2 control planes, 3 data planes and
HAProxy in front of the data planes (health-checking /readyz), all driven through the script itself.

Every scenario runs under continuous load through HAProxy: a pool of client threads doing keep-alive GETs of
/load/<thread>/<seq>, a route served by the sample origin, each response checked (status 200 and the origin's
JSON echo naming that exact path). Each scenario asserts ZERO failed requests. One cluster is shared by the
whole module (HA_DIR in a temp dir, HA_PORT_BASE chosen free) and brought back to full health before each test.

Run with -s to see the measurements: one JSON line per scenario and a summary at the end of the module.
    /usr/bin/python3 -m pytest -q tests/e2e/test_ha_chaos.py -s
HA_PROP_ROUTES=10000 loads that many routes before the propagation measurement (default 10).
The last test runs a second cluster in the script's TLS variant (HA_TLS=1, docs/tls-control.md): propagation
and a control plane stopped under load, over TLS etcd, HTTPS Admin API and sync, and mutual TLS data planes.
"""

import concurrent.futures
import csv
import http.client
import io
import json
import os
import random
import shlex
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import LOOPBACK, PORTICO_BIN, blast, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ha-cluster"
OUTAGE_SECONDS = 30
LOAD_THREADS = 4
LOAD_RATE_PER_THREAD = 100  # requests per second per client thread
RESULTS = []


# ----------------------------------------------------------------------------------------------------------------
# The cluster, through scripts/ha-cluster
# ----------------------------------------------------------------------------------------------------------------

def free_port_base():
    """A base B such that B..B+99 are all free (the script's fixed layout), below the ephemeral range."""
    for _ in range(200):
        base = random.randrange(20000, 31800, 100)
        socks = []
        try:
            for p in range(base, base + 100):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                socks.append(s)
                s.bind((LOOPBACK, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of 100 ports")


def http_call(port, method, path, body=None, headers=None, timeout=10.0, context=None):
    """(status, headers, body bytes) on a fresh connection; raises OSError on transport errors. `context`: an
    ssl.SSLContext (HTTPS)."""
    if context is not None:
        conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class HA:
    def __init__(self, ha_dir, base, tls=False):
        self.dir = Path(ha_dir)
        self.base = base
        self.env = dict(os.environ, HA_DIR=str(self.dir), HA_PORT_BASE=str(base), HA_TIMEOUT="30",
                        PORTICO_BIN=str(PORTICO_BIN), HA_TLS="1" if tls else "0")
        self.vars = {}
        self.admin_context = None  # the TLS variant: the Admin API is HTTPS, verified against TLS_CA

    def run(self, *args, check=True, timeout=180, quiet=False):
        t0 = time.monotonic()
        r = subprocess.run([str(SCRIPT)] + [str(a) for a in args], env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, text=True)
        r.elapsed = time.monotonic() - t0
        if not quiet:
            print("$ ha-cluster %s -> rc %d in %.2fs\n%s" % (" ".join(map(str, args)), r.returncode, r.elapsed,
                                                            r.stdout.rstrip()))
        if check:
            assert r.returncode == 0, "ha-cluster %s failed (rc %d):\n%s" % (" ".join(map(str, args)),
                                                                           r.returncode, r.stdout)
        return r

    def load_env(self):
        out = self.run("env").stdout
        self.vars = {}
        for line in out.splitlines():
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                self.vars[k] = shlex.split(v)[0] if v else ""
        if self.vars.get("TLS_CA"):
            import ssl
            self.admin_context = ssl.create_default_context(cafile=self.vars["TLS_CA"])
        return self.vars

    def status(self):
        return json.loads(self.run("status", "--json").stdout)

    # ports by the script's layout (PORT_LAYOUT in scripts/ha-cluster)
    def dp_port(self, n):
        return self.base + 50 + n

    def dp_status_port(self, n):
        return self.base + 60 + n

    @property
    def lb_port(self):
        return int(self.vars["LB_URL"].rsplit(":", 1)[1])

    @property
    def admin_ports(self):
        return [int(self.vars[k].split(":")[2].split("/")[0]) for k in ("ADMIN_URL", "ADMIN_URL2")]

    def admin(self, method, path, body=None, headers=None, timeout=15.0, cp=None):
        """(status, parsed body, headers) from cp (1|2), or the first control plane that answers."""
        hdrs = {"X-API-KEY": self.vars["ADMIN_KEY"], "Content-Type": "application/json"}
        hdrs.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        ports = self.admin_ports if cp is None else [self.admin_ports[cp - 1]]
        last = None
        for port in ports:
            try:
                st, h, raw = http_call(port, method, "/apisix/admin" + path, data, hdrs, timeout,
                                       context=self.admin_context)
            except OSError as e:
                last = e
                continue
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw
            return st, parsed, h
        raise ConnectionError("no control plane answered (%r)" % (last,))

    def put_route(self, rid, uri, **kw):
        body = {"uri": uri, "upstream_id": "origin"}
        body.update(kw)
        return self.admin("PUT", "/routes/%s" % rid, body)

    def dp_get(self, n, path, timeout=5.0):
        """(status, body) of GET path straight on data plane n, or (None, error) on a transport error."""
        try:
            st, _, body = http_call(self.dp_port(n), "GET", path, timeout=timeout)
            return st, body
        except OSError as e:
            return None, repr(e)

    def dp_config(self, n):
        try:
            st, _, body = http_call(self.dp_status_port(n), "GET", "/status/config", timeout=2.0)
            return json.loads(body) if st == 200 else None
        except (OSError, ValueError):
            return None

    def dp_ready(self, n):
        try:
            return http_call(self.dp_status_port(n), "GET", "/readyz", timeout=2.0)[0] == 200
        except OSError:
            return False

    def lb_stats(self):
        st, _, body = http_call(self.base + 81, "GET", "/stats;csv", timeout=2.0)
        rows = csv.DictReader(io.StringIO(body.decode().lstrip("# ")))
        return {r["svname"]: r for r in rows if r["pxname"] == "dataplanes"}

    def lb_servers(self):
        return {k: v["status"] for k, v in self.lb_stats().items() if k != "BACKEND"}

    def lb_counters(self):
        b = self.lb_stats()["BACKEND"]
        return {k: int(b[k] or 0) for k in ("wretr", "wredis", "econ", "eresp", "stot")}

    def served_by_all(self, path, dps=(1, 2, 3)):
        for n in dps:
            st, body = self.dp_get(n, path)
            if st != 200 or json.loads(body).get("path") != path:
                return False
        return True

    def published_hash(self):
        st, fleet, _ = self.admin("GET", "/data_planes")
        assert st == 200, (st, fleet)
        return fleet["content_hash"]

    def in_sync(self, dps=(1, 2, 3)):
        """Every data plane connected and serving the control planes' published content."""
        h = self.published_hash()
        for n in dps:
            cfg = self.dp_config(n)
            if not cfg or not cfg.get("connected") or cfg.get("sync_hash") != h:
                return False
        return True

    def etcd_leader(self):
        """Member number (1..3) of the leader the running members agree on, or None."""
        ids, leaders = {}, set()
        for n in (1, 2, 3):
            try:
                st, _, body = http_call(self.base + n, "POST", "/v3/maintenance/status", b"{}",
                                        {"Content-Type": "application/json"}, timeout=0.5)
                ans = json.loads(body)
            except (OSError, ValueError):
                continue
            ids[ans["header"]["member_id"]] = n
            if ans.get("leader") and ans["leader"] != "0":
                leaders.add(ans["leader"])
        return ids.get(leaders.pop()) if len(leaders) == 1 else None

    def log_tail(self, name, n=40):
        return self.run("logs", name, "-n", n, check=False, quiet=True).stdout

    def logs_digest(self):
        return "\n".join("--- %s ---\n%s" % (name, self.log_tail(name, 25)) for name in
                         ("haproxy", "dp1", "dp2", "dp3", "cp1", "cp2"))


# ----------------------------------------------------------------------------------------------------------------
# Load through HAProxy: keep-alive client threads, every response checked
# ----------------------------------------------------------------------------------------------------------------

class Load:
    def __init__(self, port, threads=LOAD_THREADS, rate=LOAD_RATE_PER_THREAD, timeout=10.0):
        self.port = port
        self.threads = threads
        self.rate = rate
        self.timeout = timeout
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = 0
        self.samples = []
        self.latencies = []
        self.t0 = None
        self.workers = []

    def _worker(self, i):
        conn = None
        seq = 0
        next_t = time.monotonic()
        lat = []
        while not self.stop_ev.is_set():
            seq += 1
            path = "/load/t%d/%d" % (i, seq)
            err = None
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    err = "status %d: %r" % (r.status, body[:200])
                else:
                    echo = json.loads(body)
                    if echo.get("path") != path or echo.get("origin") != "ha-origin":
                        err = "wrong body %r" % body[:200]
                if r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every transport error is a failed request
                err = "%s: %s" % (type(e).__name__, e)
                if conn is not None:
                    conn.close()
                conn = None
            lat.append(time.monotonic() - t)
            with self.lock:
                self.requests += 1
                if err:
                    self.failures += 1
                    if len(self.samples) < 20:
                        self.samples.append("t+%.2fs %s: %s" % (time.monotonic() - self.t0, path, err))
            next_t += 1.0 / self.rate
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()
        if conn is not None:
            conn.close()
        with self.lock:
            self.latencies += lat

    def __enter__(self):
        self.t0 = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.stop_ev.is_set():
            return
        self.stop_ev.set()
        for t in self.workers:
            t.join(30)
        self.duration = time.monotonic() - self.t0

    def result(self):
        lat = sorted(self.latencies) or [0]
        return {"requests": self.requests, "failures": self.failures, "seconds": round(self.duration, 1),
                "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1000, 1), "max_ms": round(lat[-1] * 1000, 1)}


def record(name, load, ha, before, **extra):
    """Prints and stores one scenario's numbers (load result + HAProxy retries during the scenario)."""
    res = {"scenario": name}
    res.update(load.result())
    after = ha.lb_counters()
    res["haproxy_retries"] = after["wretr"] - before["wretr"]
    res["haproxy_redispatches"] = after["wredis"] - before["wredis"]
    res.update(extra)
    RESULTS.append(res)
    print("HA_CHAOS %s" % json.dumps(res))
    return res


def assert_no_failures(load, ha):
    assert load.requests > 0, "the load generator sent nothing"
    assert load.failures == 0, "%d of %d requests through HAProxy failed:\n%s\n%s" % (
        load.failures, load.requests, "\n".join(load.samples), ha.logs_digest())


def sample_while(seconds, fn, interval=1.0):
    """Calls fn() every `interval` for `seconds`; returns the list of results."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(fn())
        time.sleep(min(interval, max(0.0, end - time.monotonic())))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    assert PORTICO_BIN.exists(), "portico binary not found at %s" % PORTICO_BIN
    h = HA(tmp_path_factory.mktemp("ha"), free_port_base())
    try:
        h.run("start", timeout=240)
        h.load_env()
        st, ans, _ = h.put_route("ha-load", "/load/*")
        assert st in (200, 201), (st, ans)
        wait_for(lambda: h.served_by_all("/load/warmup"), timeout=15, message="the load route on every dp")
        yield h
    finally:
        h.run("stop", check=False, timeout=240)
        if RESULTS:
            print("\n=== HA chaos summary ===")
            for r in RESULTS:
                print(json.dumps(r))


@pytest.fixture(autouse=True)
def healthy(ha):
    """Full health before each test: every process running, every data plane ready, in sync and UP in HAProxy."""
    ha.run("start", timeout=240)
    wait_for(lambda: all(ha.dp_ready(n) for n in (1, 2, 3)), timeout=30, message="every dp ready")
    wait_for(lambda: set(ha.lb_servers().values()) == {"UP"}, timeout=15,
             message=lambda: "HAProxy to see every dp UP (%s)" % ha.lb_servers())
    wait_for(ha.in_sync, timeout=30, interval=0.2, message="every dp in sync with the control planes")
    yield


# ----------------------------------------------------------------------------------------------------------------
# Propagation: Admin API write -> all 3 data planes serve it
# ----------------------------------------------------------------------------------------------------------------

def load_filler_routes(ha, total):
    """Adds filler routes until the cluster holds `total` routes (concurrent Admin API PUTs)."""
    st, ans, _ = ha.admin("GET", "/routes?page=1&page_size=10")
    have = ans["total"]
    need = max(0, total - have - 1)  # -1: the "prop" route measured below

    def put(i):
        for _ in range(5):
            st, ans, _ = ha.put_route("fill-%d" % i, "/fill/%d" % i)
            if st in (200, 201):
                return st
        raise AssertionError("filler route %d: %s %r" % (i, st, ans))

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(put, range(need)))
    return time.monotonic() - t0


def test_propagation_admin_write_to_all_data_planes(ha):
    total = int(os.environ.get("HA_PROP_ROUTES") or 10)
    load_seconds = load_filler_routes(ha, total)
    st, ans, _ = ha.admin("GET", "/routes?page=1&page_size=10")
    routes = ans["total"] + 1
    wait_for(ha.in_sync, timeout=120, interval=0.5, message="every dp in sync after loading the routes")
    conns = {n: http.client.HTTPConnection(LOOPBACK, ha.dp_port(n), timeout=5) for n in (1, 2, 3)}

    def serves(n, path):
        try:
            conns[n].request("GET", path)
            r = conns[n].getresponse()
            body = r.read()
            return r.status == 200 and json.loads(body).get("path") == path
        except (OSError, http.client.HTTPException, ValueError):
            conns[n].close()
            return False

    from_send, from_ack, ack = [], [], []
    for k in range(200):
        path = "/prop/%d" % k
        t0 = time.monotonic()
        st, ans, _ = ha.put_route("prop", path)
        t_ack = time.monotonic()
        assert st in (200, 201), (st, ans)
        pending = {1, 2, 3}
        deadline = t_ack + 10
        while pending:
            for n in list(pending):
                if serves(n, path):
                    pending.discard(n)
            assert time.monotonic() < deadline, "change %d not served by dp %s within 10 s" % (k, pending)
        t_all = time.monotonic()
        from_send.append(t_all - t0)
        from_ack.append(t_all - t_ack)
        ack.append(t_ack - t0)
    for c in conns.values():
        c.close()

    def pct(xs, p):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] * 1000, 1)

    res = {"scenario": "propagation", "routes": routes, "changes": len(from_send),
           "write_to_all_dps_ms": {"p50": pct(from_send, 50), "p99": pct(from_send, 99), "max": pct(from_send, 100)},
           "ack_to_all_dps_ms": {"p50": pct(from_ack, 50), "p99": pct(from_ack, 99), "max": pct(from_ack, 100)},
           "admin_ack_ms": {"p50": pct(ack, 50), "p99": pct(ack, 99)},
           "mean_write_to_all_ms": round(statistics.mean(from_send) * 1000, 1),
           "filler_load_seconds": round(load_seconds, 1)}
    RESULTS.append(res)
    print("HA_CHAOS %s" % json.dumps(res))


# ----------------------------------------------------------------------------------------------------------------
# (a) 50 route changes per second for 10 s
# ----------------------------------------------------------------------------------------------------------------

def dp_auth_status(ha, n, key, path="/ha-auth/x"):
    """The status data plane n answers for `path` with `apikey: key` (None: no key sent; 0: no connection)."""
    headers = {} if key is None else {"apikey": key}
    try:
        return http_call(ha.dp_port(n), "GET", path, headers=headers, timeout=5.0)[0]
    except OSError:
        return 0


def test_consumer_added_changed_deleted_on_every_data_plane(ha):
    """A consumer (key-auth) added, changed and deleted through the Admin API takes effect on every data plane
    without a restart; the old key stops working everywhere within the propagation time, the deleted one too."""
    st, ans, _ = ha.admin("PUT", "/consumers", {"username": "ha_jack", "plugins": {"key-auth": {"key": "ha-key-1"}}})
    assert st in (200, 201), (st, ans)
    st, ans, _ = ha.put_route("ha-auth", "/ha-auth/*", plugins={"key-auth": {}})
    assert st in (200, 201), (st, ans)
    try:
        def everywhere(key, want):
            return all(dp_auth_status(ha, n, key) == want for n in (1, 2, 3))

        wait_for(lambda: everywhere("ha-key-1", 200) and everywhere(None, 401), timeout=15,
                 message="the key-auth route and the consumer on every data plane")
        # Stored encrypted with the cluster's keyring (both control planes read it back the same way).
        for cp in (1, 2):
            st, ans, _ = ha.admin("GET", "/consumers/ha_jack", cp=cp)
            assert st == 200 and ans["value"]["plugins"]["key-auth"]["key"].startswith("$ENC$"), (st, ans)
        timings = {}
        # Changed: the new key works and the old one stops, on all three.
        t0 = time.monotonic()
        st, ans, _ = ha.admin("PUT", "/consumers", {"username": "ha_jack", "plugins": {"key-auth": {"key": "ha-key-2"}}})
        assert st in (200, 201), (st, ans)
        wait_for(lambda: everywhere("ha-key-1", 401) and everywhere("ha-key-2", 200), timeout=10, interval=0.01,
                 message="the changed key on every data plane")
        timings["change_s"] = round(time.monotonic() - t0, 3)
        # Deleted: its key stops working on all three.
        t0 = time.monotonic()
        st, ans, _ = ha.admin("DELETE", "/consumers/ha_jack")
        assert st == 200, (st, ans)
        wait_for(lambda: everywhere("ha-key-2", 401), timeout=10, interval=0.01,
                 message="the deleted consumer's key refused on every data plane")
        timings["delete_s"] = round(time.monotonic() - t0, 3)
        # No data plane restarted meanwhile.
        assert all(ha.dp_ready(n) for n in (1, 2, 3))
        RESULTS.append(dict(scenario="consumer add/change/delete", **timings))
    finally:
        ha.admin("DELETE", "/routes/ha-auth")
        ha.admin("DELETE", "/consumers/ha_jack")


def test_a_route_changes_50_per_second(ha):
    changes, rate = 500, 50.0
    statuses = [None] * changes
    before = ha.lb_counters()
    with Load(ha.lb_port) as load:
        time.sleep(1)
        t0 = time.monotonic()

        def change(i):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                statuses[i] = ha.put_route("chg-%d" % i, "/chg/%d" % i, desc="change %d" % i)[0]
            except OSError as e:
                statuses[i] = repr(e)

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(change, range(changes)))
        elapsed = time.monotonic() - t0
        # every data plane serves the final state: all 500 new routes
        wait_for(lambda: ha.served_by_all("/chg/%d" % (changes - 1)), timeout=15,
                 message="the last change served by every dp")
        missing = [(n, i) for n in (1, 2, 3) for i in range(changes) if not ha.served_by_all("/chg/%d" % i, [n])]
        wait_for(ha.in_sync, timeout=15, interval=0.2, message="every dp at the published content hash")
        time.sleep(1)
    res = record("a: 500 route changes at 50/s", load, ha, before, changes=changes,
                 achieved_rate=round(changes / elapsed, 1),
                 write_errors=sum(1 for s in statuses if s not in (200, 201)))
    assert [s for s in statuses if s not in (200, 201)] == [], statuses
    assert res["achieved_rate"] >= 45, "only %.1f changes/s" % res["achieved_rate"]
    assert missing == [], "routes not served: %s" % missing[:20]
    assert_no_failures(load, ha)
    # restore: remove the 500 routes again (not under test)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: ha.admin("DELETE", "/routes/chg-%d" % i), range(changes)))


# ----------------------------------------------------------------------------------------------------------------
# (b) kill -9 of the etcd leader
# ----------------------------------------------------------------------------------------------------------------

def test_b_etcd_leader_sigkill(ha):
    before = ha.lb_counters()
    writes = []
    stop = threading.Event()

    def writer():  # a steady stream of route writes across the kill and the election
        k = 0
        while not stop.is_set():
            t = time.monotonic()
            try:
                st = ha.put_route("lk-%d" % k, "/lk/%d" % k)[0]
            except ConnectionError as e:
                st = repr(e)
            writes.append((k, st, round(time.monotonic() - t, 3), t))
            k += 1
            time.sleep(0.05)

    with Load(ha.lb_port) as load:
        w = threading.Thread(target=writer, daemon=True)
        w.start()
        time.sleep(2)
        old = wait_for(ha.etcd_leader, timeout=10, message="the etcd leader")
        r = ha.run("etcd-stop", "leader", "--kill")
        t_kill = time.monotonic()
        killed = r.stdout.split("etcd: killed (SIGKILL) ")[1].split()[0]
        new = wait_for(lambda: (lambda x: x if x and x != old else None)(ha.etcd_leader()), timeout=15,
                       interval=0.02, message="a new etcd leader")
        t_leader = time.monotonic() - t_kill
        time.sleep(3)
        stop.set()
        w.join(30)
        last = writes[-1][0]
        wait_for(lambda: ha.served_by_all("/lk/%d" % last), timeout=15, message="the last write served by every dp")
        time.sleep(1)
    during = [x for x in writes if x[3] + x[2] >= t_kill]
    res = record("b: etcd leader SIGKILL", load, ha, before, killed=killed, old_leader="etcd%d" % old,
                 new_leader="etcd%d" % new, new_leader_after_s=round(t_leader, 2), writes=len(writes),
                 writes_ok=sum(1 for x in writes if x[1] in (200, 201)),
                 slowest_write_s=max(x[2] for x in writes), writes_after_kill=len(during))
    assert killed == "etcd%d" % old
    assert all(x[1] in (200, 201) for x in writes), [x for x in writes if x[1] not in (200, 201)]
    assert_no_failures(load, ha)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda x: ha.admin("DELETE", "/routes/lk-%d" % x[0]), writes))
    ha.run("etcd-start", "all")
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (c) every etcd member down for 30 s, then back
# ----------------------------------------------------------------------------------------------------------------

def test_c_all_etcd_down_30s(ha):
    before = ha.lb_counters()
    writes = []
    with Load(ha.lb_port) as load:
        time.sleep(2)
        ha.run("etcd-stop", "all", "--kill")
        t_down = time.monotonic()
        states = []
        k = 0
        while time.monotonic() - t_down < OUTAGE_SECONDS:
            t = time.monotonic()
            try:
                st, ans, _ = ha.put_route("down-%d" % k, "/down/%d" % k)
            except ConnectionError as e:
                st, ans = repr(e), None
            writes.append((st, round(time.monotonic() - t, 2), (ans or {}).get("error_msg") if isinstance(ans, dict)
                           else ans))
            k += 1
            states.append(([ha.dp_ready(n) for n in (1, 2, 3)], ha.lb_servers()))
            time.sleep(max(0.0, min(4.0, OUTAGE_SECONDS - (time.monotonic() - t_down))))
        ha.run("etcd-start", "all")
        t_up = time.monotonic()
        # the first write that goes through after the members are back
        wait_for(lambda: ha.put_route("back", "/back")[0] in (200, 201), timeout=30, interval=0.2,
                 message="a write to succeed once etcd is back")
        first_write = time.monotonic() - t_up
        wait_for(lambda: ha.served_by_all("/back"), timeout=15, message="the write served by every dp")
        served = time.monotonic() - t_up
        time.sleep(1)
    res = record("c: all etcd members down 30 s", load, ha, before,
                 writes_during_outage=len(writes), writes_503=sum(1 for w in writes if w[0] == 503),
                 slowest_503_s=max(w[1] for w in writes), etcd_back_to_first_write_s=round(first_write, 2),
                 etcd_back_to_served_by_all_dps_s=round(served, 2))
    assert writes and all(w[0] == 503 for w in writes), writes
    for k in range(len(writes)):
        st, _, _ = ha.admin("GET", "/routes/down-%d" % k)
        assert st == 404, "a write refused with 503 during the outage was stored: down-%d" % k
    assert all(all(r) for r, _ in states), "a data plane went unready: %s" % states
    assert all(set(s.values()) == {"UP"} for _, s in states), "HAProxy took a data plane out: %s" % states
    assert_no_failures(load, ha)
    ha.admin("DELETE", "/routes/back")
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (d) every control plane down for 30 s, then back
# ----------------------------------------------------------------------------------------------------------------

def test_d_all_control_planes_down_30s(ha):
    before = ha.lb_counters()
    with Load(ha.lb_port) as load:
        time.sleep(2)
        ha.run("cp-stop", "all")
        t_down = time.monotonic()
        states = sample_while(OUTAGE_SECONDS, lambda: ([ha.dp_ready(n) for n in (1, 2, 3)], ha.lb_servers()))
        with pytest.raises(ConnectionError):
            ha.admin("GET", "/routes")
        ha.run("cp-start", "all")
        t_up = time.monotonic()
        st, ans, _ = ha.put_route("cpback", "/cpback")
        assert st in (200, 201), (st, ans)
        wait_for(lambda: ha.served_by_all("/cpback"), timeout=20, interval=0.05,
                 message="the first write after the control planes came back served by every dp")
        served = time.monotonic() - t_up

        def fleet_in_sync():
            st, fleet, _ = ha.admin("GET", "/data_planes")
            return st == 200 and sorted((d["node_id"], d["status"]) for d in fleet["list"]) == \
                [("dp1", "in_sync"), ("dp2", "in_sync"), ("dp3", "in_sync")]

        wait_for(fleet_in_sync, timeout=30, interval=0.5, message="the fleet view to show dp1..3 in_sync")
        fleet_time = time.monotonic() - t_up
        time.sleep(1)
    res = record("d: all control planes down 30 s", load, ha, before, outage_s=round(t_up - t_down, 1),
                 cps_back_to_write_served_by_all_dps_s=round(served, 2),
                 cps_back_to_fleet_all_in_sync_s=round(fleet_time, 2))
    assert all(all(r) for r, _ in states), "a data plane went unready: %s" % states
    assert all(set(s.values()) == {"UP"} for _, s in states), "HAProxy took a data plane out: %s" % states
    assert_no_failures(load, ha)
    ha.admin("DELETE", "/routes/cpback")
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (e) a data plane restarted while every control plane is down: it starts from its cache
# ----------------------------------------------------------------------------------------------------------------

def test_e_dp_restart_with_control_planes_down(ha):
    before = ha.lb_counters()
    rev_before = ha.dp_config(2)["sync_revision"]
    with Load(ha.lb_port) as load:
        time.sleep(1)
        ha.run("cp-stop", "all")
        r = ha.run("dp-restart", "2")
        cfg = ha.dp_config(2)
        code = ha.run("dp-curl", "2", "/load/direct").stdout.strip().splitlines()[-1]
        servers = ha.lb_servers()
        time.sleep(2)
        ha.run("cp-start", "all")
        time.sleep(1)
    res = record("e: dp restart with every control plane down", load, ha, before, restart_s=round(r.elapsed, 2),
                 source=cfg["sync_source"], revision=cfg["sync_revision"])
    assert cfg["sync_source"] == "cache" and cfg["sync_revision"] == rev_before, cfg
    assert code == "200", code
    assert servers["dp2"] == "UP", servers
    assert_no_failures(load, ha)
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (f) a new data plane with no cache while every control plane is down
# ----------------------------------------------------------------------------------------------------------------

def test_f_new_dp_without_cache_with_control_planes_down(ha):
    s3 = ha.status()["s3"]
    assert s3 == ("S3_ENDPOINT" in ha.load_env()), "status --json and env disagree about S3"
    before = ha.lb_counters()
    with Load(ha.lb_port) as load:
        time.sleep(1)
        ha.run("cp-stop", "all")
        r = ha.run("dp-new", "3", "--no-cache", "--wait", "15" if s3 else "5", check=False)
        if s3:
            # S3 available: it starts from the control planes' snapshot in S3
            cfg = ha.dp_config(3)
            ready = ha.dp_ready(3)
            code = ha.run("dp-curl", "3", "/load/direct", check=False).stdout.strip().splitlines()[-1]
            servers = ha.lb_servers()
            observed = []
        else:
            # no S3: it stays unready, answers 503, and HAProxy keeps it out (sends it no request at all)
            sessions_before = int(ha.lb_stats()["dp3"]["stot"] or 0)
            observed = sample_while(5, lambda: (ha.dp_ready(3), ha.dp_get(3, "/load/direct")[0],
                                                ha.lb_servers()["dp3"]), interval=0.5)
            sessions_while_out = int(ha.lb_stats()["dp3"]["stot"] or 0) - sessions_before
            cfg = ha.dp_config(3)
        ha.run("cp-start", "all")
        wait_for(lambda: ha.dp_ready(3), timeout=30, message="the new dp ready once the control planes are back")
        wait_for(lambda: ha.lb_servers()["dp3"] == "UP", timeout=10, message="HAProxy to take the new dp in")
        time.sleep(1)
    res = record("f: new dp, no cache, control planes down (S3 %s)" % ("on" if s3 else "off"), load, ha, before,
                 s3=s3, dp_new_rc=r.returncode, source=(cfg or {}).get("sync_source"),
                 observed=observed[:3])
    if s3:
        assert r.returncode == 0, r.stdout
        assert ready and cfg["sync_source"] == "s3", cfg
        assert code == "200" and servers["dp3"] == "UP", (code, servers)
    else:
        assert r.returncode == 3, "dp-new should report 'running, not ready' (3): %s" % r.stdout
        assert observed and all(o == (False, 503, "DOWN") for o in observed), observed
        assert sessions_while_out == 0, "HAProxy sent %d requests to the unready dp" % sessions_while_out
        assert cfg["sync_source"] == "none", cfg
    assert_no_failures(load, ha)
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (g) rolling restart of every data plane
# ----------------------------------------------------------------------------------------------------------------

def test_g_rolling_restart_of_data_planes(ha):
    before = ha.lb_counters()
    took = {}
    with Load(ha.lb_port) as load:
        time.sleep(1)
        for n in (1, 2, 3):
            r = ha.run("dp-restart", n)  # SIGTERM (drain), start, wait ready and UP in HAProxy
            took["dp%d" % n] = round(r.elapsed, 2)
            assert ha.dp_ready(n) and ha.lb_servers()["dp%d" % n] == "UP"
        time.sleep(1)
    res = record("g: rolling restart of the 3 data planes", load, ha, before, restart_s=took)
    assert_no_failures(load, ha)
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (h) a corrupted cache file, restart with the control planes down
# ----------------------------------------------------------------------------------------------------------------

def snapshots(ha, n):
    cache = ha.dir / ("dp%d" % n) / "state" / "cache"
    return sorted(p for p in cache.iterdir() if p.name.startswith("snapshot-") and p.name.endswith(".psnap"))


def test_h_corrupted_cache_file(ha):
    s3 = ha.status()["s3"]
    for k in range(2):  # two more applied revisions: at least two snapshots in dp1's cache
        st, ans, _ = ha.put_route("cache-%d" % k, "/cache/%d" % k)
        assert st in (200, 201), (st, ans)
        wait_for(lambda: ha.served_by_all("/cache/%d" % k), timeout=15, message="cache-%d served" % k)
    wait_for(lambda: len(snapshots(ha, 1)) >= 2 and
             int(snapshots(ha, 1)[-1].name[9:29]) == ha.dp_config(1)["sync_revision"], timeout=10,
             message=lambda: "two snapshots in dp1's cache, the newest the one served (%s)" % snapshots(ha, 1))
    before = ha.lb_counters()
    with Load(ha.lb_port) as load:
        time.sleep(1)
        ha.run("cp-stop", "all")
        files = snapshots(ha, 1)
        newest, older = files[-1], files[-2]
        data = bytearray(newest.read_bytes())
        mid = len(data) // 2
        for i in range(mid, min(len(data), mid + 16)):
            data[i] ^= 0xFF
        newest.write_bytes(bytes(data))
        r = ha.run("dp-restart", "1", check=False)
        cfg = ha.dp_config(1)
        code = ha.run("dp-curl", "1", "/load/direct", check=False).stdout.strip().splitlines()[-1]
        bad = [p.name for p in (ha.dir / "dp1" / "state" / "cache").iterdir() if p.name.endswith(".bad")]
        log = ha.log_tail("dp1", 60)
        time.sleep(2)
        ha.run("cp-start", "all")
        wait_for(lambda: ha.in_sync([1]), timeout=30, message="dp1 back in sync with the control planes")
        time.sleep(1)
    res = record("h: corrupted newest cache file, restart with control planes down", load, ha, before,
                 source=(cfg or {}).get("sync_source"), revision=(cfg or {}).get("sync_revision"),
                 corrupted=newest.name, fallback=older.name, bad_files=bad)
    assert r.returncode == 0, r.stdout
    assert newest.name + ".bad" in bad, (bad, log)
    if cfg["sync_source"] == "cache":
        assert cfg["sync_revision"] == int(older.name[9:29]), (cfg, older.name)
    else:
        assert s3 and cfg["sync_source"] == "s3", cfg
    assert code == "200", code
    assert_no_failures(load, ha)
    for k in range(2):
        ha.admin("DELETE", "/routes/cache-%d" % k)
    assert res


# ----------------------------------------------------------------------------------------------------------------
# (i) one rate limit across the fleet: limit-count on Redis, 3 data planes behind HAProxy
# ----------------------------------------------------------------------------------------------------------------

def lb_served_per_dp(ha):
    return {k: int(v["stot"] or 0) for k, v in ha.lb_stats().items() if k != "BACKEND"}


def fleet_limit(ha, rid, redis_port, count, **extra):
    """Puts route `rid` (/rl/<rid>) with one limit-count of `count` per 60 s on a key shared by every data plane,
    waits until the whole fleet runs it (by content hash: a request would spend the quota), then loads it
    through HAProxy far above `count`. Returns (status counts, requests each data plane served)."""
    conf = {"count": count, "time_window": 60, "key_type": "constant", "key": "fleet-" + rid,
            "rejected_code": 429, "policy": "redis", "redis_host": LOOPBACK, "redis_port": redis_port}
    conf.update(extra)
    st, ans, _ = ha.put_route(rid, "/rl/" + rid, plugins={"limit-count": conf})
    assert st in (200, 201), (st, ans)
    wait_for(ha.in_sync, timeout=30, interval=0.2, message="every dp runs the limited route")
    before = lb_served_per_dp(ha)
    counts = blast(ha.lb_port, "/rl/" + rid, threads=6, seconds=4.0)
    after = lb_served_per_dp(ha)
    ha.admin("DELETE", "/routes/" + rid)
    return counts, {k: after[k] - before.get(k, 0) for k in after}


def test_i_fleet_limit_count_on_redis_is_accurate(ha, redis_module):
    r = redis_module()
    n = 500
    counts, per_dp = fleet_limit(ha, "fleet-redis", r.port, n)
    admitted = counts.get(200, 0)
    res = {"name": "i: limit-count redis across 3 dps", "limit": n, "admitted": admitted,
           "rejected_429": counts.get(429, 0), "other": {k: v for k, v in counts.items() if k not in (200, 429)},
           "served_per_dp": per_dp, "error_pct": round(100.0 * (admitted - n) / n, 2)}
    RESULTS.append(res)
    print(json.dumps(res))
    assert set(counts) <= {200, 429}, counts
    assert counts.get(429, 0) > 5 * n, "the load must be far above the limit: %s" % counts
    assert all(v > n for v in per_dp.values()), "every data plane took part: %s" % per_dp
    assert abs(admitted - n) <= n // 100, res


def test_i_fleet_limit_count_batched_is_within_its_bound(ha, redis_module):
    """Batched mode (sync_interval): each data plane counts locally and syncs every interval. The stated bound
    (docs/plugins/limits-redis.md): admitted <= N + min(D * r * (I + rtt), (D - 1) * N), r the requests per
    second one data plane admits, I the interval, rtt the sync's round trip."""
    r = redis_module()
    n, interval, rtt = 500, 0.2, 0.05
    t0 = time.monotonic()
    counts, per_dp = fleet_limit(ha, "fleet-batched", r.port, n, sync_interval=interval)
    seconds = time.monotonic() - t0
    admitted = counts.get(200, 0)
    dps = len(per_dp)
    rate = max(per_dp.values()) / seconds
    bound = n + min(dps * rate * (interval + rtt), (dps - 1) * n)
    res = {"name": "i: limit-count redis batched (sync_interval %.1f s) across %d dps" % (interval, dps),
           "limit": n, "admitted": admitted, "bound": round(bound), "rate_per_dp": round(rate),
           "rejected_429": counts.get(429, 0), "served_per_dp": per_dp,
           "error_pct": round(100.0 * (admitted - n) / n, 2)}
    RESULTS.append(res)
    print(json.dumps(res))
    assert set(counts) <= {200, 429}, counts
    assert n <= admitted <= bound, res


# ----------------------------------------------------------------------------------------------------------------
# The TLS variant (HA_TLS=1): propagation and a control plane stopped under load
# ----------------------------------------------------------------------------------------------------------------

def test_tls_variant_propagation_and_control_plane_stop(ha, tmp_path_factory):
    """A second cluster with TLS on every control channel: etcd with client-cert auth, HTTPS Admin API and sync,
    data planes verifying the control planes and authenticating with client certificates (CN dpN)."""
    t = HA(tmp_path_factory.mktemp("ha-tls"), free_port_base(), tls=True)
    try:
        t.run("start", timeout=240)
        t.load_env()
        assert t.vars["ADMIN_URL"].startswith("https://") and t.vars["ETCD_ENDPOINTS"].startswith("https://")
        # A plain client gets no HTTP answer from the Admin API.
        with pytest.raises((OSError, http.client.HTTPException)):
            http_call(t.admin_ports[0], "GET", "/apisix/admin/routes", timeout=3.0)
        st, ans, _ = t.put_route("ha-load", "/load/*")
        assert st in (200, 201), (st, ans)
        t0 = time.monotonic()
        wait_for(lambda: t.served_by_all("/load/warmup"), timeout=15, interval=0.02,
                 message="the load route on every dp (TLS)")
        propagation = time.monotonic() - t0
        st, fleet, _ = t.admin("GET", "/data_planes")
        assert st == 200 and sorted(d["node_id"] for d in fleet["list"]) == ["dp1", "dp2", "dp3"], fleet
        before = t.lb_counters()
        with Load(t.lb_port) as load:
            time.sleep(1)
            t.run("cp-stop", "1", "--kill")
            st, ans, _ = t.put_route("tls-cp2", "/tls-cp2")  # through cp2, the one left
            assert st in (200, 201), (st, ans)
            wait_for(lambda: t.served_by_all("/tls-cp2"), timeout=20, interval=0.05,
                     message="a write through cp2 served by every dp after cp1 was killed (TLS)")
            t.run("cp-start", "1")
            wait_for(t.in_sync, timeout=30, interval=0.2, message="every dp in sync again (TLS)")
            time.sleep(1)
        record("tls: propagation and cp1 killed", load, t, before, propagation_s=round(propagation, 3))
        assert_no_failures(load, t)
    finally:
        t.run("stop", check=False, timeout=240)
