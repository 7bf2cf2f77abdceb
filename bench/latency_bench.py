#!/usr/bin/python3
"""Put -> searchable latency of ddb2os at a steady rate of changes (docs/performance.md).

usage: latency_bench.py DDB2OS_BINARY [--rates 100,1000] [--duration 30] [--warmup 5]
                        [--shards 4] [--refresh-interval DURATION] [--search-every-ms 20]
                        [--put-every-ms 50]
                        [-- EXTRA DDB2OS RUN ARGUMENTS...]

For each rate: a fresh kinesalite stream of --shards shards, a fresh index (created before the run
with a `long` field n; its refresh_interval is OpenSearch's default of 1 s unless
--refresh-interval is given) and `ddb2os run` with 1 worker and the default poll and flush
settings (anything after `--` is appended to its command line, e.g. `-- --bulk-flush-ms 100`).

A producer thread puts one INSERT change record per new item at the rate, for --duration
seconds, in one PutRecords call every --put-every-ms; each record's ApproximateCreationDateTime
(MICROSECOND precision) is the time just before the call that puts it. A searcher thread asks
OpenSearch, every --search-every-ms, for the items not yet seen (a range query on n, sorted, no
refresh forced) and notes when each first appears: put -> searchable is that moment minus the
record's ApproximateCreationDateTime, so it includes the time of one search round (up to
--search-every-ms plus the search's own time). Records of the first --warmup seconds are left
out. When every record was found (or 60 s after the producer stopped) the run reads the worker's
/metrics and stops ddb2os.

Prints, per rate: the rate reached; p50/p90/p99/max of put -> searchable; from the worker's
ddb2os_replication_latency_seconds histogram (ApproximateCreationDateTime -> bulk answer) its
count and p50/p99 (the upper bound of the bucket that holds the quantile); the p99 of its _bulk
requests' latency (same reading); _bulk requests per 1000 records; the cores used by ddb2os and
by kinesalite and the GetRecords calls per shard and second while the records flowed. Needs the
local servers (scripts/services start pg opensearch kinesalite; export scripts/services env).
Bounded: each rate takes --duration plus at most about 150 s.
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
    """Puts rate changes a second for duration seconds; put_us[n] is change n's timestamp."""

    def __init__(self, env, rate, duration, every_ms):
        super().__init__(daemon=True)
        self.env, self.rate, self.duration, self.every = env, rate, duration, every_ms / 1000.0
        self.put_us = []
        self.elapsed = 0.0

    def run(self):
        t0 = time.time()
        n = 0
        while True:
            now = time.time()
            if now - t0 >= self.duration:
                break
            due = min(int((now - t0) * self.rate) + 1, int(self.duration * self.rate))
            if due > n:
                stamp = int(time.time() * 1e6)
                batch = [change(i, stamp) for i in range(n, due)]
                self.put_us += [stamp] * len(batch)
                for start in range(0, len(batch), 500):
                    res = self.env.kinesis.put_records(StreamName=self.env.stream,
                                                       Records=batch[start:start + 500])
                    if res["FailedRecordCount"]:
                        raise AssertionError("PutRecords refused %d records"
                                             % res["FailedRecordCount"])
                n = due
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


def kinesalite_pid():
    """The emulator's process when scripts/services started it (its pid file), else None."""
    state = os.environ.get("D2O_SERVICES_DIR") or os.path.join(HERE, "..", ".services")
    try:
        with open(os.path.join(state, "run", "kinesalite.pid")) as f:
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


def run_rate(binary, rate, args):
    duration, warmup = float(args["duration"]), float(args["warmup"])
    env = poolkit.Env("lat", kinesis="D2O_TEST_KINESALITE")
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
           "--task-id", "lat", "--log-format", "text", "--metrics-port", str(port)] + args["extra"]
    log = open(os.path.join(env.logdir, "ddb2os.log"), "ab")
    proc_env = dict(os.environ, **poolkit.ENV_AWS)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env)
    producer = Producer(env, rate, duration, int(args["put_ms"]))
    searcher = Searcher(env, int(args["search_ms"]))
    try:
        poolkit.wait_for("every shard leased", lambda: len(env.owners()) == int(args["shards"]),
                         60)
        time.sleep(2)  # the worker's first GetRecords on every shard
        ours = [proc.pid] + [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
        theirs = [kinesalite_pid()] if kinesalite_pid() else []
        cpu0 = (cpu_s(ours), cpu_s(theirs), time.time())
        gets_start = scrape(port)["gets"]
        searcher.start()
        producer.start()
        producer.join(duration + 60)
        searcher.expect = len(producer.put_us)
        searcher.join(60)
        searcher.stop = True
        wall = time.time() - cpu0[2]
        cpu = ((cpu_s(ours) - cpu0[0]) / wall, (cpu_s(theirs) - cpu0[1]) / wall)
        gets_end = scrape(port)["gets"]

        def counted():
            got = scrape(port)
            return got if got["lat_n"] >= len(producer.put_us) else None
        m = poolkit.wait_for("the histogram to count every record", counted, 30, step=0.5)
    finally:
        searcher.stop = True
        proc.terminate()
        proc.wait(30)
        log.close()
        env.delete_stream()
        env.delete_index()
        shutil.rmtree(env.logdir, ignore_errors=True)
    put = producer.put_us
    t_start = put[0] + warmup * 1e6
    lat = [(searcher.found_us[n] - put[n]) / 1000.0 for n in range(len(put))
           if put[n] >= t_start and n in searcher.found_us]
    missing = len(put) - len(searcher.found_us)
    return {"rate": len(put) / producer.elapsed, "records": len(put), "measured": len(lat),
            "missing": missing, "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
            "max": max(lat), "searches": searcher.searches / producer.elapsed, "cpu": cpu,
            "gets": (gets_end - gets_start) / int(args["shards"]) / wall,
            "bulks": m["bulks"] / len(put) * 1000, "h_count": int(m["lat_n"]),
            "h_p50": hist_quantile(m["lat"], 0.5), "h_p99": hist_quantile(m["lat"], 0.99),
            "bulk_p99": hist_quantile(m["bulk_lat"], 0.99)}


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
            "put_ms": opt(args, "--put-every-ms", "50"), "extra": extra}
    rates = [int(r) for r in opt(args, "--rates", "100,1000").split(",")]
    if args:
        sys.exit("latency_bench: unknown arguments %s" % args)
    print("ddb2os run %s; index refresh_interval %s; %s shards; %s s per rate (first %s s left "
          "out)" % (" ".join(extra) or "(defaults)", conf["refresh"] or "1s (default)",
                    conf["shards"], conf["duration"], conf["warmup"]))
    print("%8s %8s %9s %9s %9s %9s %9s | %9s %9s %9s %9s %9s" % (
        "rate/s", "records", "p50 ms", "p90 ms", "p99 ms", "max ms", "missing", "hist n",
        "hist p50", "hist p99", "bulk p99", "bulks/1k"))
    print("(hist: the worker's replication latency histogram, ms; bulk p99: its _bulk request "
          "latency histogram, ms; bulks/1k: _bulk requests per 1000 records; cpu: "
          "cores used by ddb2os and by kinesalite, and GetRecords calls answered per shard and "
          "second, "
          "from the first put to the last record found)")
    for rate in rates:
        r = run_rate(binary, rate, conf)
        print("%8.0f %8d %9.0f %9.0f %9.0f %9.0f %9d | %9d %9.0f %9.0f %9.0f %9.1f  "
              "cpu ddb2os %.2f, "
              "kinesalite %.2f; GetRecords %.1f/s/shard; %.0f searches/s"
              % (r["rate"], r["records"], r["p50"], r["p90"], r["p99"], r["max"], r["missing"],
                 r["h_count"], r["h_p50"], r["h_p99"], r["bulk_p99"], r["bulks"], r["cpu"][0],
                 r["cpu"][1],
                 r["gets"], r["searches"]), flush=True)


if __name__ == "__main__":
    main()
