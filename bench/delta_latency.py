#!/usr/bin/python3
"""Delta apply at scale: with N routes on the data planes of scripts/ha-cluster, what one-route deltas cost the
data plane (apply time, from its log) and whether they disturb request latency (wrk against data plane 1
directly, rounds with and without 10 one-route changes per second, interleaved).

    bench/delta-latency.sh            # N = 100000 (DELTA_ROUTES), results in build/bench-results/

The N routes are written straight into etcd (128 puts per transaction through etcd's JSON gateway), as a bulk
import would; the control planes validate and publish them like Admin API writes. Needs a running ha-cluster
(the shell wrapper starts and stops one in its own HA_DIR).
"""

import base64
import concurrent.futures
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTES = int(os.environ.get("DELTA_ROUTES") or 100000)
ROUNDS = int(os.environ.get("DELTA_ROUNDS") or 3)
SECONDS = int(os.environ.get("DELTA_SECONDS") or 8)
RATE = 10.0  # one-route changes per second during a "changes" round


def env():
    out = subprocess.run([str(ROOT / "scripts" / "ha-cluster"), "env"], check=True, capture_output=True, text=True)
    vals = {}
    for line in out.stdout.splitlines():
        m = re.match(r"export (\w+)=(.*)$", line)
        if m:
            vals[m.group(1)] = m.group(2).strip("'")
    return vals


def b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd_txn(endpoint, puts):
    body = json.dumps({"success": [{"requestPut": {"key": b64(k), "value": b64(v)}} for k, v in puts]}).encode()
    req = urllib.request.Request(endpoint + "/v3/kv/txn", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def load_routes(e, origin):
    endpoint = e["ETCD_ENDPOINTS"].split(",")[0]
    now = int(time.time())

    def value(i):
        return json.dumps({"id": "fill-%d" % i, "uri": "/fill/%d" % i, "create_time": now, "update_time": now,
                           "upstream": {"type": "roundrobin", "nodes": {origin: 1}}}, separators=(",", ":"))

    batches = [[("/apisix/routes/fill-%d" % i, value(i)) for i in range(s, min(ROUTES, s + 128))]
               for s in range(0, ROUTES, 128)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda b: etcd_txn(endpoint, b), batches))
    return time.monotonic() - t0


def status(url, path, host=None):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    try:
        c.request("GET", path, headers={"Host": host} if host else {})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return 0
    finally:
        c.close()


def admin_put(e, rid, body):
    req = urllib.request.Request(e["ADMIN_URL"] + "/routes/" + rid, data=json.dumps(body).encode(), method="PUT",
                                 headers={"X-API-KEY": e["ADMIN_KEY"], "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
        return r.status


def wrk(url):
    out = subprocess.run(["wrk", "-t1", "-c8", "-d%ds" % SECONDS, "--latency", url], capture_output=True,
                         text=True, check=True).stdout
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for p in ("50", "90", "99"):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        res["p%s_ms" % p] = round(float(m.group(1)) * scale, 3)
    m = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    res["max_ms"] = round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(errors.group(1)) if errors else 0
    return res


def changes_while(stop, e, origin, made):
    k = 0
    t0 = time.monotonic()
    while not stop.is_set():
        delay = t0 + k / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        admin_put(e, "delta-probe", {"uri": "/probe/%d" % k, "upstream": {"type": "roundrobin", "nodes": {origin: 1}}})
        made.append(k)
        k += 1


def delta_apply_ms(log_path, since):
    """Apply times of the deltas data plane 1 logged after byte offset `since`."""
    text = Path(log_path).read_bytes()[since:].decode(errors="replace")
    return [(float(m.group(1)), float(m.group(2)))
            for m in re.finditer(r"config applied .* in ([\d.]+) ms .*\(delta of \d+ changes, cpu ([\d.]+) ms", text)]


def cluster_cpu_seconds():
    """CPU seconds used so far by every portico and etcd process on the machine."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path("/proc/%s/cmdline" % pid).read_bytes().split(b"\0")[0]
            if not (cmd.endswith(b"portico") or cmd.endswith(b"etcd")):
                continue
            fields = Path("/proc/%s/stat" % pid).read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit=120):
    """Waits (bounded) until the cluster uses under 10% of a core over a second: after a bulk import the data
    planes still rebuild, free the old layers and write 30 MB caches for a while, which is not what the rounds
    measure. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        before = cluster_cpu_seconds()
        time.sleep(1)
        if cluster_cpu_seconds() - before < 0.1:
            break
    return time.monotonic() - t0


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))], 3) if xs else None


def main():
    e = env()
    origin = e["ORIGIN"]
    dp1 = e["DP_URLS"].split()[0]
    dp_log = Path(e["HA_DIR"]) / "logs" / "dp1.log"
    load_s = load_routes(e, origin)
    print("loaded %d routes into etcd in %.1f s" % (ROUTES, load_s), flush=True)
    t0 = time.monotonic()
    last = "/fill/%d" % (ROUTES - 1)
    while not all(status(u, last) == 200 for u in e["DP_URLS"].split()):
        if time.monotonic() - t0 > 600:
            sys.exit("the data planes do not serve %s after 600 s" % last)
        time.sleep(0.5)
    settle_s = time.monotonic() - t0
    print("every data plane serves all %d routes %.1f s after the import" % (ROUTES, settle_s), flush=True)
    admin_put(e, "delta-probe", {"uri": "/probe/start", "upstream": {"type": "roundrobin", "nodes": {origin: 1}}})
    quiet_s = wait_quiet()
    print("the cluster was quiet %.1f s later" % quiet_s, flush=True)

    quiet, busy, applies = [], [], []
    target = dp1 + "/fill/%d" % (ROUTES // 2)
    for r in range(ROUNDS):
        quiet.append(wrk(target))
        print("round %d quiet:   %s" % (r + 1, json.dumps(quiet[-1])), flush=True)
        mark = dp_log.stat().st_size
        stop, made = threading.Event(), []
        t = threading.Thread(target=changes_while, args=(stop, e, origin, made))
        t.start()
        busy.append(wrk(target))
        stop.set()
        t.join()
        time.sleep(0.5)
        applied = delta_apply_ms(dp_log, mark)
        applies += applied
        print("round %d changes: %s; %d changes, dp1 applied %d deltas" % (r + 1, json.dumps(busy[-1]), len(made),
                                                                           len(applied)), flush=True)

    def agg(rs, key):
        return round(statistics.median(x[key] for x in rs), 3)

    res = {"scenario": "delta_latency", "routes": ROUTES, "rounds": ROUNDS, "seconds_per_round": SECONDS,
           "changes_per_second": RATE, "import_seconds": round(load_s, 1), "settle_seconds": round(settle_s, 1),
           "quiet_after_seconds": round(quiet_s, 1),
           "dp1_delta_apply_ms": {"n": len(applies), "p50": pct([w for w, _ in applies], 50),
                                  "p99": pct([w for w, _ in applies], 99), "max": pct([w for w, _ in applies], 100)},
           "dp1_delta_apply_cpu_ms": {"p50": pct([c for _, c in applies], 50), "p99": pct([c for _, c in applies], 99),
                                      "max": pct([c for _, c in applies], 100)},
           "quiet": {k: agg(quiet, k) for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
           "changes": {k: agg(busy, k) for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
           "non_2xx": sum(x["non_2xx"] for x in quiet + busy)}
    print("DELTA_LATENCY %s" % json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
