#!/usr/bin/python3
"""A worker's CPU while OpenSearch refuses every connection and N items wait for their retry
(docs/performance.md, "Retries while OpenSearch is down").

usage: retry_bench.py DDB2OS_BINARY [OTHER_BINARY...] [--items 10000,100000] [--shards 32]
                      [--seconds 30] [--repeat 1]

For each N, each run and each binary (binaries alternate, so that they share the machine's load):
a fresh kinesalite stream of SHARDS shards holding N change records in all (about 200 bytes, each
a different item) and one supervisor with one worker. The worker keeps polling every shard, as
it does at the tail of a stream: each answer is a turn of its loop, and each turn asks the bulk
sink what is due. Its OpenSearch is tests/proxy/faultproxy.py
with down_seconds: the proxy closes every connection at once, so every bulk request fails as a
whole and its items wait for their retry (default retry settings: 100 ms base, 30 s cap).
max_pending_records and memory_budget are large enough for all N. Once the worker has read all N
records, its CPU (utime + stime from /proc) is sampled over SECONDS. Prints the worker's CPU in %
of one core, bulk requests tried per second and the 1-minute load average.

Needs pg, opensearch and kinesalite (scripts/services start; export scripts/services env). Every
run uses its own stream, application and index, stops by itself and deletes what it made.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import poolkit  # noqa: E402
from budget_bench import put  # noqa: E402
from pool_bench import metric_total, proc_cpu_s  # noqa: E402


def records(n, prefix):
    items = poolkit.Items()
    return [items.change("%s-%07d" % (prefix, i), "INSERT", {"title": "t%d" % i, "n": i})
            for i in range(n)]


def one_run(binary, n, shards, seconds):
    env = poolkit.Env("brt", kinesis="D2O_TEST_KINESALITE")
    proxy = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "..", "tests", "proxy", "faultproxy.py"),
         "--upstream", env.opensearch, "--max-seconds", str(seconds + 600),
         "--faults", json.dumps({"down_seconds": seconds + 600})],
        stdout=subprocess.PIPE, text=True)
    sup = None
    try:
        port = int(proxy.stdout.readline())
        env.create_stream(shards)
        put(env, records(n, "r"))
        metrics = poolkit.free_port()
        sup = poolkit.Supervisor(binary, env, "R", workers=1, lease_ms=10000, metrics_port=metrics,
                                 extra=["--opensearch-url", "http://127.0.0.1:%d" % port,
                                        "--max-pending-records", str(n + 1000),
                                        "--memory-budget", "2GiB"])
        poolkit.wait_for("all %d records read" % n, lambda: (
            metric_total(metrics, "ddb2os_records_read_total") or 0) >= n, 600, step=0.5)
        time.sleep(2)  # the last records' first attempt
        pid = sup.worker_pids()[0]
        req0 = metric_total(metrics, "ddb2os_bulk_requests_total") or 0
        cpu0, t0, load0 = proc_cpu_s(pid), time.time(), os.getloadavg()[0]
        time.sleep(seconds)
        cpu1, t1, load1 = proc_cpu_s(pid), time.time(), os.getloadavg()[0]
        req1 = metric_total(metrics, "ddb2os_bulk_requests_total") or 0
        pending = metric_total(metrics, "ddb2os_pending_records")
        return {"cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0), "req_s": (req1 - req0) / (t1 - t0),
                "load": (load0 + load1) / 2, "pending": pending}
    finally:
        if sup:
            sup.stop(timeout=30)
        proxy.terminate()
        proxy.wait(10)
        env.delete_stream()
        env.delete_index()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--items", default="10000,100000")
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    poolkit.need("D2O_TEST_KINESALITE")
    for n in [int(x) for x in args.items.split(",")]:
        for r in range(args.repeat):
            for binary in args.binaries:
                res = one_run(binary, n, args.shards, args.seconds)
                print("%-28s %7d items waiting on %d shards: worker CPU %5.1f %% of a core, %5.1f bulk "
                      "requests/s, %s pending records, load %.1f"
                      % (binary, n, args.shards, res["cpu_pct"], res["req_s"], res["pending"], res["load"]),
                      flush=True)


if __name__ == "__main__":
    main()
