#!/usr/bin/python3
"""Where a ddb2os worker's CPU goes at full load (the profile in docs/performance.md).

usage: profile_worker.py DDB2OS_BINARY [--records N] [--shards S] [--out DIR]
                         [--source dynamodb-streams]

Preloads about N change records (default 100 000) on S kinesalite shards (default 8) as
bench/peer/compare.py does, starts `ddb2os run` with 1 worker and, from the worker's first record
read to the end of the drain, samples the worker with `perf record` (999 Hz, DWARF call graphs).
Prints the top symbols by self time, the split by shared object, and the top entries by time
including callees. Needs perf and the local servers (scripts/services start pg opensearch
kinesalite; export scripts/services env).

With --source dynamodb-streams the worker reads a DynamoDB stream instead: N records shaped as
bench/ddbstreams_bench.py puts them (N/4 items put 4 times, NEW_AND_OLD_IMAGES, so an update
carries both images), served in pages of 1000 from one shard by the in-process fake of
tests/integration/ddbstreams_lineage_test.py, so that DynamoDB Local's own time is not in the
interval; the drain ends at the shard's checkpoint on its last record, and the CPU is the
worker's alone. Needs pg and opensearch only.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "peer"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import poolkit  # noqa: E402
from compare import opt, preload, run_ddb2os  # noqa: E402


def report(data, *args):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--percent-limit", "1.5"]
                         + list(args), capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if line and not line.startswith("#"))


def streams_records(n):
    """n stream records as bench/ddbstreams_bench.py's load makes them."""
    import ddbstreams_lineage_test as lineage

    def image(i, r):
        return {"book_id": {"S": "k-%06d" % i}, "title": {"S": "t%d-%d" % (i, r)},
                "round": {"N": str(r)}, "pages": {"N": str(100 + r)},
                "available": {"BOOL": r % 2 == 0}}
    n_items, out = max(1, n // 4), []
    for r in range(4):
        for i in range(n_items):
            seq = len(out) + 1
            d = {"ApproximateCreationDateTime": lineage.S + seq // 2000,
                 "Keys": {"book_id": {"S": "k-%06d" % i}}, "NewImage": image(i, r),
                 "SequenceNumber": "%021d" % seq, "SizeBytes": 120,
                 "StreamViewType": "NEW_AND_OLD_IMAGES"}
            if r:
                d["OldImage"] = image(i, r - 1)
            out.append({"eventID": "e%d" % seq, "eventName": "MODIFY" if r else "INSERT",
                        "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                        "awsRegion": "us-east-1", "dynamodb": d})
    return out


def profile_streams(binary, n_records, data):
    """Runs the worker on a fake DynamoDB stream under perf. Returns (drain s, worker CPU s)."""
    import ddbstreams_lineage_test as lineage
    from compare import proc_cpu_s
    env = poolkit.Env("prof")
    fake = lineage.FakeStreams(env.stream)
    recs = streams_records(n_records)
    fake.shards = {"shardId-7-b": (None, False, 1, recs)}
    fake.page = 1000
    port = 19500 + os.getpid() % 400
    sup = poolkit.Supervisor(binary, env, "P", workers=1, lease_ms=10000, metrics_port=port,
                             extra=["--source", "dynamodb-streams", "--streams-endpoint",
                                    fake.url, "--index-map", "%s=%s" % (env.stream, env.index),
                                    "--key-schema", "%s=book_id" % env.stream])
    perf = None
    try:
        poolkit.wait_for("the first record read", lambda: (lineage.scrape(port) or (0, 0))[0],
                         60, step=0.02)
        pid = sup.worker_pids()[0]
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "999", "--call-graph",
                                 "dwarf,8192", "-o", data, "-p", str(pid)])
        t0, cpu0 = time.time(), proc_cpu_s(pid)
        last = recs[-1]["dynamodb"]["SequenceNumber"]
        poolkit.wait_for("the last record checkpointed", lambda: env.sql(
            "SELECT checkpoint FROM leases WHERE application = '%s'" % env.app) == last,
            600, step=0.2)
        return len(recs), time.time() - t0, proc_cpu_s(pid) - cpu0
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=300)
        sup.stop()
        fake.server.shutdown()
        env.delete_index()
        env.forget_rows()


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, args = sys.argv[1], sys.argv[2:]
    out_dir = opt(args, "--out", None) or tempfile.mkdtemp(prefix="ddb2os-profile-")
    os.makedirs(out_dir, exist_ok=True)  # perf record does not create it
    data = os.path.join(out_dir, "perf.data")
    if opt(args, "--source", "kinesis") == "dynamodb-streams":
        n, drain_s, cpu_s = profile_streams(binary, int(opt(args, "--records", "20000")), data)
        print("drain of %d records: %.2f s, %.2f CPU s (worker, under perf): %.1f ms per 1000"
              % (n, drain_s, cpu_s, cpu_s * 1e6 / n))
        print_reports(data)
        return
    env = poolkit.Env("prof", kinesis="D2O_TEST_KINESALITE")
    n_records, _ = preload(env, int(opt(args, "--records", "100000")),
                           int(opt(args, "--shards", "8")))
    perf = []

    def start_perf(worker_pids):
        perf.append(subprocess.Popen(["perf", "record", "-q", "-F", "999", "--call-graph",
                                      "dwarf,8192", "-o", data, "-p", str(worker_pids[0])]))

    try:
        r = run_ddb2os(binary, env, n_records, 19500 + os.getpid() % 400, start_perf)
    finally:
        for p in perf:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
        env.delete_stream()
        env.delete_index()
    print("drain of %d records: %.2f s, %.2f CPU s (supervisor + worker, under perf)"
          % (n_records, r["drain_s"], r["cpu_s"]))
    print_reports(data)


def print_reports(data):
    print("\n== self time by symbol ==")
    print(report(data, "--no-children", "--sort", "dso,symbol", "-g", "none"))
    print("\n== self time by shared object ==")
    print(report(data, "--no-children", "--sort", "dso", "-g", "none"))
    print("\n== time including callees ==")
    print(report(data, "--children", "--sort", "symbol", "-g", "none"))
    print("\nperf data: %s" % data)


if __name__ == "__main__":
    main()
