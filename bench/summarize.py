#!/usr/bin/python3
"""Medians per proxy and path from bench/run.sh results, with Portico's ratios to nginx and HAProxy."""
import re
import statistics
import sys
from collections import defaultdict

rows = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    rnd, proxy, path, rest = line.rstrip("\n").split("\t", 3)
    fields = dict(re.findall(r"(\w+)=(\S+)", rest))
    p99 = fields.get("p99", "nan")
    p99_ms = float(p99[:-2]) if p99.endswith("ms") else float(p99[:-2]) / 1000 if p99.endswith("us") else \
        float(p99[:-1]) * 1000 if p99.endswith("s") else float("nan")
    rows[path][proxy].append((float(fields["rps"]), float(fields["cpu_us_per_req"]), p99_ms,
                              "Non-2xx" in rest or "Socket errors" in rest))

print("| path | proxy | rps (median) | CPU µs/req (median) | p99 ms (median) | errors | rps vs nginx | rps vs HAProxy | CPU vs nginx | CPU vs HAProxy |")
print("|---|---|---|---|---|---|---|---|---|---|")
for path, by_proxy in rows.items():
    med = {p: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v),
               statistics.median(r[2] for r in v), any(r[3] for r in v)) for p, v in by_proxy.items()}
    for proxy, (rps, cpu, p99, err) in med.items():
        ratios = ""
        for peer in ("nginx", "haproxy"):
            ratios += f" {rps / med[peer][0]:.2f}x |" if peer in med else " - |"
        for peer in ("nginx", "haproxy"):
            ratios += f" {cpu / med[peer][1]:.2f}x |" if peer in med else " - |"
        print(f"| {path} | {proxy} | {rps:.0f} | {cpu:.2f} | {p99:.2f} | {'yes' if err else 'no'} |{ratios}")
