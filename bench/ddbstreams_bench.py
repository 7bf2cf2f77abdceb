#!/usr/bin/python3
"""ddb2os reading a DynamoDB stream directly (source = dynamodb-streams) next to the same
number of changes read from Kinesis (numbers in docs/performance.md).

usage: ddbstreams_bench.py DDB2OS_BINARY [--records N] [--repeat K] [--only streams|kinesis]
                           [--delay-ms MS] [--reset-every-s S] [--keep-going]
                           [--perf DIR]

  streams   a fresh DynamoDB Local table with a NEW_AND_OLD_IMAGES stream gets N changes
            (BatchWriteItem puts of 25 items: N/4 items, each put 4 times, 4 attributes) before
            ddb2os starts. The stream is then read once with botocore, shard by shard, to learn
            the last sequence number of each shard and to check what DynamoDB Local delivers
            (no sequence number twice, in order, ApproximateCreationDateTime never backwards,
            each item's puts in the order they were made). One supervisor with 1 worker reads
            the table's stream and is timed from its first record read until every shard's
            checkpoint in PostgreSQL is at its last sequence number (or SHARD_END): an exact
            end, whatever the metrics count. OpenSearch must then hold every item at its last
            put, at the version the lineage rule gives (docs/architecture.md). Records/s, CPU
            ms per 1000 records (supervisor + worker utime + stime from /proc over that
            interval), the worker's peak RSS (VmHWM), and the records read more than once and
            the writes OpenSearch refused as older (409) from /metrics.
            --delay-ms and --reset-every-s put tests/proxy/faultproxy.py between ddb2os and
            DynamoDB Local (each call delayed; a connection reset every S seconds), for a slow
            or flaky stream; --keep-going reports a wrong run and goes on with the next one.
            --perf DIR samples the worker with `perf record` (999 Hz, DWARF call graphs) over
            the timed interval and prints where its CPU went, as profile_worker.py does for
            the Kinesis source.
  kinesis   the same measure on kinesalite with N records (pool_bench.py's scaling run, 1 shard
            and 1 worker, 4 changes per item and one in five deleted), so the rows sit together

Every run uses a fresh table or stream, application and index and removes them (and its
lease rows) afterwards. The servers share the machine with the benchmark: records/s is a floor.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import botocore.session

import pool_bench  # puts tests/integration on sys.path first
import poolkit
import ddbstreams_test

ROUNDS = 4
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class StreamTable(ddbstreams_test.Table):
    """The integration test's table (NEW_AND_OLD_IMAGES stream on DynamoDB Local), loaded in
    batches."""

    def load(self, n_changes):
        """n_changes puts: N/4 items, round after round (a batch never names an item twice).
        Returns the number of items."""
        n_items = max(1, n_changes // ROUNDS)
        for r in range(ROUNDS):
            for start in range(0, n_items, 25):
                pending = [{"PutRequest": {"Item": {
                    "book_id": {"S": "k-%06d" % i}, "title": {"S": "t%d-%d" % (i, r)},
                    "round": {"N": str(r)}, "pages": {"N": str(100 + r)},
                    "available": {"BOOL": r % 2 == 0}}}}
                    for i in range(start, min(n_items, start + 25))]
                for _ in range(20):
                    res = self.ddb.batch_write_item(RequestItems={self.name: pending})
                    pending = res.get("UnprocessedItems", {}).get(self.name)
                    if not pending:
                        break
                    time.sleep(0.1)
                else:
                    raise AssertionError("BatchWriteItem kept leaving items unprocessed")
        return n_items


def read_stream(table_name):
    """Every record of the table's latest stream as the stream gives it: a list of shards
    (shard id, parent shard id, records), parents before their children."""
    session = botocore.session.get_session()
    keys = dict(region_name=poolkit.REGION, endpoint_url=poolkit.need("D2O_TEST_DYNAMODB"),
                aws_access_key_id="AKIDPOOLTEST", aws_secret_access_key="pool-test-secret")
    ddb = session.create_client("dynamodb", **keys)
    streams = session.create_client("dynamodbstreams", **keys)
    arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    shards, start = [], None
    while True:
        page = streams.describe_stream(StreamArn=arn, **(
            {"ExclusiveStartShardId": start} if start else {}))["StreamDescription"]
        shards += page["Shards"]
        start = page.get("LastEvaluatedShardId")
        if not start:
            break
    out = []
    for sh in shards:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=sh["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records, empty = [], 0
        while it and empty < 2:  # an open shard answers empty pages once it is read
            page = streams.get_records(ShardIterator=it, Limit=1000)
            records += page["Records"]
            empty = 0 if page["Records"] else empty + 1
            it = page.get("NextShardIterator")
        out.append((sh["ShardId"], sh.get("ParentShardId"), records))
    ids = [s[0] for s in out]
    out.sort(key=lambda s: ids.index(s[1]) if s[1] in ids else -1)
    return arn, out


def check_stream(shards, n_items):
    """What the stream delivered, against what the load did. Returns (facts, problems, the last
    sequence number of each shard, the version the lineage rule gives each item's last record)."""
    problems, last_seq, versions = [], {}, {}
    seen, item_round, ver_of_shard = set(), {}, {}
    n_records = acdt_back = 0
    for shard_id, parent, records in shards:
        prev_seq, prev_acdt = None, None
        ver = ver_of_shard.get(parent, 0)
        for r in records:
            d = r["dynamodb"]
            seq, acdt = int(d["SequenceNumber"]), d["ApproximateCreationDateTime"].timestamp()
            n_records += 1
            if seq in seen:
                problems.append("sequence number %d delivered twice" % seq)
            seen.add(seq)
            if prev_seq is not None and seq <= prev_seq:
                problems.append("shard %s: %d after %d" % (shard_id, seq, prev_seq))
            if prev_acdt is not None and acdt < prev_acdt:
                acdt_back += 1
            prev_seq, prev_acdt = seq, acdt
            floor_us = int(acdt) * 1000000
            ver = ver + 1 if ver >= floor_us else floor_us
            key = d["Keys"]["book_id"]["S"]
            rnd = int(d["NewImage"]["round"]["N"])
            if rnd <= item_round.get(key, -1):
                problems.append("item %s: put of round %d after round %d" % (
                    key, rnd, item_round[key]))
            item_round[key] = rnd
            versions[key] = ver
        ver_of_shard[shard_id] = ver
        if records:
            last_seq[shard_id] = int(records[-1]["dynamodb"]["SequenceNumber"])
    unfinished = [k for k, r in item_round.items() if r != ROUNDS - 1]
    if len(item_round) != n_items or unfinished:
        problems.append("%d items in the stream (%d expected), %d not at their last round"
                        % (len(item_round), n_items, len(unfinished)))
    facts = {"shards": len(shards), "stream_records": n_records, "acdt_backwards": acdt_back,
             "seconds": len({int(r["dynamodb"]["ApproximateCreationDateTime"].timestamp())
                             for _, _, rs in shards for r in rs})}
    return facts, problems, last_seq, versions


def checkpoints_at_end(env, last_seq):
    """True once every shard's checkpoint is at its last sequence number, or past its end."""
    cps = dict(env.rows("SELECT shard_id, checkpoint FROM leases WHERE application = '%s'"
                        % env.app))
    return all(cps.get(s) == "SHARD_END" or (cps.get(s, "").isdigit() and int(cps[s]) >= seq)
               for s, seq in last_seq.items())


class SlowStream:
    """tests/proxy/faultproxy.py between ddb2os and DynamoDB Local: every call delayed by
    delay_ms, and a connection reset every reset_every_s seconds."""

    def __init__(self, upstream, delay_ms, reset_every_s):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "proxy", "faultproxy.py"),
             "--upstream", upstream, "--max-seconds", "1800", "--pass-auth",
             "--faults", json.dumps({"delay_ms": delay_ms})], stdout=subprocess.PIPE, text=True)
        self.url = "http://127.0.0.1:%d" % int(self.proc.stdout.readline())
        self.stopping = threading.Event()
        if reset_every_s:
            threading.Thread(target=self.resets, args=(reset_every_s,), daemon=True).start()

    def resets(self, every_s):
        while not self.stopping.wait(every_s):
            req = urllib.request.Request(self.url + "/__fault", method="POST",
                                         data=json.dumps({"reset_count": 1}).encode())
            try:
                urllib.request.urlopen(req, timeout=10).close()
            except OSError:
                return

    def stop(self):
        self.stopping.set()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def last_round_count(env):
    """Documents of the run's index that hold their item's last put."""
    env.os_call("POST", "/%s/_refresh" % env.index)
    status, res = env.os_call("POST", "/%s/_count" % env.index,
                              {"query": {"term": {"round": ROUNDS - 1}}})
    return res["count"] if status == 200 else -1


def index_versions(env):
    """item -> (round, version) of every document of the run's index."""
    env.os_call("POST", "/%s/_refresh" % env.index)
    status, res = env.os_call("POST", "/%s/_search?version=true" % env.index, {
        "size": 10000, "_source": ["round"], "query": {"match_all": {}}})
    assert status == 200, res
    return {h["_id"]: (h["_source"].get("round"), h["_version"]) for h in res["hits"]["hits"]}


def streams_run(binary, n_changes, delay_ms=0, reset_every_s=0, perf_dir=None):
    env = poolkit.Env("bds")
    table = StreamTable(env.stream)
    port = 19100 + os.getpid() % 400
    sup = proxy = None
    try:
        t_put = time.time()
        n_items = table.load(n_changes)
        put_s = time.time() - t_put
        assert n_items <= 10000, "index_versions reads at most 10 000 documents"
        _, shards = read_stream(table.name)
        facts, problems, last_seq, want_ver = check_stream(shards, n_items)
        n_records = facts["stream_records"]
        ddb = poolkit.need("D2O_TEST_DYNAMODB")
        if delay_ms or reset_every_s:
            proxy = SlowStream(ddb, delay_ms, reset_every_s)
        t0 = time.time()
        sup = poolkit.Supervisor(binary, env, "S", workers=1, lease_ms=pool_bench.LEASE_MS,
                                 metrics_port=port, extra=[
                                     "--source", "dynamodb-streams",
                                     "--streams-endpoint", proxy.url if proxy else ddb,
                                     "--index-map", "%s=%s" % (table.name, env.index),
                                     "--key-schema", "%s=book_id" % table.name,
                                     "--get-records-limit", "1000"])
        poolkit.wait_for("the first record read", lambda: (pool_bench.metric_total(
            port, "ddb2os_records_read_total") or 0) > 0, 120, step=0.05)
        t_first = time.time()
        if perf_dir:
            os.makedirs(perf_dir, exist_ok=True)
            perf = subprocess.Popen(["perf", "record", "-q", "-F", "999", "--call-graph",
                                     "dwarf,8192", "-o", os.path.join(perf_dir, "perf.data"),
                                     "-p", str(sup.worker_pids()[0])])
        cpu0 = sum(pool_bench.proc_cpu_s(p) for p in sup.worker_pids() + [sup.proc.pid])
        # The end is the checkpoint at each shard's last record, as the stream itself says; a
        # count of records read would also count a record read twice.
        # when the metrics' judgement (records read, none pending) first held, and how many
        # items OpenSearch then held at their last put (what the benchmark used to check)
        said = []

        def at_end():
            if not said and pool_bench.drained(port, n_records):
                said.append(time.time())
                said.append(last_round_count(env))
            return checkpoints_at_end(env, last_seq)
        poolkit.wait_for("every shard checkpointed at its last record", at_end, 900, step=0.1)
        t_done = time.time()
        if perf_dir:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=300)
        pids = sup.worker_pids()
        cpu = sum(pool_bench.proc_cpu_s(p) for p in pids + [sup.proc.pid]) - cpu0
        rss = max(pool_bench.proc_hwm_mib(p) for p in pids)
        calls = pool_bench.metric_total(port, "ddb2os_getrecords_calls_total")
        read = pool_bench.metric_total(port, "ddb2os_records_read_total")
        outcomes = pool_bench.metric_values(port, "ddb2os_documents_total")
        stale, dlq = (sum(float(x.rsplit(" ", 1)[1]) for x in outcomes if 'outcome="%s"' % o in x)
                      for o in ("stale", "dlq"))
        if dlq:
            problems.append("%d records went to the dead-letter queue: %s" % (dlq, env.rows(
                "SELECT error_class, count(*) FROM dlq WHERE application = '%s' GROUP BY 1"
                % env.app)))
        docs = index_versions(env)
        wrong = sorted((k, docs.get(k), v) for k, v in want_ver.items()
                       if docs.get(k) != (ROUNDS - 1, v))
        if stale > read - n_records:
            # every put is newer than the one before it: a 409 that no second reading of a
            # record explains is a later change written at a version not above an earlier one
            problems.append("%d writes refused as older, %d records read twice"
                            % (stale, read - n_records))
        if wrong:
            problems.append("%d of %d items not at their last put and its version, e.g. "
                            "(item, (round, version) in OpenSearch, version wanted) %s\n%s"
                            % (len(wrong), n_items, wrong[:3], sup.tail(20)))
    finally:
        if sup:
            sup.stop()
        if proxy:
            proxy.stop()
        table.drop()
        env.delete_index()
        if sup:
            env.forget_rows()
    r = {"source": "dynamodb-streams", "records": n_records, "startup_s": t_first - t0,
         "records_per_s": n_records / (t_done - t_first),
         "cpu_ms_per_1000": cpu * 1e6 / n_records, "peak_rss_mib": rss, "put_s": put_s,
         "calls": calls, "ms_per_call": (t_done - t_first) * 1000 / max(1, calls),
         "reread": read - n_records, "stale": stale, "problems": problems,
         "metrics_early_s": t_done - said[0] if said else 0.0,
         "at_metrics_drained": said[1] if said else -1, "items": n_items}
    r.update(facts)
    return r


def kinesis_run(binary, n_changes):
    r = pool_bench.scaling_run(binary, 1, 1, n_changes)
    r["source"] = "kinesis (kinesalite)"
    return r


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, args = sys.argv[1], sys.argv[2:]

    def opt(name, default):
        return int(args[args.index(name) + 1]) if name in args else default

    n_changes, repeat = opt("--records", 20000), opt("--repeat", 2)
    delay_ms, reset_every_s = opt("--delay-ms", 0), opt("--reset-every-s", 0)
    only = args[args.index("--only") + 1] if "--only" in args else None
    perf_dir = args[args.index("--perf") + 1] if "--perf" in args else None
    runs = []
    if only in (None, "streams"):
        runs.append(lambda: streams_run(binary, n_changes, delay_ms, reset_every_s, perf_dir))
    if only in (None, "kinesis"):
        runs.append(lambda: kinesis_run(binary, n_changes))
    wrong = 0
    for _ in range(repeat):
        for run in runs:
            r = run()
            print("%(source)s: %(records)d records, %(records_per_s).0f records/s after the first "
                  "read (%(startup_s).1f s from start), %(cpu_ms_per_1000).1f CPU ms per 1000 "
                  "(ddb2os processes), peak worker RSS %(peak_rss_mib).1f MiB (load %(put_s).1f s)"
                  % r, flush=True)
            if "calls" in r:
                print("  %(calls).0f GetRecords calls, %(ms_per_call).0f ms per call on average; "
                      "stream: %(shards)d shards, %(stream_records)d records over %(seconds)d "
                      "seconds, ApproximateCreationDateTime backwards %(acdt_backwards)d times; "
                      "records read twice %(reread).0f, writes refused as older %(stale).0f; "
                      "the metrics said drained %(metrics_early_s).2f s before the checkpoints, "
                      "with %(at_metrics_drained)d of %(items)d items at their last put"
                      % r, flush=True)
            for p in r.get("problems", []):
                print("  WRONG: %s" % p, flush=True)
            if r.get("problems"):
                wrong += 1
                if "--keep-going" not in args:
                    sys.exit(1)
    if perf_dir:
        import profile_worker
        data = os.path.join(perf_dir, "perf.data")
        print("\n== self time by symbol ==")
        print(profile_worker.report(data, "--no-children", "--sort", "dso,symbol", "-g", "none"))
        print("\n== time including callees ==")
        print(profile_worker.report(data, "--children", "--sort", "symbol", "-g", "none"))
    if wrong:
        print("%d wrong runs" % wrong)
        sys.exit(1)


if __name__ == "__main__":
    main()
