#!/usr/bin/python3
"""ddb2os and a KCL consumer side by side on one preloaded stream (numbers in docs/performance.md).

usage: compare.py DDB2OS_BINARY [--records N] [--shards S] [--limit L] [--kcl-heap SIZE]
                  [--skip-build] [--only ddb2os] [--repeat R] [--os-alone] [--pin] [--trace]
                  [--set KEY=VALUE]... [--b BINARY] [--b-set KEY=VALUE]...
                  [--source kinesalite|kinesis-mock|replay]

A fresh kinesalite stream of S shards (default 8) is loaded with about N change records (default
100 000; 200-byte items created, updated three times, one in five deleted: the workload of
bench/pool_bench.py). Then, one after the other and each into its own fresh index:

  ddb2os  `ddb2os run` with 1 worker (PostgreSQL holds its leases and checkpoints)
  kcl     bench/peer (KCL 3.5.1, built here with `mvn package`; DynamoDB Local holds its leases)

Both read the same records from TRIM_HORIZON with the same GetRecords limit L (default 1000:
ddb2os's --get-records-limit, KCL's maxRecords). Kinesalite answers on one Node thread, so 8
concurrent calls of 5000 records each took 25-30 s on this shared machine, at KCL's 30 s request
timeout: KCL then cancelled and retried them while kinesalite still worked on the cancelled ones,
and never got an answer (docs/performance.md, "ddb2os and KCL side by side").

For each the script prints the time from start to the first record read, records/s from the
first read to the last checkpoint, records per CPU second over that interval (utime + stime
from /proc: the supervisor and its workers for ddb2os, the JVM for KCL), peak RSS (VmHWM; for
ddb2os the sum over supervisor and worker), and checks the index against the workload's model
(document count; bulk items refused). Every endpoint is on
127.0.0.1 (scripts/services start pg opensearch kinesalite dynamodb; then export
scripts/services env); the credentials are dummies.

--only ddb2os skips the KCL consumer (and its build). --repeat R runs the whole comparison R
times, each on a freshly loaded stream, and prints every run (take the best of a shared machine),
then the table rows of docs/performance.md (with the 1-minute load average at the start and the
end of each drain). The script stops by itself: ddb2os must read within 120 s and drain within
900 s; KCL must read within 300 s of its start and finish within 900 s (the JVM stops itself
then; the script kills it 60 s later if not). A run whose KCL did not finish prints why (with
the GetRecords calls KCL gave up on, from its log) and the script exits 1.
--os-alone adds, right after ddb2os's drain, OpenSearch alone on the same bodies: the records of
the stream through `ddb2os transform` (the very bulk items the sink sends, versions included),
posted as _bulk bodies of about 5 MiB over 2 connections into a fresh index; records/s of that
next to ddb2os's end-to-end records/s. Then the source alone: one bare client (botocore, no
transform, no bulk) reads the same stream again from TRIM_HORIZON with the same Limit, shard
after shard, as fast as the emulator answers. Then both at once: OpenSearch alone and the source
alone at the same time (the seconds until both are done), which is the most any consumer of
this stream can do where the emulator and OpenSearch share the machine's cores.

For each phase (ddb2os's drain, OpenSearch alone, the source alone) it also prints the CPU
seconds the local servers used (kinesalite, OpenSearch, PostgreSQL: utime + stime from /proc of
the processes in $D2O_SERVICES_DIR/run/*.pid, PostgreSQL with its backends): on a machine where
they share the cores with ddb2os, end to end can be no faster than the sum of every process's
CPU over the number of cores, whatever the consumer does (docs/performance.md, "End to end
against OpenSearch alone"); and each server's CPU milliseconds per 1000 records of the phase
(OpenSearch's on ddb2os's bulk bodies next to its own on the 5 MiB ones). With --os-alone a
second table sums it up per run: ddb2os's drain against OpenSearch alone, the source alone and
both at once, and those CPU costs.

With --os-alone the script first posts a fifth of the workload to a throwaway index, untimed,
so that OpenSearch's JIT warm-up after a start does not land on the first drain.

--pin runs everything with OpenSearch on the last CPU and kinesalite, PostgreSQL, ddb2os and
the script's own clients on the others (sched_setaffinity of every thread; put back on all CPUs
at the end): the stream is then not served from the search node's cores, as in production.
--trace runs the worker at log level debug for kinesis and sink and sums up its log: GetRecords
calls (records a call, Limit asked, empty answers) and bulk requests (items, bytes, in flight,
how long the first item waited); and prints, for ddb2os's drain and OpenSearch alone, the share
of a CPU each server and ddb2os used in every half second (from /proc), which shows which side
waited for the other.
--source kinesis-mock puts the stream on kinesis-mock instead of kinesalite (both started by
scripts/services; kinesis-mock spent about ten times kinesalite's CPU per record read,
docs/performance.md).
--source replay loads the stream on kinesalite as usual (so OpenSearch alone gets the same bodies
from `ddb2os transform`), then starts bench/peer/replay_source.py, which reads the whole stream
once from kinesalite, keeps every record's JSON text in memory and serves it on another port:
ddb2os and the source alone read from that replay, whose own CPU is counted as "replay"
(docs/performance.md, "A source that costs almost nothing"); it needs --only ddb2os.
ddb2os's drain ends at its last checkpoint, seen by polling /metrics 4 times a second until
every record is read and 50 times a second from then on. --set KEY=VALUE (repeatable) adds a setting to ddb2os's
command line. --b BINARY and/or --b-set KEY=VALUE (repeatable) add a second ddb2os drain of the
same stream (its own application name and index) with that binary and those settings; the
two drains take turns going first from run to run, so an A/B comparison sees the same records,
the same phase order and the same minutes.
"""
import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import botocore.session

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import poolkit  # noqa: E402
from pool_bench import (metric_total, metric_values, proc_cpu_s, proc_hwm_mib,  # noqa: E402
                        wait_drained)

TIME_LIMIT_S = 900
# KCL reads its first record 80-140 s after start on this machine; without one by then the run
# is stopped rather than left to the whole time limit.
KCL_FIRST_READ_LIMIT_S = 300


def opt(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def live_documents(env, index):
    env.os_call("POST", "/%s/_refresh" % index)
    status, res = env.os_call("GET", "/%s/_count" % index)
    return res["count"] if status == 200 else 0


def preload(env, n_target, shards, keep=None):
    """A fresh stream of about n_target change records; returns (records, live items). keep, a
    list, receives the records put (partition key, data)."""
    items = poolkit.Items()
    n_items = max(5, int(n_target / 4.2))  # 4 changes per item and 1 delete per 5 items
    batch = items.workload(n_items, 4, prefix="k")
    live = sum(1 for _, doc in items.state.values() if doc is not None)
    env.create_stream(shards)
    t = time.time()
    env.put(batch)
    if keep is not None:
        keep.extend(batch)
    print("preloaded %d records (%d items, %d live at the end) on %d shards in %.1f s"
          % (len(batch), n_items, live, shards, time.time() - t), flush=True)
    return len(batch), live


def load_now():
    return os.getloadavg()[0]


SERVERS = ("kinesalite", "kinesis-mock", "replay", "opensearch", "pg")
# --source: the emulator the stream lives on, and the variable of scripts/services env that
# gives its URL (replay: the stream is loaded on kinesalite, then served by replay_source.py).
SOURCES = {"kinesalite": "D2O_TEST_KINESALITE", "kinesis-mock": "D2O_TEST_KINESIS_MOCK",
           "replay": "D2O_TEST_KINESALITE"}
REPLAY = {}  # --source replay: "pid" of the running replay_source.py
SOURCE = "kinesalite"
TRACE = False  # --trace


def source_env(tag):
    """A poolkit.Env on --source's emulator."""
    return poolkit.Env(tag, kinesis=SOURCES[SOURCE])


def server_pids(name):
    """The pids of a local server this script talks to, from $D2O_SERVICES_DIR/run/NAME.pid
    (PostgreSQL with its backends); OSError when its pid file is not there (servers started
    some other way; replay: while replay_source.py runs)."""
    if name == "replay":
        if "pid" not in REPLAY:
            raise OSError("replay_source.py is not running")
        return [REPLAY["pid"]]
    run = os.path.join(os.environ.get("D2O_SERVICES_DIR") or
                       os.path.join(HERE, "..", "..", ".services"), "run")
    with open(os.path.join(run, name + ".pid")) as f:
        pids = [int(f.read())]
    if name == "pg":
        pids += [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(pids[0])], capture_output=True, text=True).stdout.split()]
    return pids


def server_cpu():
    """CPU seconds used so far by each local server this script talks to (None when its pid file
    is not there: servers started some other way). PostgreSQL counts with its backends."""
    out = {}
    for name in SERVERS:
        try:
            out[name] = sum(proc_cpu_s(p) for p in server_pids(name))
        except (OSError, ValueError):
            out[name] = None
    return out


def set_affinity(pid, cpus):
    """Every thread of pid on cpus (a thread that ends meanwhile is skipped)."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


def pin(on):
    """--pin: OpenSearch on the last CPU, everything else of the run (kinesalite, PostgreSQL
    and the backends it forks, this script and what it starts: ddb2os, the posters, the bare
    reader) on the others; on=False puts every one back on all CPUs. Where the stream is not
    served from the search cluster's cores, as in production."""
    cpus = sorted(os.sched_getaffinity(0) if on else range(os.cpu_count()))
    if on and len(cpus) < 2:
        sys.exit("--pin needs at least 2 CPUs")
    search, rest = ({cpus[-1]}, set(cpus[:-1])) if on else (set(cpus), set(cpus))
    for name in SERVERS:
        try:
            pids = server_pids(name)
        except (OSError, ValueError) as e:
            if name == "replay" or (name != SOURCE and name in SOURCES):
                continue  # the other emulator, not running; the replay starts later, pinned
                # as this script's child
            sys.exit("--pin: no pid of %s (%s): start the servers with scripts/services"
                     % (name, e))
        for p in pids:
            set_affinity(p, search if name == "opensearch" else rest)
    os.sched_setaffinity(0, rest)
    if on:
        print("pinned: OpenSearch on CPU %s, kinesalite, PostgreSQL, ddb2os and this script on "
              "CPU %s" % (",".join(map(str, sorted(search))), ",".join(map(str, sorted(rest)))),
              flush=True)


def server_cpu_used(before):
    """"kinesalite 12.1, opensearch 16.0, pg 0.8" CPU seconds since before (server_cpu())."""
    return cpu_text(server_cpu_delta(before))


def server_cpu_delta(before):
    """name -> CPU seconds each server used since before (server_cpu())."""
    now = server_cpu()
    return {k: now[k] - before[k] for k in SERVERS
            if before.get(k) is not None and now.get(k) is not None}


def cpu_text(delta):
    return ", ".join("%s %.1f" % (k, delta[k]) for k in SERVERS if k in delta)


def ms_1000(delta, name, n):
    """A server's CPU milliseconds per 1000 records of a phase, as text."""
    if name not in delta or not n:
        return "?"
    ms = 1e6 * delta[name] / n
    return "%.0f" % ms if ms >= 10 else "%.1f" % ms  # the replay's fraction of a ms


RATIO_ROWS = []


def per_1000(delta, name, n):
    """"opensearch 172 ms per 1000 records": a server's CPU per 1000 records of a phase."""
    if name not in delta or not n:
        return "%s ? ms per 1000 records" % name
    return "%s %.0f ms per 1000 records" % (name, 1e6 * delta[name] / n)


class CpuSampler:
    """--trace: the share of a CPU each server (and each of `extra`'s named pid lists) used in
    every SAMPLE_S of a phase, from /proc, to show where one side waited for the other."""
    SAMPLE_S = 0.5

    def __init__(self, extra=None):
        self.groups = {}
        for name in SERVERS:
            try:
                self.groups[name] = server_pids(name)
            except (OSError, ValueError):
                pass
        self.groups.update(extra or {})
        self.rows = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def cpu(self):
        out = {}
        for name, pids in self.groups.items():
            total = 0.0
            for p in pids:
                try:
                    total += proc_cpu_s(p)
                except (OSError, ValueError):
                    pass
            out[name] = total
        return out

    def run(self):
        last, t_last = self.cpu(), time.time()
        while not self.done.wait(self.SAMPLE_S):
            now, t = self.cpu(), time.time()
            self.rows.append({k: (now[k] - last[k]) / (t - t_last) for k in now})
            last, t_last = now, t

    def stop(self):
        """'name 93 91 88 ... (mean 90)' per group, in % of one CPU per SAMPLE_S."""
        self.done.set()
        self.thread.join()
        lines = []
        for name in self.groups:
            xs = [100 * r[name] for r in self.rows]
            if not xs or max(xs) < 1:
                continue
            lines.append("%-12s %s (mean %.0f %%)" % (name, " ".join("%3.0f" % x for x in xs),
                                                     sum(xs) / len(xs)))
        return ("%% of a CPU every %.1f s:\n       " % self.SAMPLE_S) + "\n       ".join(lines)


def trace_summary(log_path):
    """What the worker's debug log (log_debug kinesis,sink) says about its GetRecords calls and
    bulk requests: counts, sizes, and the bulk requests in flight when each was sent."""
    calls, records, limits, bulks, in_flight, waited = [], [], [], [], [], []
    events, first_read = [], None  # (time, +1 sent / -1 answered); the first records' time
    with open(log_path, errors="replace") as f:
        for line in f:
            t = log_time(line)
            if t is not None and first_read is None and re.search(r"get_records: [1-9]", line):
                first_read = t
            if t is not None and "bulk_answered" in line:
                events.append((t, -1))
            if "get_records_call" in line:
                m = re.search(r"Limit (\d+)", line)
                if m:
                    limits.append(int(m.group(1)))
            elif "get_records" in line and "get_records_capped" not in line:
                m = re.search(r"(\d+) records in (\d+) ms", line)
                if m:
                    records.append(int(m.group(1)))
                    calls.append(int(m.group(2)))
            elif "bulk_sent" in line:
                m = re.search(r"(\d+) items, (\d+) bytes, (\d+) in flight, the first one "
                              r"waited (-?\d+) ms", line)
                if m:
                    if t is not None:
                        events.append((t, 1))
                    bulks.append((int(m.group(1)), int(m.group(2))))
                    in_flight.append(int(m.group(3)))
                    waited.append(int(m.group(4)))

    def mean(xs):
        return sum(xs) / len(xs) if xs else 0.0

    def median(xs):
        return sorted(xs)[len(xs) // 2] if xs else 0

    items = [b[0] for b in bulks]
    sizes = [b[1] for b in bulks]
    return ("GetRecords: %d calls, %.0f records a call (median %d, %d empty), Limit asked "
            "%.0f on average, %.0f ms to answer; bulk requests: %d, %.0f items (median %d, "
            "largest %d), %.0f KB (median %.0f, largest %.0f) each, %.2f in flight once sent, "
            "first item waited %.0f ms (median %d)"
            % (len(records), mean(records), median(records), records.count(0), mean(limits),
               mean(calls), len(bulks), mean(items), median(items), max(items or [0]),
               mean(sizes) / 1000, median(sizes) / 1000, max(sizes or [0]) / 1000,
               mean(in_flight), mean(waited), median(waited))) + in_flight_share(events, first_read)


def log_time(line):
    """The seconds of a worker log line's timestamp (2026-12-02T17:23:35.436Z ...), or None."""
    m = re.match(r"\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d+)Z", line)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None


def in_flight_share(events, start):
    """'; bulk requests in flight from the first records read to the last answer: 0 for x %,
    1 for y %, 2 for z %' (OpenSearch alone keeps 2 in flight until its last bodies)."""
    if not events or start is None:
        return ""
    events.sort()
    share, n, t_last = {}, 0, start
    for t, d in events:
        share[n] = share.get(n, 0.0) + max(0.0, t - t_last)
        n, t_last = n + d, max(t, t_last)
    total = t_last - start
    if total <= 0:
        return ""
    return ("; bulk requests in flight over the %.1f s from the first records read to the last "
            "answer: %s" % (total, ", ".join("%d for %.0f %%" % (k, 100 * v / total)
                                            for k, v in sorted(share.items()))))


def run_ddb2os(binary, env, n_records, port, on_first_read=None, limit=5000, extra=(),
               trace=False, task="S"):
    """ddb2os run, 1 worker, on env's stream into env's index, until the stream is drained and
    checkpointed. extra: more command-line settings; trace: the worker's debug log of its
    GetRecords calls and bulk requests, summed up in the result's "trace"."""
    t0 = time.time()
    extra = ["--get-records-limit", str(limit)] + list(extra)
    if trace:
        extra += ["--log-level", "debug", "--log-debug", "kinesis,sink"]
    sup = poolkit.Supervisor(binary, env, task, workers=1, lease_ms=10000, metrics_port=port,
                             extra=extra)

    try:
        poolkit.wait_for("ddb2os's first record read", lambda: (metric_total(
            port, "ddb2os_records_read_total") or 0) > 0, 120, step=0.05)
        t_first = time.time()
        load0 = load_now()
        pids = sup.worker_pids() + [sup.proc.pid]
        cpu0 = sum(proc_cpu_s(p) for p in pids)
        sup0 = proc_cpu_s(sup.proc.pid)
        servers0 = server_cpu()
        if on_first_read:
            on_first_read(sup.worker_pids())

        sampler = CpuSampler({"ddb2os": pids}) if trace else None
        # Looks at /metrics 4 times a second while records are still to be read (the supervisor
        # renders each one), then 50 times a second for the last checkpoint, so the drain's end
        # is not read up to 0.25 s late (5 % of a 5 s drain).
        poolkit.wait_for("the backlog read", lambda: (metric_total(
            port, "ddb2os_records_read_total") or 0) >= n_records, TIME_LIMIT_S, step=0.25)
        wait_drained(port, n_records, TIME_LIMIT_S, step=0.02)
        t_done = time.time()
        if sampler:
            timeline = sampler.stop()
        servers = server_cpu_delta(servers0)
        cpu = sum(proc_cpu_s(p) for p in pids) - cpu0
        sup_cpu = proc_cpu_s(sup.proc.pid) - sup0
        rss = sum(proc_hwm_mib(p) for p in pids)
        refused = metric_total(port, "ddb2os_dlq_writes_total") or 0
        stale = sum(float(x.rsplit(" ", 1)[1]) for x in
                    metric_values(port, "ddb2os_documents_total") if 'outcome="stale"' in x)
    finally:
        sup.stop()
    out = {"first_read_s": t_first - t0, "drain_s": t_done - t_first, "cpu_s": cpu,
           "of_which": ", supervisor %.2f" % sup_cpu, "rss_mib": rss, "refused": refused,
           "load": (load0, load_now()), "servers": cpu_text(servers), "server_cpu": servers,
           "stale": stale}
    if trace:
        out["trace"] = trace_summary(sup.log_path) + "\n       " + timeline
    return out


def bulk_bodies(binary, env, batch, index, connections=2, by="document",
                limit=5 * 1024 * 1024):
    """The records through `ddb2os transform` into index, as _bulk bodies of about limit bytes
    for each of `connections` posters: by="document" gives every item of one document to the
    same poster, in stream order, so each document's changes are applied in order, one body
    after the other, as ddb2os applies them; by="body" cuts the items in stream order and deals
    the bodies out in turn (consecutive changes of a document then race on two connections)."""
    data = b"".join(d.replace(b"\n", b" ") + b"\n" for _, d in batch)
    penv = dict(os.environ)
    penv.update(poolkit.ENV_AWS)
    out = subprocess.run([binary, "transform", "--index-map", "books=%s" % index],
                         input=data, env=penv, capture_output=True, check=True).stdout
    lines = out.splitlines(keepends=True)
    items, i = [], 0
    while i < len(lines):
        # an index item is two lines (action, document), a delete item one
        n = 1 if lines[i].startswith(b'{"delete"') else 2
        items.append(lines[i:i + n])
        i += n
    streams = [[] for _ in range(connections)]
    if by == "document":
        for item in items:
            doc_id = json.loads(item[0])
            doc_id = list(doc_id.values())[0]["_id"]
            streams[zlib.crc32(doc_id.encode()) % connections].append(item)
    else:
        streams = [items]
    cut = []
    for stream in streams:
        bodies, cur, size = [], [], 0
        for item in stream:
            cur += item
            size += sum(len(x) for x in item)
            if size >= limit:
                bodies.append(b"".join(cur))
                cur, size = [], 0
        if cur:
            bodies.append(b"".join(cur))
        cut.append(bodies)
    if by == "document":
        return cut
    return [cut[0][k::connections] for k in range(connections)]


# What ddb2os posts to (include/d2o/bulk.h, D2O_BULK_PATH): OpenSearch alone sends the same
# requests, response filter included (it lowered OpenSearch's CPU per document by up to a
# tenth in bench/peer/os_bodies.py).
BULK_PATH = "/_bulk?filter_path=errors,items.*.status,items.*.error,items.*._id"


def os_alone(binary, env, batch, connections=2, suffix="-alone", bodies=None, by="document",
             path=BULK_PATH):
    """OpenSearch alone on ddb2os's bodies: records/s over `connections` parallel posters, each
    posting its bodies one after the other (bulk_bodies()). bodies: made beforehand, so they are
    not timed."""
    index = env.index + suffix
    if bodies is None:
        bodies = bulk_bodies(binary, env, batch, index, connections, by)
    errors = []
    stale = [0]

    def poster(mine):
        for body in mine:
            req = urllib.request.Request(env.opensearch + path, data=body, method="POST",
                                         headers={"Content-Type": "application/x-ndjson"})
            with urllib.request.urlopen(req, timeout=300) as r:
                res = json.loads(r.read())
            if res["errors"]:
                status = [list(i.values())[0]["status"] for i in res["items"]]
                stale[0] += status.count(409)
                errors.extend(i for i in res["items"] if list(i.values())[0]["status"] not in
                              (200, 201, 404, 409))

    threads = [threading.Thread(target=poster, args=(mine,)) for mine in bodies]
    servers0 = server_cpu()
    sampler = CpuSampler() if TRACE else None
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    secs = time.time() - t
    timeline = sampler.stop() if sampler else ""
    servers = server_cpu_delta(servers0)
    env.os_call("DELETE", "/%s" % index)
    assert not errors, errors[:3]
    return {"records_per_s": len(batch) / secs, "seconds": secs,
            "bodies": sum(len(b) for b in bodies),
            "body_bytes": sum(len(x) for b in bodies for x in b),
            "servers": cpu_text(servers), "server_cpu": servers, "stale": stale[0],
            "timeline": timeline}


def source_alone(env, limit):
    """The source alone: one bare client reads every shard of the stream from TRIM_HORIZON to
    its tip with GetRecords of the given Limit, one call at a time, nothing else done with the
    records. Returns records, calls, seconds, the servers' CPU."""
    servers0 = server_cpu()
    t = time.time()
    records = calls = 0
    for shard in env.shards():
        it = env.kinesis.get_shard_iterator(StreamName=env.stream, ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            res = env.kinesis.get_records(ShardIterator=it, Limit=limit)
            calls += 1
            records += len(res["Records"])
            if not res["Records"]:
                break  # at the tip (kinesalite keeps an open shard's iterator)
            it = res.get("NextShardIterator")
    secs = time.time() - t
    servers = server_cpu_delta(servers0)
    return {"records": records, "calls": calls, "seconds": secs,
            "servers": cpu_text(servers), "server_cpu": servers}


def both_alone(binary, env, batch, limit):
    """OpenSearch alone and the source alone at the same time, each as above: the seconds until
    both are done, what the machine allows any consumer that reads this stream from this
    emulator and writes these bodies to this node, with nothing in between."""
    out = {}
    bodies = bulk_bodies(binary, env, batch, env.index + "-both", 2)
    sink = threading.Thread(target=lambda: out.update(os_alone(binary, env, batch,
                                                               suffix="-both", bodies=bodies)))
    servers0 = server_cpu()
    t = time.time()
    sink.start()
    source_alone(env, limit)
    sink.join()
    servers = server_cpu_delta(servers0)
    return {"seconds": time.time() - t, "servers": cpu_text(servers), "server_cpu": servers,
            "sink_seconds": out.get("seconds", float("nan"))}


PREFETCH = "software.amazon.kinesis.retrieval.polling.PrefetchRecordsPublisher"


def kcl_fetch_failures(log_path):
    """GetRecords calls KCL gave up on (its log): calls cut by its request timeout
    (PollingConfig.kinesisRequestTimeout, 30 s) or failed otherwise, and subscriptions restarted
    after a minute without an answer."""
    failed = restarted = 0
    with open(log_path, errors="replace") as f:
        for line in f:
            if "Exception thrown while fetching records" in line or \
                    "Timeout occurred while waiting for response from Kinesis" in line:
                failed += 1
            elif "Cancelling subscription, and restarting" in line:
                restarted += 1
    return failed, restarted


def run_kcl(env, n_records, heap, index, limit):
    app = env.app + "-kcl"
    jar_dir = os.path.join(HERE, "target")
    cp = os.path.join(jar_dir, "classes") + ":" + os.path.join(jar_dir, "lib", "*")
    args = ["java", "-Xmx" + heap, "-Daws.cborEnabled=false", "-Daws.region=us-east-1",
            "-Dpeer.maxRecords=%d" % limit, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            # its GetRecords timeouts are logged at info
            "-Dorg.slf4j.simpleLogger.log." + PREFETCH + "=info",
            "-cp", cp, "ddb2os.peer.PeerConsumer", env.stream, app, index, "book_id",
            str(n_records), str(TIME_LIMIT_S)]
    penv = dict(os.environ)
    penv.update(poolkit.ENV_AWS)
    penv["AWS_EC2_METADATA_DISABLED"] = "true"
    log_path = os.path.join(env.logdir, "kcl.log")
    log = open(log_path, "wb")
    t0 = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=penv, text=True)
    out = {"bulk_errors": None}
    stopped = []

    def watchdog(why):
        if proc.poll() is None:
            stopped.append(why)
            proc.kill()

    # The JVM stops itself after TIME_LIMIT_S; these stop it when it does not.
    no_first = threading.Timer(KCL_FIRST_READ_LIMIT_S, watchdog,
                               ("no record read %d s after start" % KCL_FIRST_READ_LIMIT_S,))
    overall = threading.Timer(TIME_LIMIT_S + 60, watchdog,
                              ("still running %d s after start" % (TIME_LIMIT_S + 60),))
    no_first.start()
    overall.start()
    try:
        for line in proc.stdout:
            word = line.split()
            if not word:
                continue
            if word[0] == "first_read":
                no_first.cancel()
                out["first_read_s"] = int(word[1]) / 1000.0 - t0
                cpu0 = proc_cpu_s(proc.pid)
                t_first = time.time()
                load0 = load_now()
            elif word[0] == "bulk_errors":
                out["bulk_errors"] = int(word[1])
            elif word[0] == "done":
                t_done = int(word[1]) / 1000.0
                out["drain_s"] = t_done - t_first
                out["cpu_s"] = proc_cpu_s(proc.pid) - cpu0
                out["rss_mib"] = proc_hwm_mib(proc.pid)
                out["load"] = (load0, load_now())
            elif word[0] == "timeout":
                stopped.append("read only %s of %d records in %d s" % (word[1], n_records,
                                                                        TIME_LIMIT_S))
    finally:
        no_first.cancel()
        overall.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    failed, restarted = kcl_fetch_failures(log_path)
    out["of_which"] = "" if not (failed or restarted) else \
        ", %d GetRecords failed, %d restarts" % (failed, restarted)
    if "drain_s" not in out:
        raise KclFailed("KCL %s (exit %s; %d GetRecords failed, %d subscriptions restarted "
                        "after a minute without an answer; log: %s)"
                        % (stopped[0] if stopped else "exited before the drain",
                           proc.returncode, failed, restarted, log_path))
    return out


class KclFailed(Exception):
    pass


def print_row(name, n_records, r):
    r["records_per_s"] = n_records / r["drain_s"]
    r["records_per_cpu_s"] = n_records / r["cpu_s"]
    print("%-6s first read %6.1f s after start; drain %6.2f s: %8.0f records/s, %8.0f records per"
          " CPU-second (%.2f CPU s%s), peak RSS %7.1f MiB; %s documents, %s; load average "
          "%.1f-%.1f" % (name, r["first_read_s"], r["drain_s"], r["records_per_s"],
                         r["records_per_cpu_s"], r["cpu_s"], r.get("of_which", ""), r["rss_mib"],
                         r["documents"], r["problems"], r["load"][0], r["load"][1]), flush=True)


def num(x):
    """1 234 567, as docs/performance.md writes numbers."""
    return "{:,}".format(int(round(x))).replace(",", " ")


def table_rows(run, results, live, limit, errors, names):
    """docs/performance.md's table rows for one run."""
    rows = []
    for name, label in (("ddb2os", "ddb2os"), ("ddb2os-b", "ddb2os B"), ("kcl", "KCL")):
        if name not in names:
            continue
        r = results.get(name)
        if r is None:
            rows.append("| %d | %s | %d | did not finish: %s | | | | | |"
                        % (run, label, limit, errors.get(name, "not run")))
            continue
        rows.append("| %d | %s | %d | %.1f s | %s | **%s** (%.2f CPU s%s) | **%.1f MiB** "
                    "| %s of %s | %.1f–%.1f |"
                    % (run, label, limit, r["first_read_s"], num(r["records_per_s"]),
                       num(r["records_per_cpu_s"]), r["cpu_s"], r.get("of_which", ""),
                       r["rss_mib"], num(r["documents"]), num(live), r["load"][0], r["load"][1]))
    return rows


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, args = sys.argv[1], sys.argv[2:]
    global SOURCE, TRACE
    TRACE = "--trace" in args
    SOURCE = opt(args, "--source", SOURCE)
    if SOURCE not in SOURCES:
        sys.exit("--source takes %s" % " or ".join(SOURCES))
    n_target = int(opt(args, "--records", "100000"))
    shards = int(opt(args, "--shards", "8"))
    heap = opt(args, "--kcl-heap", "1g")
    limit = int(opt(args, "--limit", "1000"))
    only = opt(args, "--only", None)
    if only not in (None, "ddb2os"):
        sys.exit("--only takes ddb2os")
    if SOURCE == "replay" and only is None:
        sys.exit("--source replay needs --only ddb2os (the replay speaks only ddb2os's calls)")
    if only is None:
        poolkit.need("D2O_TEST_DYNAMODB")
    if only is None and "--skip-build" not in args:
        subprocess.run(["mvn", "-B", "-q", "package"], cwd=HERE, check=True)
    rows = []
    if "--pin" in args:
        pin(True)
    try:
        if "--os-alone" in args:
            warm_up(binary)
        runs(binary, args, n_target, shards, heap, limit, only, rows)
    finally:
        if "--pin" in args:
            pin(False)
    print("\n| Run | Consumer | GetRecords limit | First read after start | Records/s "
          "| Records per CPU-second | Peak RSS | Documents | Load average |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(r for r, _ in rows), flush=True)
    if RATIO_ROWS:
        print("\n| Run | Consumer | Cores | Drain | / OpenSearch alone | / source alone "
              "| / both at once | OpenSearch CPU ms per 1000 records: drain / alone / both "
              "| %s CPU ms per 1000 records: drain / source alone | Load |" % SOURCE)
        print("|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(RATIO_ROWS), flush=True)
    sys.exit(1 if any(not ok for _, ok in rows) else 0)


def warm_up(binary):
    """Posts a fifth of the workload's items to a throwaway index, untimed: OpenSearch's JIT
    (C1 only as scripts/services starts it) compiles its indexing paths during the first
    documents after its start, and that CPU would otherwise land on the first run's first
    phase, ddb2os's drain (in one run right after a start, OpenSearch spent 106 ms per 1000
    documents on ddb2os's bodies against 58-92 in every later phase)."""
    env = source_env("warm")
    batch = poolkit.Items().workload(5000, 4, prefix="w")
    a = os_alone(binary, env, batch, suffix="-warm")
    print("warm-up: %d changes into a throwaway index in %.1f s (OpenSearch %.1f CPU s)"
          % (len(batch), a["seconds"], a["server_cpu"].get("opensearch", float("nan"))),
          flush=True)


def runs(binary, args, n_target, shards, heap, limit, only, rows):
    """--repeat runs of compare(); appends (table row, whether it passed) to rows."""
    for run in range(int(opt(args, "--repeat", "1"))):
        print("== run %d" % (run + 1), flush=True)
        run_rows, ok = compare(binary, n_target, shards, heap, limit, only, "--os-alone" in args,
                               run + 1, args)
        rows += [(r, ok) for r in run_rows]


def settings(args, name):
    """Every KEY=VALUE given with name, as ddb2os command-line settings."""
    out = []
    for i, a in enumerate(args[:-1]):
        if a == name:
            key, _, value = args[i + 1].partition("=")
            out += ["--" + key.replace("_", "-"), value]
    return out


def ddb2os_variants(binary, args, run):
    """(name, binary, settings) of each ddb2os drain of a run: the binary with --set's settings,
    and with --b or --b-set a second one on the same stream, in turn first and second."""
    out = [("ddb2os", binary, settings(args, "--set"))]
    if "--b" in args or "--b-set" in args:
        out.append(("ddb2os-b", opt(args, "--b", binary), settings(args, "--b-set")))
        if run % 2 == 0:
            out.reverse()
    return out


def start_replay(env):
    """--source replay: replay_source.py serving env's stream (captured from kinesalite), and a
    copy of env whose Kinesis calls go to it."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "replay_source.py"),
                             env.kinesis_url, env.stream, "--timeout", str(TIME_LIMIT_S * 2)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    word = proc.stdout.readline().split()
    if not word or word[0] != "ready":
        proc.kill()
        sys.exit("replay_source.py did not start (exit %s)" % proc.wait())
    REPLAY.update(pid=proc.pid, proc=proc)
    renv = copy.copy(env)
    renv.kinesis_url = "http://127.0.0.1:%s" % word[1]
    renv.kinesis = botocore.session.get_session().create_client(
        "kinesis", region_name=poolkit.REGION, endpoint_url=renv.kinesis_url,
        aws_access_key_id="AKIDPOOLTEST", aws_secret_access_key="pool-test-secret")
    print("replay %s records captured from kinesalite in %s s, served at %s (replay_source.py "
          "%.2f CPU s so far)" % (word[2], word[3], renv.kinesis_url, proc_cpu_s(proc.pid)),
          flush=True)
    return renv


def stop_replay():
    proc = REPLAY.pop("proc", None)
    REPLAY.pop("pid", None)
    if proc:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def compare(binary, n_target, shards, heap, limit, only, alone, run, args=()):
    """One run; returns (its table rows, whether every consumer finished)."""
    env = source_env("peer")
    batch = []
    n_records, live = preload(env, n_target, shards, batch)
    # where ddb2os and the source alone read: the replay of the stream, or the emulator itself
    renv = start_replay(env) if SOURCE == "replay" else env
    kcl_index = env.index + "-kcl"
    results, errors = {}, {}
    variants = ddb2os_variants(binary, args, run)
    trace = "--trace" in args
    try:
        for name, vbinary, extra in variants:
            venv = copy.copy(renv)
            if name != "ddb2os":
                venv.app, venv.index = env.app + "b", env.index + "-b"
            r = run_ddb2os(vbinary, venv, n_records, 19500 + os.getpid() % 400, limit=limit,
                           extra=extra, trace=trace, task="S" if name == "ddb2os" else "SB")
            r["documents"] = live_documents(venv, venv.index)
            r["problems"] = "%d records to the DLQ" % r.pop("refused")
            # The next phase starts with the node as this one did: no index of a drain left.
            venv.delete_index()
            if name != "ddb2os":
                venv.forget_rows()
            results[name] = r
            print_row(name, n_records, r)
            print("       %s %s; servers' CPU s during the drain: %s; %s"
                  % (os.path.basename(vbinary), " ".join(extra) or "(default settings)",
                     r["servers"], per_1000(r["server_cpu"], "opensearch", n_records)),
                  flush=True)
            if trace:
                print("       %s" % r["trace"], flush=True)
        if alone:
            a = os_alone(binary, env, batch)
            print("alone  OpenSearch alone on the same items (%d bodies of <= 5 MiB, %.0f KB on "
                  "average, 2 connections, a document's changes on one, in order): %.2f s, %.0f "
                  "records/s (%d stale, 409); servers' CPU s: %s; %s; load average %.1f"
                  % (a["bodies"], a["body_bytes"] / 1000.0 / max(1, a["bodies"]), a["seconds"],
                     a["records_per_s"], a["stale"], a["servers"],
                     per_1000(a["server_cpu"], "opensearch", n_records), load_now()), flush=True)
            if trace:
                print("       %s" % a["timeline"], flush=True)
            k = source_alone(renv, limit)
            print("source the source alone, one bare client, Limit %d: %d records in %d calls, "
                  "%.2f s, %.0f records/s; servers' CPU s: %s; %s; load average %.1f"
                  % (limit, k["records"], k["calls"], k["seconds"], k["records"] / k["seconds"],
                     k["servers"], per_1000(k["server_cpu"], SOURCE, k["records"]),
                     load_now()), flush=True)
            b = both_alone(binary, renv, batch, limit)
            print("both   OpenSearch alone and the source alone at the same time: %.2f s "
                  "(OpenSearch's part %.2f s), %.0f records/s; servers' CPU s: %s; load "
                  "average %.1f"
                  % (b["seconds"], b["sink_seconds"], len(batch) / b["seconds"], b["servers"],
                     load_now()), flush=True)
            for name, _, _ in variants:
                r = results[name]
                r["vs"] = (100.0 * r["records_per_s"] / a["records_per_s"],
                           100.0 * r["records_per_s"] * k["seconds"] / k["records"],
                           100.0 * b["seconds"] / r["drain_s"])
                RATIO_ROWS.append(
                    "| %d | %s | %s | %.1f s | **%.0f %%** (%.1f s) | %.0f %% (%.1f s) | %.0f %% "
                    "(%.1f s) | %s / %s / %s | %s / %s | %.1f–%.1f |"
                    % (run, "ddb2os" if name == "ddb2os" else "ddb2os B",
                       "pinned" if "--pin" in args else "shared", r["drain_s"], r["vs"][0],
                       a["seconds"], r["vs"][1], k["seconds"], r["vs"][2], b["seconds"],
                       ms_1000(r["server_cpu"], "opensearch", n_records),
                       ms_1000(a["server_cpu"], "opensearch", n_records),
                       ms_1000(b["server_cpu"], "opensearch", n_records),
                       ms_1000(r["server_cpu"], SOURCE, n_records),
                       ms_1000(k["server_cpu"], SOURCE, k["records"]),
                       r["load"][0], load_now()))
                print("%-6s end to end at %.0f %% of OpenSearch alone, %.0f %% of the source "
                      "alone, %.0f %% of both at once; %d stale (409) against OpenSearch "
                      "alone's %d" % (name if name == "ddb2os" else "B", r["vs"][0], r["vs"][1],
                                      r["vs"][2], r["stale"], a["stale"]), flush=True)
        if not only:
            try:
                r = run_kcl(env, n_records, heap, kcl_index, limit)
                r["documents"] = live_documents(env, kcl_index)
                r["problems"] = "%s bulk items refused" % r.pop("bulk_errors")
                results["kcl"] = r
                print_row("kcl", n_records, r)
            except KclFailed as e:
                errors["kcl"] = str(e)
                print("kcl    did not finish: %s" % e, flush=True)
    finally:
        stop_replay()
        env.delete_stream()
        env.delete_index()
        env.os_call("DELETE", "/%s" % kcl_index)
    for name, r in results.items():
        if r["documents"] != live:
            print("%s: %d documents in its index, the workload leaves %d"
                  % (name, r["documents"], live))
    if "kcl" in results:
        d, k = results["ddb2os"], results["kcl"]
        print("ddb2os / KCL: %.2fx records per CPU-second, %.2fx records/s, %.2f of the memory "
              "(goal: >= 3x at <= 0.25)" % (d["records_per_cpu_s"] / k["records_per_cpu_s"],
                                            d["records_per_s"] / k["records_per_s"],
                                            d["rss_mib"] / k["rss_mib"]), flush=True)
    names = tuple(name for name, _, _ in variants) + (() if only else ("kcl",))
    return table_rows(run, results, live, limit, errors, names), all(
        name in results and results[name]["documents"] == live for name in names)


if __name__ == "__main__":
    main()
