#!/usr/bin/env python3
"""Where a CUDA graph launch spends its GPU time, from a kernel trace.

Reads the CSV of tools/kernel_trace.cpp (a CUPTI injection library) or the SQLite export of
`nsys profile --cuda-graph-trace=node` and, for each kind of graph
launch (its sequence of kernels), prints every kernel node in launch order with the
median of its duration and of the idle gap before it, over all launches of that kind. The gaps
are what a graph pays between dependent kernels; the durations are what the kernels cost.

    python3 bench/gpu/graph_timeline.py trace.csv|trace.sqlite [--min-launches 5]
"""
import argparse
import collections
import csv
import sqlite3
import statistics
import sys


def short(name: str) -> str:
    for prefix in ("void ", "(anonymous namespace)::", "eaq::cuda::", "detail::"):
        name = name.replace(prefix, "")
    return name.split("(")[0][:70]


def read_csv(path):
    with open(path, newline="") as f:
        rows = [(int(r["start_ns"]), int(r["end_ns"]), int(r["correlation_id"]), r["name"])
                for r in csv.DictReader(f)]
    return sorted(rows)


def read_sqlite(path):
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_KERNEL)")}
    if not columns:
        print(f"{path}: no kernel table (was the run traced with CUDA?)", file=sys.stderr)
        return None
    name_column = "demangledName" if "demangledName" in columns else "shortName"
    return db.execute(
        f"SELECT k.start, k.end, k.correlationId, s.value FROM CUPTI_ACTIVITY_KIND_KERNEL k "
        f"JOIN StringIds s ON s.id = k.{name_column} ORDER BY k.start").fetchall()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="kernel_trace.cpp's CSV, or nsys export's SQLite file")
    parser.add_argument("--min-launches", type=int, default=5)
    args = parser.parse_args()
    rows = read_csv(args.trace) if args.trace.endswith(".csv") else read_sqlite(args.trace)
    if rows is None:
        return 1
    # Kernels of one graph launch share the launch call's correlation id.
    launches = collections.OrderedDict()
    for start, end, correlation, name in rows:
        launches.setdefault(correlation, []).append((start, end, short(name)))
    # Launches of one graph kind more than a second apart belong to different runs (the same
    # precision measured twice in one process): each run is summarized on its own.
    kinds = collections.defaultdict(list)
    runs = collections.Counter()
    last_start = {}
    for kernels in launches.values():
        if len(kernels) < 3:
            continue  # a plain kernel launch, not a graph
        names = tuple(k[2] for k in kernels)
        if names in last_start and kernels[0][0] - last_start[names] > 1e9:
            runs[names] += 1
        last_start[names] = kernels[0][0]
        kinds[(runs[names],) + names].append(kernels)
    for key, group in sorted(kinds.items(), key=lambda kv: kv[1][0][0][0]):
        run, names = key[0], key[1:]
        count, first = len(names), names[0]
        if len(group) < args.min_launches:
            continue
        spans = [k[-1][1] - k[0][0] for k in group]
        print(f"\n## graph of {count} kernels (run {run}), {len(group)} launches, median span "
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
