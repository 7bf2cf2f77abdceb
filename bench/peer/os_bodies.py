#!/usr/bin/python3
"""OpenSearch's CPU per 1000 documents for the same bulk items cut into bodies of other sizes,
with and without ddb2os's filter_path (docs/performance.md, "End to end against OpenSearch
alone: CPU per phase").

usage: os_bodies.py DDB2OS_BINARY [SIZE:PATH,...] [ROUNDS]

The items are those of compare.py's workload (about 100 000 change records of 23 809 items:
created, updated three times, one in five deleted) through `ddb2os transform`, posted as
compare.py's OpenSearch alone posts them (2 connections, a document's changes on one, in
order) into a fresh index per case. SIZE is the body size in bytes; PATH is plain (/_bulk) or
filter (ddb2os's /_bulk?filter_path=...). Default: 5242880:plain,5242880:filter,600000:filter,
600000:plain (600 kB is about ddb2os's median body during a drain), 3 rounds, each round in
the other order. Prints each case's seconds and OpenSearch's CPU (utime + stime of its pid
from $D2O_SERVICES_DIR/run). Needs OpenSearch (scripts/services start opensearch; export
scripts/services env); no stream is used.
"""
import os
import sys

import compare  # bench/peer/compare.py: its paths reach poolkit and pool_bench

import poolkit  # noqa: E402

FILTER = compare.BULK_PATH


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary = sys.argv[1]
    spec = sys.argv[2] if len(sys.argv) > 2 else \
        "5242880:plain,5242880:filter,600000:filter,600000:plain"
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    cases = []
    for c in spec.split(","):
        size, path = c.split(":")
        cases.append((int(size), {"plain": "/_bulk", "filter": FILTER}[path]))
    env = poolkit.Env("osb", kinesis="D2O_TEST_KINESALITE")
    batch = poolkit.Items().workload(23809, 4, prefix="k")
    cut = {}
    for r in range(rounds):
        for size, path in (cases if r % 2 == 0 else list(reversed(cases))):
            suffix = "-%d-%d" % (size, r)
            if size not in cut:
                cut[size] = compare.bulk_bodies(binary, env, batch, env.index + "-x", 2,
                                                limit=size)
            old, new = (env.index + "-x").encode(), (env.index + suffix).encode()
            bodies = [[b.replace(old, new) for b in conn] for conn in cut[size]]
            a = compare.os_alone(binary, env, batch, suffix=suffix, bodies=bodies, path=path)
            print("%8d-byte bodies, %-6s: %3d bodies, %6.2f s, OpenSearch %.2f CPU s, %s; load "
                  "average %.1f" % (size, "filter" if path == FILTER else "plain", a["bodies"],
                                    a["seconds"], a["server_cpu"]["opensearch"],
                                    compare.per_1000(a["server_cpu"], "opensearch", len(batch)),
                                    os.getloadavg()[0]), flush=True)


if __name__ == "__main__":
    main()
