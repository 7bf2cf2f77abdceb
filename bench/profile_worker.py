#!/usr/bin/python3
"""Where a ddb2os worker's CPU goes at full load (the profile in docs/performance.md).

usage: profile_worker.py DDB2OS_BINARY [--records N] [--shards S] [--out DIR]

Preloads about N change records (default 100 000) on S kinesalite shards (default 8) as
bench/peer/compare.py does, starts `ddb2os run` with 1 worker and, from the worker's first record
read to the end of the drain, samples the worker with `perf record` (999 Hz, DWARF call graphs).
Prints the top symbols by self time, the split by shared object, and the top entries by time
including callees. Needs perf and the local servers (scripts/services start pg opensearch
kinesalite; export scripts/services env).
"""
import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "peer"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import poolkit  # noqa: E402
from compare import opt, preload, run_ddb2os  # noqa: E402


def report(data, *args):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--percent-limit", "1.5"]
                         + list(args), capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if line and not line.startswith("#"))


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, args = sys.argv[1], sys.argv[2:]
    out_dir = opt(args, "--out", None) or tempfile.mkdtemp(prefix="ddb2os-profile-")
    os.makedirs(out_dir, exist_ok=True)  # perf record does not create it
    data = os.path.join(out_dir, "perf.data")
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
    print("\n== self time by symbol ==")
    print(report(data, "--no-children", "--sort", "dso,symbol", "-g", "none"))
    print("\n== self time by shared object ==")
    print(report(data, "--no-children", "--sort", "dso", "-g", "none"))
    print("\n== time including callees ==")
    print(report(data, "--children", "--sort", "symbol", "-g", "none"))
    print("\nperf data: %s" % data)


if __name__ == "__main__":
    main()
