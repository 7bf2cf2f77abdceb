#!/usr/bin/python3
"""One worker's memory and its scaling over shards, on the local servers (docs/performance.md).

usage: budget_bench.py DDB2OS_BINARY memory|shards|backlog|all [--shards 1,8,50,100,200]
                       [--records N] [--per-shard N] [--repeat N] [--extra "--KEY VALUE ..."]
                       [--wrapper "valgrind --tool=callgrind ..."]

  memory  peak resident size (VmHWM from /proc) of one worker with default settings draining a
          preloaded backlog: 1 and 200 shards, with 1 KB records (50 000 on 1 shard, 100 000 on
          200) and with 1 MB records (40 on 1 shard, 200 on 200: one per shard, all read at once)
  shards  one worker draining N 1 KB records (default 50 000) on 1 to 200 shards: records/s from
          the first record read to the last checkpoint, CPU ms per 1000 records (supervisor and
          worker, /proc), GetRecords calls, and the most GetRecords one shard made in any one
          second (from the worker's debug log of every call's start; Kinesis allows 5)
  backlog the same, with the same backlog on every shard (--per-shard, default 500 records: 100 000
          on 200 shards), so that the cost per record and the cost per shard can be told apart:
          shards (fixed total) shows both, backlog only what a record costs at each shard count

Besides records/s and ddb2os's CPU (supervisor and worker, every thread, from
/proc/PID/task/*/schedstat in nanoseconds), each run reports the CPU the Kinesis emulator
(kinesalite, from its pid file under $D2O_SERVICES_DIR), PostgreSQL and OpenSearch used in the
same interval, GetRecords calls, records per call and the worker's VmHWM.

Every run uses a fresh kinesalite stream, application and index, stops by itself (each drain
has a time limit) and deletes what it made. The servers share the machine with the benchmark.

--wrapper runs ddb2os under a command (a profiler: callgrind follows the supervisor's fork into
the worker, so `--wrapper "valgrind --tool=callgrind --toggle-collect=worker_loop
--callgrind-out-file=DIR/cg.%p"` counts the worker's instructions per record and per shard count;
docs/performance.md, "Where a worker's CPU goes on 8 and on 200 shards"). Its CPU and records/s
then measure the profiler, not ddb2os.
"""
import argparse
import collections
import concurrent.futures
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import poolkit  # noqa: E402
from pool_bench import metric_total, proc_cpu_s, wait_drained  # noqa: E402

LEASE_MS = 10000
WRAPPER = []         # --wrapper: the command ddb2os runs under
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


def put(env, records, threads=4):
    """PutRecords in batches below 5 MiB (kinesalite's limit) and 500 records, a few batches at a
    time (every record is a different item, so their order across batches does not matter)."""
    batches, batch, size = [], [], 0
    for pk, data in records:
        if batch and (len(batch) == 500 or size + len(data) > 4 << 20):
            batches.append(batch)
            batch, size = [], 0
        batch.append((pk, data))
        size += len(data)
    if batch:
        batches.append(batch)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(env.put, batches):
            pass


def task_cpu_ns(pid):
    """CPU time of every thread of a live process, in ns (schedstat), 0 when it is gone."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def group_pids(pgid):
    """The processes of a server that scripts/services started: its process group, and their
    children (PostgreSQL's backends start sessions of their own)."""
    parent, group = {}, set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(d)] = int(fields[1])
                if int(fields[2]) == pgid:
                    group.add(int(d))
            except (OSError, ValueError, IndexError):
                pass
    grew = True
    while grew:
        more = {p for p, pp in parent.items() if pp in group} - group
        group |= more
        grew = bool(more)
    return sorted(group)


def server_pgids():
    """name -> process group of the local servers this benchmark talks to (pid files)."""
    run = os.path.join(os.environ.get("D2O_SERVICES_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", ".services"), "run")
    out = {}
    for name in ("kinesalite", "pg", "opensearch"):
        try:
            with open(os.path.join(run, name + ".pid")) as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return out


def servers_cpu_ns(pgids):
    return {name: sum(task_cpu_ns(p) for p in group_pids(g)) for name, g in pgids.items()}


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


def drain_runs(binaries, shards, records, extra=(), debug=False, timeout=900, step=0.2,
               repeat=1):
    """Preloads records on a fresh stream once, then drains it repeat times with each binary in
    turn (A, B, A, B, ...), each run with a fresh application (its leases start at
    TRIM_HORIZON) and index, so that the binaries read the very same backlog in the same
    minutes. Yields one row per run."""
    base = poolkit.Env("bbu", kinesis="D2O_TEST_KINESALITE")
    base.create_stream(shards)
    pgids = server_pgids()
    try:
        t_put = time.time()
        put(base, records)
        put_s = time.time() - t_put
        for _ in range(repeat):
            for binary in binaries:
                env = poolkit.Env("bbu", kinesis="D2O_TEST_KINESALITE")
                env.stream = base.stream
                r = drain_once(env, binary, shards, len(records), extra, debug, timeout, step,
                               pgids)
                # the build directory and the binary, so the rows of an A/B run say whose
                r.update(put_s=put_s, record_bytes=len(records[0][1]),
                         binary=os.path.join(os.path.basename(os.path.dirname(
                             os.path.abspath(binary))), os.path.basename(binary)))
                yield r
    finally:
        base.delete_stream()


def drain(binary, shards, records, extra=(), debug=False, timeout=900, step=0.2):
    runs = drain_runs([binary], shards, records, extra, debug, timeout, step)
    try:
        return next(runs)
    finally:
        runs.close()


def drain_once(env, binary, shards, n, extra, debug, timeout, step, pgids):
    port = poolkit.free_port()
    sup = None
    try:
        args = list(extra)
        if debug:
            args += ["--log-level", "debug", "--log-debug", "kinesis"]
        load = os.getloadavg()
        sup = poolkit.Supervisor(binary, env, "B", workers=1, lease_ms=LEASE_MS,
                                 metrics_port=port, extra=args, wrapper=WRAPPER)
        t0 = time.time()
        poolkit.wait_for("the first record read", lambda: (metric_total(
            port, "ddb2os_records_read_total") or 0) > 0, 180, step=0.05)
        t_first = time.time()
        pids = sup.worker_pids()
        cpu0 = sum(task_cpu_ns(p) for p in pids + [sup.proc.pid])
        srv0 = servers_cpu_ns(pgids)
        wait_drained(port, n, timeout, step=step)
        t_done = time.time()
        cpu = (sum(task_cpu_ns(p) for p in pids + [sup.proc.pid]) - cpu0) / 1e9
        srv = {k: (v - srv0.get(k, 0)) / 1e9 for k, v in servers_cpu_ns(pgids).items()}
        hwm = max(poolkit.proc_hwm_mib(p) for p in pids)
        calls = metric_total(port, "ddb2os_getrecords_calls_total") or 0
    finally:
        if sup:
            sup.stop()
        env.delete_index()
        env.forget_rows()
    out = {"shards": shards, "records": n, "startup_s": t_first - t0,
           "drain_s": t_done - t_first, "records_per_s": n / (t_done - t_first),
           "cpu_ms_per_1000": cpu * 1e6 / n, "hwm_mib": hwm, "calls": calls,
           "records_per_call": n / calls if calls else 0.0,
           "load": "%.1f %.1f %.1f" % load,
           "servers": " ".join("%s %.1f" % (k, v * 1e6 / n) for k, v in sorted(srv.items()))}
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


ROW = ("%(binary)s: %(shards)3d shards, %(records)6d records: %(records_per_s).0f records/s, "
       "%(cpu_ms_per_1000).1f CPU ms per 1000 records (servers' CPU ms per 1000 records: "
       "%(servers)s), %(calls).0f GetRecords (%(records_per_call).1f records a call), at most "
       "%(max_calls_per_shard_s)d calls per shard in any second, worker VmHWM %(hwm_mib).1f MiB; "
       "load average at start %(load)s")


def bench_shards(binaries, n_records, shard_counts, extra, repeat=1):
    rows = []
    for shards in shard_counts:
        for r in drain_runs(binaries, shards, records_of(n_records, KB_BLOB, "s"), extra,
                            debug=True, repeat=repeat):
            rows.append(r)
            print("shards: " + ROW % r, flush=True)
    return rows


def bench_backlog(binaries, per_shard, shard_counts, extra, repeat=1):
    """The same backlog on every shard: at most 200 000 records, bounded by the drain's limit."""
    rows = []
    for shards in shard_counts:
        n = per_shard * shards
        for r in drain_runs(binaries, shards, records_of(n, KB_BLOB, "p"), extra, debug=True,
                            step=0.5 if n > 20000 else 0.2, repeat=repeat):
            rows.append(r)
            print("backlog: " + ROW % r, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary", help="one binary, or several separated by commas: each "
                        "drains the same preloaded stream in turn (A/B runs)")
    parser.add_argument("what", choices=("memory", "shards", "backlog", "all"))
    parser.add_argument("--records", type=int, default=50000)
    parser.add_argument("--per-shard", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--shards", default="1,8,50,100,200")
    parser.add_argument("--extra", default="", help="more ddb2os run flags, in one string")
    parser.add_argument("--wrapper", default="", help="a command ddb2os runs under (a profiler)")
    a = parser.parse_args()
    WRAPPER[:] = a.wrapper.split()
    extra = a.extra.split()
    if a.what in ("memory", "all"):
        for binary in a.binary.split(","):
            bench_memory(binary, extra)
    counts = [int(x) for x in a.shards.split(",")]
    if a.what in ("shards", "all"):
        bench_shards(a.binary.split(","), a.records, counts, extra, a.repeat)
    if a.what in ("backlog", "all"):
        if a.per_shard * max(counts) > 200000:
            parser.error("--per-shard %d on %d shards: more than 200 000 records" % (
                a.per_shard, max(counts)))
        bench_backlog(a.binary.split(","), a.per_shard, counts, extra, a.repeat)


if __name__ == "__main__":
    main()
