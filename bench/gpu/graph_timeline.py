#!/usr/bin/env python3
"""Where a CUDA graph launch spends its GPU time, from an Nsight Systems trace.

Reads the SQLite export of `nsys profile --cuda-graph-trace=node` and, for each kind of graph
launch (its sequence of kernels), prints every kernel node in launch order with the
median of its duration and of the idle gap before it, over all launches of that kind. The gaps
are what a graph pays between dependent kernels; the durations are what the kernels cost.

    python3 bench/gpu/graph_timeline.py trace.sqlite [--min-launches 5]
"""
import argparse
import collections
import sqlite3
import statistics
import sys


def short(name: str) -> str:
    name = name.split("(")[0]
    for prefix in ("void ", "eaq::cuda::", "(anonymous namespace)::"):
        name = name.replace(prefix, "")
    return name[:70]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="SQLite file written by nsys export --type sqlite")
    parser.add_argument("--min-launches", type=int, default=5)
    args = parser.parse_args()
    db = sqlite3.connect(args.trace)
    columns = {row[1] for row in db.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_KERNEL)")}
    if not columns:
        print(f"{args.trace}: no kernel table (was the run traced with CUDA?)", file=sys.stderr)
        return 1
    name_column = "demangledName" if "demangledName" in columns else "shortName"
    rows = db.execute(
        f"SELECT k.start, k.end, k.correlationId, s.value FROM CUPTI_ACTIVITY_KIND_KERNEL k "
        f"JOIN StringIds s ON s.id = k.{name_column} ORDER BY k.start").fetchall()
    # Kernels of one graph launch share the launch call's correlation id.
    launches = collections.OrderedDict()
    for start, end, correlation, name in rows:
        launches.setdefault(correlation, []).append((start, end, short(name)))
    kinds = collections.defaultdict(list)
    for kernels in launches.values():
        if len(kernels) < 3:
            continue  # a plain kernel launch, not a graph
        kinds[tuple(k[2] for k in kernels)].append(kernels)
    for names, group in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        count, first = len(names), names[0]
        if len(group) < args.min_launches:
            continue
        spans = [k[-1][1] - k[0][0] for k in group]
        print(f"\n## graph of {count} kernels, {len(group)} launches, median span "
              f"{statistics.median(spans) / 1e3:.1f} us (first kernel {first})")
        print(f"{'#':>3} {'kernel':70} {'us':>7} {'gap us':>7}")
        total_run = total_gap = 0.0
        by_name = collections.defaultdict(lambda: [0, 0.0, 0.0])
        for i in range(count):
            durations = [(k[i][1] - k[i][0]) / 1e3 for k in group]
            gaps = [(k[i][0] - k[i - 1][1]) / 1e3 if i else 0.0 for k in group]
            d, g = statistics.median(durations), statistics.median(gaps)
            total_run += d
            total_gap += g
            entry = by_name[group[0][i][2]]
            entry[0] += 1
            entry[1] += d
            entry[2] += g
            print(f"{i:>3} {group[0][i][2]:70} {d:7.2f} {g:7.2f}")
        print(f"sum of median durations {total_run:.1f} us, of median gaps {total_gap:.1f} us")
        print(f"\n{'kernel':70} {'count':>5} {'us':>8} {'gap us':>8}")
        for name, (n, d, g) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
            print(f"{name:70} {n:5} {d:8.1f} {g:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
