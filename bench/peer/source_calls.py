#!/usr/bin/python3
"""Kinesalite's CPU per 1000 records and per call when one bare client reads the same stream
with GetRecords of other Limits (docs/performance.md, "End to end against OpenSearch alone:
CPU per phase").

usage: source_calls.py [--source kinesalite|kinesis-mock] [LIMIT,...] [ROUNDS] [RECORDS]

Loads a fresh 8-shard kinesalite stream with compare.py's workload (RECORDS change records,
default 50 000), then reads it from TRIM_HORIZON with compare.py's bare reader (one call at a
time, shard after shard) once per Limit (default 100,300,1000,5000), ROUNDS times (default 2),
each round in the other order. Prints the calls, seconds and kinesalite's CPU (utime + stime of
its pid from $D2O_SERVICES_DIR/run) per read. Needs kinesalite (scripts/services start
kinesalite; export scripts/services env).
"""
import os
import sys

import compare  # bench/peer/compare.py: its paths reach poolkit and pool_bench

import poolkit  # noqa: E402


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--source" and sys.argv[2] in compare.SOURCES:
        compare.SOURCE = sys.argv[2]
        del sys.argv[1:3]
    if len(sys.argv) > 1 and sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    limits = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "100,300,1000,5000")
              .split(",")]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 50000
    env = compare.source_env("kl")
    try:
        compare.preload(env, n, 8)
        for r in range(rounds):
            for limit in (limits if r % 2 == 0 else list(reversed(limits))):
                k = compare.source_alone(env, limit)
                cpu = k["server_cpu"][compare.SOURCE]
                print("Limit %5d: %5d calls, %6.2f s, %s %.2f CPU s, %.1f ms per 1000 "
                      "records; load average %.1f" % (limit, k["calls"], k["seconds"], compare.SOURCE, cpu,
                                                      1e6 * cpu / k["records"],
                                                      os.getloadavg()[0]), flush=True)
    finally:
        env.delete_stream()


if __name__ == "__main__":
    main()
