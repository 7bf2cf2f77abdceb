#!/usr/bin/python3
"""Benchmarks of the worker pool on the local servers (numbers in docs/performance.md).

usage: pool_bench.py DDB2OS_BINARY failover|handoff|scaling|all [--records N] [--repeat K]
                    [--layout SHARDSxWORKERS]

  failover  kill -9 of a worker holding 2 of 8 shards (2 supervisors x 2 workers, lease 10 s):
            seconds from the kill to the last of its shards taken by a live worker, by the
            database clock (lease_events), K times
  handoff   SIGTERM of a supervisor: seconds from the signal to the last of its shards taken by
            the other supervisor's workers, K times
  scaling   a backlog of N change records (200-byte items, 4 changes per item, 20 % deletes) is
            read to its end: records/s from the first record read to the last checkpoint, CPU ms
            per 1000 records (supervisor + workers, /proc), peak worker RSS (VmHWM) and
            checkpoint transaction latency p50/p99 (bucket bounds from /metrics), for 1, 2 and 4
            workers on 8 shards and for 1, 16 and 64 shards (--layout 8x2: only that one, K
            times); on kinesalite, since kinesis-mock's PutRecords slows down as a stream grows
            (about 700 records/s at 20 000 records)

The servers are shared with the benchmark (2 cores in all), so records/s is a floor for this
machine, not for ddb2os alone. Each run uses a fresh stream, application and index.
"""
import os
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import poolkit  # noqa: E402

LEASE_MS = 10000


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def takeover_seconds(env, shards, t0, owner_like=None):
    cond = " AND owner LIKE '%s'" % owner_like if owner_like else ""
    return float(env.sql(
        "SELECT extract(epoch FROM max(at)) FROM lease_events WHERE application = '%s'"
        " AND shard_id IN (%s) AND event IN ('take', 'expire', 'steal') AND at > to_timestamp(%f)%s"
        % (env.app, ",".join("'%s'" % s for s in shards), t0, cond))) - t0


def bench_failover(binary, repeat):
    out = []
    for _ in range(repeat):
        env = poolkit.Env("bfo")
        env.create_stream(8)
        sups = [poolkit.Supervisor(binary, env, t, workers=2, lease_ms=LEASE_MS)
                for t in ("A", "B")]
        try:
            poolkit.wait_for("2 leases per worker", lambda: len(set(env.owners().values())) == 4
                             and len(env.owners()) == 8, 60)
            victim = sups[0].worker_pids()[0]
            lost = [s for s, o in env.owners().items() if o.endswith(":%d" % victim)]
            t0 = env.db_now()
            os.kill(victim, signal.SIGKILL)
            def taken_over():
                owners = env.owners()  # one snapshot: a lease may change hands between queries
                return all(s in owners and not owners[s].endswith(":%d" % victim) for s in lost)
            poolkit.wait_for("takeover", taken_over, LEASE_MS / 1000 + 20)
            out.append(takeover_seconds(env, lost, t0))
        finally:
            for s in sups:
                s.stop()
            env.delete_stream()
    print("failover after kill -9 (lease %.0f s): %s s; max %.2f s"
          % (LEASE_MS / 1000, ", ".join("%.2f" % x for x in out), max(out)))
    return out


def bench_handoff(binary, repeat):
    out = []
    for _ in range(repeat):
        env = poolkit.Env("bho")
        env.create_stream(8)
        a = poolkit.Supervisor(binary, env, "A", workers=2, lease_ms=LEASE_MS)
        b = poolkit.Supervisor(binary, env, "B", workers=2, lease_ms=LEASE_MS)
        try:
            poolkit.wait_for("2 leases per worker", lambda: len(set(env.owners().values())) == 4
                             and len(env.owners()) == 8, 60)
            mine = [s for s, o in env.owners().items() if o.startswith("B:")]
            t0 = env.db_now()
            b.signal(signal.SIGTERM)
            poolkit.wait_for("handoff", lambda: all(
                env.owners().get(s, "").startswith("A:") for s in mine), 30, step=0.02)
            out.append(takeover_seconds(env, mine, t0, "A:%"))
        finally:
            a.stop()
            b.stop()
            env.delete_stream()
    print("handoff after SIGTERM (4 shards): %s s; max %.2f s"
          % (", ".join("%.3f" % x for x in out), max(out)))
    return out


def metric_values(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    return [line for line in text.splitlines() if line.startswith(name)]


def metric_total(port, name):
    """A metric summed over its series, or None while the metrics server is not up yet."""
    try:
        return sum(float(x.rsplit(" ", 1)[1]) for x in metric_values(port, name))
    except OSError:
        return None


def wait_drained(port, n_records, timeout, step=0.05):
    """Until n_records were read and every read record is checkpointed. Each look renders the
    supervisor's /metrics, so the step adds CPU to what a benchmark measures."""
    poolkit.wait_for("the backlog read and checkpointed", lambda: drained(port, n_records),
                     timeout, step=step)


def drained(port, n_records):
    """What the metrics say: n_records read, none of them waiting for its checkpoint. A record
    read twice counts twice, so this may hold before the last record is checkpointed."""
    got = metric_total(port, "ddb2os_records_read_total")
    pend = metric_total(port, "ddb2os_pending_records")
    return got is not None and pend is not None and got >= n_records and pend == 0


def histogram_quantiles(lines, qs):
    """Quantiles (upper bucket bounds, seconds) of a Prometheus histogram summed over workers."""
    buckets, total = {}, 0.0
    for line in lines:
        if "_bucket{" in line:
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        elif "_count" in line:
            total += float(line.rsplit(" ", 1)[1])
    bounds = sorted(((float(k) if k != "+Inf" else float("inf")), v) for k, v in buckets.items())
    out = []
    for q in qs:
        need = q * total
        out.append(next((b for b, c in bounds if c >= need), float("inf")))
    return out


def proc_cpu_s(pid):
    """utime + stime of a live process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


proc_hwm_mib = poolkit.proc_hwm_mib


def scaling_run(binary, shards, workers, n_records):
    env = poolkit.Env("bsc", kinesis="D2O_TEST_KINESALITE")
    env.create_stream(shards)
    items = poolkit.Items()
    # 4 changes per item and one item in five deleted: 4.2 records per item, deletes included
    n_items = max(1, n_records * 5 // 21)
    batch = items.workload(n_items, 4, prefix="k")[:n_records]
    t_put = time.time()
    env.put(batch)
    put_s = time.time() - t_put
    port = 19500 + os.getpid() % 400
    t0 = time.time()
    sup = poolkit.Supervisor(binary, env, "S", workers=workers, lease_ms=LEASE_MS,
                             metrics_port=port, extra=["--get-records-limit", "5000"])

    try:
        poolkit.wait_for("the first record read", lambda: (metric_total(
            port, "ddb2os_records_read_total") or 0) > 0, 120, step=0.05)
        t_first = time.time()
        cpu0 = sum(proc_cpu_s(p) for p in sup.worker_pids() + [sup.proc.pid])
        wait_drained(port, len(batch), 900)
        t_done = time.time()
        pids = sup.worker_pids()
        cpu = sum(proc_cpu_s(p) for p in pids + [sup.proc.pid]) - cpu0
        rss = max(proc_hwm_mib(p) for p in pids)
        p50, p99 = histogram_quantiles(metric_values(port, "ddb2os_checkpoint_latency_seconds"),
                                       (0.5, 0.99))
    finally:
        sup.stop()
        env.delete_stream()
        env.delete_index()
        env.forget_rows()
    return {"shards": shards, "workers": workers, "records": len(batch),
            "startup_s": t_first - t0, "records_per_s": len(batch) / (t_done - t_first),
            "cpu_ms_per_1000": cpu * 1e6 / len(batch), "peak_rss_mib": rss,
            "ckpt_p50_ms": p50 * 1000, "ckpt_p99_ms": p99 * 1000, "put_s": put_s}


def bench_scaling(binary, n_records, layouts):
    rows = []
    for shards, workers in layouts:
        r = scaling_run(binary, shards, workers, n_records)
        rows.append(r)
        print("shards %(shards)2d workers %(workers)d: %(records)d records, %(records_per_s).0f "
              "records/s after the first read (%(startup_s).1f s from start), "
              "%(cpu_ms_per_1000).1f CPU ms per 1000 (ddb2os processes), peak worker RSS "
              "%(peak_rss_mib).1f MiB, checkpoint p50 <= %(ckpt_p50_ms).1f ms "
              "p99 <= %(ckpt_p99_ms).1f ms" % r, flush=True)
    return rows


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, what = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    n_records = int(args[args.index("--records") + 1]) if "--records" in args else 50000
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 3
    layouts = ((8, 1), (8, 2), (8, 4), (1, 1), (16, 2), (64, 2))
    if "--layout" in args:
        shards, workers = args[args.index("--layout") + 1].split("x")
        layouts = ((int(shards), int(workers)),) * repeat
    if what in ("failover", "all"):
        bench_failover(binary, repeat)
    if what in ("handoff", "all"):
        bench_handoff(binary, repeat)
    if what in ("scaling", "all"):
        bench_scaling(binary, n_records, layouts)


if __name__ == "__main__":
    main()
