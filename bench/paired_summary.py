#!/usr/bin/python3
"""The table of a paired bench (bench/h2-paired.sh, bench/tls-paired.sh): its result lines are
"round=R pair=OTHER <key>=<value>... portico=NS OTHER=NS" (CPU ns per unit); rows are grouped by pair and the
other keys, with medians and the per-round range of other / Portico.
Usage: paired_summary.py RESULTS UNIT (e.g. req, conn)."""
import collections
import re
import statistics
import sys

results, unit = sys.argv[1], sys.argv[2]
rows = collections.defaultdict(list)
keys = []
for line in open(results):
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    pair = f["pair"]
    keys = [k for k in f if k not in ("round", "pair", "portico", pair)]
    rows[(pair,) + tuple(f[k] for k in keys)].append((int(f["portico"]), int(f[pair])))
print("| pair | " + " | ".join(keys) + f" | Portico µs/{unit} | other µs/{unit} | other / Portico (median, per-round range) |")
print("|---" * (len(keys) + 4) + "|")
for key, v in sorted(rows.items()):
    ratios = sorted(o / p for p, o in v)
    print(f"| {' | '.join(key)} | {statistics.median(p for p, _ in v) / 1000:.2f} | "
          f"{statistics.median(o for _, o in v) / 1000:.2f} | {statistics.median(ratios):.3f} "
          f"({ratios[0]:.3f}-{ratios[-1]:.3f}) |")
