#!/usr/bin/python3
"""Put -> searchable latency of ddb2os at a steady rate of changes, and where it goes
(docs/performance.md, "Latency").

usage: latency_bench.py DDB2OS_BINARY [--rates 100,1000] [--duration 30] [--warmup 5]
                        [--shards 4] [--refresh-interval DURATION] [--search-every-ms 20]
                        [--put-every-ms 50] [--producers 2]
                        [--emulator kinesalite|kinesis-mock] [--keep-log FILE]
                        [-- EXTRA DDB2OS RUN ARGUMENTS...]

For each rate: a fresh stream of --shards shards on the emulator (kinesalite unless --emulator
says otherwise), a fresh index (created before the run with a `long` field n; its
refresh_interval is OpenSearch's default of 1 s unless --refresh-interval is given) and `ddb2os
run` with 1 worker and the default poll and flush settings (anything after `--` is appended to
its command line, e.g. `-- --bulk-flush-ms 100`), logging at level debug for the kinesis and sink
categories (one line per GetRecords call and answer and per bulk request sent and answered).

--producers threads, each with its own connection, put one INSERT change record per new item at
their share of the rate, for --duration seconds: every --put-every-ms each puts the changes that
are due in PutRecords calls of at most 500 records. Each record's ApproximateCreationDateTime
(MICROSECOND precision) is the time just before the call that puts it. A producer that falls
behind puts larger batches; the rate reached is printed. A searcher thread asks OpenSearch, every
--search-every-ms, for the items not yet seen (a range query on n, sorted, no refresh forced) and
notes when each first appears: put -> searchable is that moment minus the record's
ApproximateCreationDateTime, so it includes the time of one search round (up to
--search-every-ms plus the search's own time). Records of the first --warmup seconds are left
out. When every record was found (or 60 s after the producers stopped) the run reads the
worker's /metrics and stops ddb2os.

Prints, per rate: the rate reached; p50/p90/p99/max of put -> searchable; from the worker's
ddb2os_replication_latency_seconds histogram (ApproximateCreationDateTime -> bulk answer) its
count and p50/p99 (the upper bound of the bucket that holds the quantile); the p99 of its _bulk
requests' latency (same reading); _bulk requests per 1000 records; the cores used by ddb2os and
by the emulator and the GetRecords calls per shard and second while the records flowed; the load
average. Then the breakdown of put -> searchable into stages, p50 and p99 of each and its mean
over the slowest 1 % of changes:
  PutRecords        the emulator taking the record (the producer's call)
  wait for poll     PutRecords answered -> the GetRecords call that returned the record started
  GetRecords        that call, started -> answered
  wait for flush    answered -> the bulk request that carried the record was sent
  bulk request      sent -> answered by OpenSearch
  refresh + search  answered -> the searcher saw the record: OpenSearch's refresh plus one search
From the worker's log (--keep-log copies it) and the producers' own times; each moment is taken
no earlier than the one before, so the stages add up to put -> searchable. Needs the local
servers (scripts/services start pg opensearch kinesalite; export scripts/services env).
Bounded: each rate takes --duration plus at most about 4 x --duration + 150 s.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import re
from datetime import datetime, timezone

import botocore.config
import botocore.session

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import poolkit  # noqa: E402


def opt(args, name, default):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def kinesis_client(url):
    """A client of its own (its own connection) for one producer thread."""
    return botocore.session.get_session().create_client(
        "kinesis", region_name=poolkit.REGION, endpoint_url=url, verify=False,
        aws_access_key_id="AKIDPOOLTEST", aws_secret_access_key="pool-test-secret",
        config=botocore.config.Config(retries={"max_attempts": 8, "mode": "standard"}))


def change(n, stamp_us):
    book_id = "lat-%08d" % n
    keys = {"book_id": {"S": book_id}}
    record = {"awsRegion": poolkit.REGION, "eventID": "e%d" % n, "eventName": "INSERT",
              "userIdentity": None, "recordFormat": "application/json", "tableName": "books",
              "eventSource": "aws:dynamodb",
              "dynamodb": {"ApproximateCreationDateTime": stamp_us,
                           "ApproximateCreationDateTimePrecision": "MICROSECOND", "Keys": keys,
                           "NewImage": dict(keys, n={"N": str(n)}), "SizeBytes": 60}}
    return {"PartitionKey": hashlib.md5(book_id.encode()).hexdigest(),
            "Data": json.dumps(record).encode()}


class Producer(threading.Thread):
    """One of --producers connections: puts changes n = first, first + step, ... at rate / step
    a second for duration seconds, in one PutRecords call (at most 500 records) every
    every_ms. put_us[n] is change n's timestamp, acked_us[n] when PutRecords answered and
    where[n] its (shard, sequence number)."""

    def __init__(self, env, rate, duration, every_ms, first, step, out):
        super().__init__(daemon=True)
        self.env, self.rate, self.duration, self.every = env, rate, duration, every_ms / 1000.0
        self.first, self.step, self.out = first, step, out
        self.client = kinesis_client(env.kinesis_url)
        self.elapsed = 0.0
        self.error = None

    def run(self):
        try:
            self.produce()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def produce(self):
        t0, total = self.out["t0"], int(self.duration * self.rate)
        mine = range(self.first, total, self.step)
        k = 0
        while k < len(mine):
            now = time.time()
            due = min(int((now - t0) * self.rate) + 1, total)
            upto = k
            while upto < len(mine) and mine[upto] < due:
                upto += 1
            for start in range(k, upto, 500):
                ns = mine[start:min(upto, start + 500)]
                stamp = int(time.time() * 1e6)
                res = self.client.put_records(StreamName=self.env.stream,
                                              Records=[change(n, stamp) for n in ns])
                acked = int(time.time() * 1e6)
                if res["FailedRecordCount"]:
                    raise AssertionError("PutRecords refused %d records"
                                         % res["FailedRecordCount"])
                for n, r in zip(ns, res["Records"]):
                    self.out["put_us"][n] = stamp
                    self.out["acked_us"][n] = acked
                    self.out["where"][n] = (r["ShardId"], int(r["SequenceNumber"]))
            k = upto
            if time.time() - t0 > 3 * self.duration + 30:
                raise AssertionError("the emulator took %d of %d changes in %.0f s" % (
                    k, len(mine), time.time() - t0))
            time.sleep(max(0.0, self.every - (time.time() - now)))
        self.elapsed = time.time() - t0


class Searcher(threading.Thread):
    """Notes found_us[n], the first time a search returns item n."""

    def __init__(self, env, every_ms):
        super().__init__(daemon=True)
        self.env, self.every = env, every_ms / 1000.0
        self.found_us = {}
        self.expect = None  # set when the producer is done
        self.stop = False
        self.searches = 0

    def run(self):
        low = 0
        while not self.stop:
            t = time.time()
            status, res = self.env.os_call("POST", "/%s/_search" % self.env.index, {
                "size": 10000, "_source": False, "docvalue_fields": ["n"], "sort": [{"n": "asc"}],
                "query": {"range": {"n": {"gte": low}}}})
            at = int(time.time() * 1e6)
            self.searches += 1
            if status == 200:
                for h in res["hits"]["hits"]:
                    self.found_us.setdefault(int(h["fields"]["n"][0]), at)
                while low in self.found_us:
                    low += 1
            if self.expect is not None and len(self.found_us) >= self.expect:
                return
            time.sleep(max(0.0, self.every - (time.time() - t)))


def cpu_s(pids):
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def emulator_pid(name):
    """The emulator's process when scripts/services started it (its pid file), else None."""
    state = os.environ.get("D2O_SERVICES_DIR") or os.path.join(HERE, "..", ".services")
    try:
        with open(os.path.join(state, "run", "%s.pid" % name)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def scrape(port):
    """From the worker's /metrics: the replication latency buckets (le -> cumulative count)
    and count, the bulk latency buckets, _bulk requests and GetRecords calls."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    out = {"lat": {}, "lat_n": 0, "bulk_lat": {}, "bulks": 0, "gets": 0}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if fam.name == "ddb2os_bulk_requests":
                out["bulks"] += s.value
            elif fam.name == "ddb2os_getrecords_calls":
                out["gets"] += s.value
            elif fam.name in ("ddb2os_replication_latency_seconds",
                              "ddb2os_bulk_latency_seconds") and s.name.endswith("_bucket"):
                key = "lat" if fam.name.startswith("ddb2os_replication") else "bulk_lat"
                le = float(s.labels["le"])
                out[key][le] = out[key].get(le, 0) + s.value
            elif fam.name == "ddb2os_replication_latency_seconds" and s.name.endswith("_count"):
                out["lat_n"] += s.value
    return out


def hist_quantile(buckets, q):
    """The upper bound (ms) of the bucket holding quantile q of a cumulative histogram."""
    count = max(buckets.values()) if buckets else 0
    for le, cum in sorted(buckets.items()):
        if cum >= q * count:
            return le * 1000
    return float("inf")


STAGES = ("PutRecords", "wait for poll", "GetRecords", "wait for flush", "bulk request",
          "refresh + search")


def read_log(path):
    """From the worker's debug log (JSON lines): per shard its GetRecords answers in order as
    (call start us, answer us, records); all answers in order as (shard, records); the bulk
    requests in the order they were sent as (number, items, sent us) and when each was answered
    (number -> (us, HTTP status))."""
    def us(ts):
        return int(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=timezone.utc).timestamp() * 1e6)
    calls, per_shard, answers, sent, answered = {}, {}, [], [], {}
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ev, msg = e.get("event"), e.get("msg", "")
            if ev == "get_records_call":
                calls[e["shard"]] = us(e["ts"])
            elif ev == "get_records":
                n = int(re.match(r"(\d+) records", msg).group(1))
                per_shard.setdefault(e["shard"], []).append(
                    (calls.get(e["shard"], us(e["ts"])), us(e["ts"]), n))
                answers.append((e["shard"], n))
            elif ev == "bulk_sent":
                m = re.match(r"bulk request (\d+): (\d+) items", msg)
                sent.append((int(m.group(1)), int(m.group(2)), us(e["ts"])))
            elif ev == "bulk_answered":
                m = re.match(r"bulk request (\d+): HTTP (\d+)", msg)
                answered[int(m.group(1))] = (us(e["ts"]), int(m.group(2)))
    return per_shard, answers, sent, answered


def breakdown(out, found_us, log, measured):
    """Where each measured change's time went: the moments it was put, PutRecords answered, the
    GetRecords that returned it started and was answered, the bulk request that carried it was
    sent and answered, and the search found it. Each moment is taken no earlier than the one
    before, so the stages add up to put -> searchable. Records map to GetRecords answers by
    their order on their shard (sequence numbers) and to bulk requests by the order the worker
    took them (the order of the answers in the log); None when the log does not account for
    every record once (a retried bulk request, say)."""
    per_shard, answers, sent, answered = read_log(log)
    order = {}
    for n, (shard, seq) in enumerate(out["where"]):
        order.setdefault(shard, []).append((seq, n))
    got = {}  # n -> (call us, answer us, position in the worker's order)
    pos, at_shard = 0, {}
    for shard, k in answers:
        i = at_shard.get(shard, 0)
        at_shard[shard] = i + 1
        call, answer, _ = per_shard[shard][i]
        before = sum(a[2] for a in per_shard[shard][:i])
        mine = sorted(order.get(shard, []))[before:before + k]
        for j, (_, n) in enumerate(mine):
            got[n] = (call, answer, pos + j)
        pos += k
    if pos != len(out["where"]) or sum(b[1] for b in sent) != pos or any(
            answered.get(b[0], (0, 0))[1] != 200 for b in sent):
        return None
    bulk_of, first = [], 0
    for no, k, at in sent:
        bulk_of.append((first + k, at, answered[no][0]))
        first += k
    stages = {name: [] for name in STAGES}
    totals = []
    b = 0
    for n in sorted(measured, key=lambda n: got[n][2]):
        call, answer, p = got[n]
        while bulk_of[b][0] <= p:
            b += 1
        moments = [out["put_us"][n], out["acked_us"][n], call, answer, bulk_of[b][1],
                   bulk_of[b][2], found_us[n]]
        for i in range(1, len(moments)):
            moments[i] = max(moments[i], moments[i - 1])
        for i, name in enumerate(STAGES):
            stages[name].append((moments[i + 1] - moments[i]) / 1000.0)
        totals.append((moments[-1] - moments[0]) / 1000.0)
    cut = pct(totals, 99)
    slow = [i for i, t in enumerate(totals) if t >= cut]
    return {name: (pct(v, 50), pct(v, 99), sum(v[i] for i in slow) / len(slow))
            for name, v in stages.items()}


def run_rate(binary, rate, args):
    duration, warmup = float(args["duration"]), float(args["warmup"])
    emulator = args["emulator"]
    env = poolkit.Env("lat", kinesis="D2O_TEST_KINESALITE" if emulator == "kinesalite"
                      else "D2O_TEST_KINESIS_MOCK")
    env.create_stream(int(args["shards"]))
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    if args["refresh"]:
        settings["refresh_interval"] = args["refresh"]
    status, res = env.os_call("PUT", "/%s" % env.index, {
        "settings": settings, "mappings": {"properties": {"n": {"type": "long"}}}})
    assert status == 200, res
    port = 19000 + os.getpid() % 500
    cmd = [binary, "run", "--application", env.app, "--stream-name", env.stream,
           "--aws-region", poolkit.REGION, "--kinesis-endpoint", env.kinesis_url,
           "--opensearch-url", env.opensearch, "--index-map", "books=%s" % env.index,
           "--key-schema", "books=book_id", "--pg-conninfo", env.pg, "--workers", "1",
           "--task-id", "lat", "--log-format", "json", "--log-level", "debug",
           "--log-debug", "kinesis,sink", "--metrics-port", str(port)] + args["extra"]
    log_path = os.path.join(env.logdir, "ddb2os.log")
    log = open(log_path, "ab")
    proc_env = dict(os.environ, **poolkit.ENV_AWS)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env)
    total = int(duration * rate)
    out = {"put_us": [0] * total, "acked_us": [0] * total, "where": [None] * total}
    producers = [Producer(env, rate, duration, int(args["put_ms"]), i, int(args["producers"]),
                          out) for i in range(int(args["producers"]))]
    searcher = Searcher(env, int(args["search_ms"]))
    stages = None
    try:
        poolkit.wait_for("every shard leased", lambda: len(env.owners()) == int(args["shards"]),
                         60)
        time.sleep(2)  # the worker's first GetRecords on every shard
        ours = [proc.pid] + [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
        theirs = [emulator_pid(emulator)] if emulator_pid(emulator) else []
        cpu0 = (cpu_s(ours), cpu_s(theirs), time.time())
        gets_start = scrape(port)["gets"]
        searcher.start()
        out["t0"] = time.time()
        for p in producers:
            p.start()
        for p in producers:
            p.join(4 * duration + 60)
            if p.error or p.is_alive():
                raise AssertionError("a producer failed: %s" % (p.error or "still running"))
        elapsed = max(p.elapsed for p in producers)
        searcher.expect = total
        searcher.join(60)
        searcher.stop = True
        wall = time.time() - cpu0[2]
        cpu = ((cpu_s(ours) - cpu0[0]) / wall, (cpu_s(theirs) - cpu0[1]) / wall)
        gets_end = scrape(port)["gets"]

        def counted():
            got = scrape(port)
            return got if got["lat_n"] >= total else None
        m = poolkit.wait_for("the histogram to count every record", counted, 30, step=0.5)
    finally:
        searcher.stop = True
        proc.terminate()
        proc.wait(30)
        log.close()
        put = out["put_us"]
        t_start = out.get("t0", 0) * 1e6 + warmup * 1e6
        measured = [n for n in range(total) if put[n] >= t_start and n in searcher.found_us]
        if measured and all(out["where"]):
            stages = breakdown(out, searcher.found_us, log_path, measured)
        if args["keep_log"]:
            shutil.copy(log_path, args["keep_log"])
        env.delete_stream()
        env.delete_index()
        shutil.rmtree(env.logdir, ignore_errors=True)
    lat = [(searcher.found_us[n] - put[n]) / 1000.0 for n in measured]
    missing = total - len(searcher.found_us)
    return {"rate": total / elapsed, "records": total, "measured": len(lat),
            "missing": missing, "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
            "max": max(lat), "searches": searcher.searches / elapsed, "cpu": cpu,
            "gets": (gets_end - gets_start) / int(args["shards"]) / wall,
            "bulks": m["bulks"] / total * 1000, "h_count": int(m["lat_n"]),
            "h_p50": hist_quantile(m["lat"], 0.5), "h_p99": hist_quantile(m["lat"], 0.99),
            "bulk_p99": hist_quantile(m["bulk_lat"], 0.99), "stages": stages}


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, args = argv[0], argv[1:]
    conf = {"duration": opt(args, "--duration", "30"), "warmup": opt(args, "--warmup", "5"),
            "shards": opt(args, "--shards", "4"), "refresh": opt(args, "--refresh-interval", ""),
            "search_ms": opt(args, "--search-every-ms", "20"),
            "put_ms": opt(args, "--put-every-ms", "50"),
            "producers": opt(args, "--producers", "2"),
            "emulator": opt(args, "--emulator", "kinesalite"),
            "keep_log": opt(args, "--keep-log", ""), "extra": extra}
    rates = [int(r) for r in opt(args, "--rates", "100,1000").split(",")]
    if args:
        sys.exit("latency_bench: unknown arguments %s" % args)
    if conf["emulator"] not in ("kinesalite", "kinesis-mock"):
        sys.exit("latency_bench: --emulator must be kinesalite or kinesis-mock, not %s"
                 % conf["emulator"])
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("ddb2os run %s; index refresh_interval %s; %s, %s shards, %s producer connections; "
          "%s s per rate (first %s s left out); load average %s"
          % (" ".join(extra) or "(defaults)", conf["refresh"] or "1s (default)",
             conf["emulator"], conf["shards"], conf["producers"], conf["duration"],
             conf["warmup"], load))
    print("%8s %8s %9s %9s %9s %9s %9s | %9s %9s %9s %9s %9s" % (
        "rate/s", "records", "p50 ms", "p90 ms", "p99 ms", "max ms", "missing", "hist n",
        "hist p50", "hist p99", "bulk p99", "bulks/1k"))
    print("(hist: the worker's replication latency histogram, ms; bulk p99: its _bulk request "
          "latency histogram, ms; bulks/1k: _bulk requests per 1000 records; cpu: "
          "cores used by ddb2os and by the emulator, and GetRecords calls answered per shard "
          "and second, from the first put to the last record found)")
    for rate in rates:
        r = run_rate(binary, rate, conf)
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print("%8.0f %8d %9.0f %9.0f %9.0f %9.0f %9d | %9d %9.0f %9.0f %9.0f %9.1f  "
              "cpu ddb2os %.2f, %s %.2f; GetRecords %.1f/s/shard; %.0f searches/s; load %s"
              % (r["rate"], r["records"], r["p50"], r["p90"], r["p99"], r["max"], r["missing"],
                 r["h_count"], r["h_p50"], r["h_p99"], r["bulk_p99"], r["bulks"], r["cpu"][0],
                 conf["emulator"], r["cpu"][1], r["gets"], r["searches"], load), flush=True)
        if r["stages"] is None:
            print("         (no breakdown: the worker's log does not account for every record "
                  "once)")
            continue
        print("         %-18s %9s %9s %12s" % ("stage", "p50 ms", "p99 ms", "slowest 1%"))
        for name in STAGES:
            print("         %-18s %9.0f %9.0f %12.0f" % ((name,) + r["stages"][name]),
                  flush=True)


if __name__ == "__main__":
    main()
