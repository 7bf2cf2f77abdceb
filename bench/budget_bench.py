#!/usr/bin/python3
"""One worker's memory and its scaling over shards, on the local servers (docs/performance.md).

usage: budget_bench.py DDB2OS_BINARY memory|shards|all [--shards 1,8,50,100,200]
                       [--records N] [--extra "--KEY VALUE ..."]

  memory  peak resident size (VmHWM from /proc) of one worker with default settings draining a
          preloaded backlog: 1 and 200 shards, with 1 KB records (50 000 on 1 shard, 100 000 on
          200) and with 1 MB records (40 on 1 shard, 200 on 200: one per shard, all read at once)
  shards  one worker draining N 1 KB records (default 50 000) on 1 to 200 shards: records/s from
          the first record read to the last checkpoint, CPU ms per 1000 records (supervisor and
          worker, /proc), GetRecords calls, and the most GetRecords one shard made in any one
          second (from the worker's debug log of every call's start; Kinesis allows 5)

Every run uses a fresh kinesalite stream, application and index, stops by itself (each drain
has a time limit) and deletes what it made. The servers share the machine with the benchmark.
"""
import argparse
import collections
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import poolkit  # noqa: E402
from pool_bench import metric_total, proc_cpu_s, wait_drained  # noqa: E402

LEASE_MS = 10000
KB_BLOB = 800        # a 1 KB change record (with its keys and attributes)
MB_BLOB = 1000000    # a 1 MB change record, below Kinesis's 1 MiB


def records_of(n, blob_len, prefix):
    items = poolkit.Items()
    out = []
    for i in range(n):
        bid = "%s-%06d" % (prefix, i)
        blob = ("%06d" % i) * (blob_len // 6 + 1)
        out.append(items.change(bid, "INSERT", {"title": "t%d" % i, "blob": blob[:blob_len]}))
    return out


def put(env, records):
    """PutRecords in batches below 5 MiB (kinesalite's limit) and 500 records."""
    batch, size = [], 0
    for pk, data in records:
        if batch and (len(batch) == 500 or size + len(data) > 4 << 20):
            env.put(batch)
            batch, size = [], 0
        batch.append((pk, data))
        size += len(data)
    if batch:
        env.put(batch)


GET_LINE = re.compile(r"^(\S+)\s.*?\b(shardId-\d+) get_records_call:")


def calls_per_shard_second(log_path):
    """(calls, the most calls one shard made within any one second) from the debug log."""
    stamps = collections.defaultdict(list)
    with open(log_path, errors="replace") as f:
        for line in f:
            m = GET_LINE.match(line)
            if m:
                t = m.group(1)
                # 2026-12-02T02:41:07.123456Z
                secs = time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S"))
                frac = float("0" + t[19:].rstrip("Z")) if len(t) > 19 else 0.0
                stamps[m.group(2)].append(secs + frac)
    worst, total = 0, 0
    for ts in stamps.values():
        ts.sort()
        total += len(ts)
        j = 0
        for i in range(len(ts)):
            while ts[i] - ts[j] >= 1.0:
                j += 1
            worst = max(worst, i - j + 1)
    return total, worst


def drain(binary, shards, records, extra=(), debug=False, timeout=900):
    env = poolkit.Env("bbu", kinesis="D2O_TEST_KINESALITE")
    env.create_stream(shards)
    port = poolkit.free_port()
    sup = None
    try:
        t_put = time.time()
        put(env, records)
        put_s = time.time() - t_put
        args = list(extra)
        if debug:
            args += ["--log-level", "debug", "--log-debug", "kinesis"]
        sup = poolkit.Supervisor(binary, env, "B", workers=1, lease_ms=LEASE_MS,
                                 metrics_port=port, extra=args)
        t0 = time.time()
        poolkit.wait_for("the first record read", lambda: (metric_total(
            port, "ddb2os_records_read_total") or 0) > 0, 180, step=0.05)
        t_first = time.time()
        pids = sup.worker_pids()
        cpu0 = sum(proc_cpu_s(p) for p in pids + [sup.proc.pid])
        wait_drained(port, len(records), timeout, step=0.2)
        t_done = time.time()
        cpu = sum(proc_cpu_s(p) for p in pids + [sup.proc.pid]) - cpu0
        hwm = max(poolkit.proc_hwm_mib(p) for p in pids)
        calls = metric_total(port, "ddb2os_getrecords_calls_total") or 0
    finally:
        if sup:
            sup.stop()
        env.delete_stream()
        env.delete_index()
    out = {"shards": shards, "records": len(records), "put_s": put_s, "startup_s": t_first - t0,
           "drain_s": t_done - t_first, "records_per_s": len(records) / (t_done - t_first),
           "cpu_ms_per_1000": cpu * 1e6 / len(records), "hwm_mib": hwm, "calls": calls,
           "record_bytes": len(records[0][1])}
    if debug:
        out["logged_calls"], out["max_calls_per_shard_s"] = calls_per_shard_second(sup.log_path)
    return out


def bench_memory(binary, extra):
    cases = ((1, 50000, KB_BLOB), (200, 100000, KB_BLOB), (1, 40, MB_BLOB), (200, 200, MB_BLOB))
    rows = []
    for shards, n, blob in cases:
        r = drain(binary, shards, records_of(n, blob, "m"), extra)
        rows.append(r)
        print("memory: %(shards)3d shards, %(records)6d records of %(record_bytes)7d bytes: "
              "worker VmHWM %(hwm_mib).1f MiB (%(records_per_s).0f records/s, drain "
              "%(drain_s).1f s)" % r, flush=True)
    return rows


def bench_shards(binary, n_records, shard_counts, extra):
    rows = []
    for shards in shard_counts:
        r = drain(binary, shards, records_of(n_records, KB_BLOB, "s"), extra, debug=True)
        rows.append(r)
        print("shards: %(shards)3d shards, %(records)d records: %(records_per_s).0f records/s, "
              "%(cpu_ms_per_1000).1f CPU ms per 1000 records, %(calls).0f GetRecords, at most "
              "%(max_calls_per_shard_s)d calls per shard in any second, worker VmHWM "
              "%(hwm_mib).1f MiB" % r, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("what", choices=("memory", "shards", "all"))
    parser.add_argument("--records", type=int, default=50000)
    parser.add_argument("--shards", default="1,8,50,100,200")
    parser.add_argument("--extra", default="", help="more ddb2os run flags, in one string")
    a = parser.parse_args()
    extra = a.extra.split()
    if a.what in ("memory", "all"):
        bench_memory(a.binary, extra)
    if a.what in ("shards", "all"):
        bench_shards(a.binary, a.records, [int(x) for x in a.shards.split(",")], extra)


if __name__ == "__main__":
    main()
