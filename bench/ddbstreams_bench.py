#!/usr/bin/python3
"""ddb2os reading a DynamoDB stream directly (source = dynamodb-streams) next to the same
number of changes read from Kinesis (numbers in docs/performance.md).

usage: ddbstreams_bench.py DDB2OS_BINARY [--records N] [--repeat K] [--only streams|kinesis]

  streams   a fresh DynamoDB Local table with a NEW_AND_OLD_IMAGES stream gets N changes
            (BatchWriteItem puts of 25 items: N/4 items, each put 4 times, 4 attributes) before
            ddb2os starts; then one supervisor with 1 worker reads the table's stream and is
            timed from its first record read to the last checkpoint (pending records 0, every
            document acknowledged by OpenSearch); OpenSearch must then hold every item at its
            last put. Records/s, CPU ms per 1000 records (supervisor + worker utime + stime from
            /proc over that interval) and the worker's peak RSS (VmHWM).
  kinesis   the same measure on kinesalite with N records (pool_bench.py's scaling run, 1 shard
            and 1 worker, 4 changes per item and one in five deleted), so the rows sit together

Every run uses a fresh table or stream, application and index and removes them (and its
lease rows) afterwards. The servers share the machine with the benchmark: records/s is a floor.
"""
import os
import sys
import time

import pool_bench  # puts tests/integration on sys.path first
import poolkit
import ddbstreams_test

ROUNDS = 4


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


def last_round_count(env):
    """Documents of the run's index that hold their item's last put."""
    env.os_call("POST", "/%s/_refresh" % env.index)
    status, res = env.os_call("POST", "/%s/_count" % env.index,
                              {"query": {"term": {"round": ROUNDS - 1}}})
    assert status == 200, res
    return res["count"]


def streams_run(binary, n_changes):
    env = poolkit.Env("bds")
    table = StreamTable(env.stream)
    port = 19100 + os.getpid() % 400
    sup = None
    try:
        t_put = time.time()
        n_items = table.load(n_changes)
        put_s = time.time() - t_put
        n_records = n_items * ROUNDS
        ddb = poolkit.need("D2O_TEST_DYNAMODB")
        t0 = time.time()
        sup = poolkit.Supervisor(binary, env, "S", workers=1, lease_ms=pool_bench.LEASE_MS,
                                 metrics_port=port, extra=[
                                     "--source", "dynamodb-streams", "--streams-endpoint", ddb,
                                     "--index-map", "%s=%s" % (table.name, env.index),
                                     "--key-schema", "%s=book_id" % table.name,
                                     "--get-records-limit", "1000"])
        poolkit.wait_for("the first record read", lambda: (pool_bench.metric_total(
            port, "ddb2os_records_read_total") or 0) > 0, 120, step=0.05)
        t_first = time.time()
        cpu0 = sum(pool_bench.proc_cpu_s(p) for p in sup.worker_pids() + [sup.proc.pid])
        pool_bench.wait_drained(port, n_records, 900)
        t_done = time.time()
        pids = sup.worker_pids()
        cpu = sum(pool_bench.proc_cpu_s(p) for p in pids + [sup.proc.pid]) - cpu0
        rss = max(pool_bench.proc_hwm_mib(p) for p in pids)
        calls = pool_bench.metric_total(port, "ddb2os_getrecords_calls_total")
        got = last_round_count(env)
        t_late = time.time()
        # The drain is judged from the metrics; a document that arrives after it was late, not
        # lost: wait a while and say so, so that "late" and "wrong" are told apart.
        while got != n_items and time.time() - t_late < 60:
            time.sleep(0.5)
            got = last_round_count(env)
        if got == n_items and time.time() - t_late > 0.5:
            print("  every item at its last put %.1f s after the metrics said drained"
                  % (time.time() - t_late), flush=True)
        if got != n_items:
            _, stale = env.os_call("POST", "/%s/_search?version=true" % env.index, {
                "size": 3, "query": {"bool": {"must_not": {"term": {"round": ROUNDS - 1}}}}})
            raise AssertionError("OpenSearch holds %d of %d items at their last put, e.g. %s\n%s"
                                 % (got, n_items, [(h["_id"], h["_version"], h["_source"])
                                                   for h in stale["hits"]["hits"]], sup.tail(20)))
    finally:
        if sup:
            sup.stop()
        table.drop()
        env.delete_index()
        env.forget_rows()
    return {"source": "dynamodb-streams", "records": n_records, "startup_s": t_first - t0,
            "records_per_s": n_records / (t_done - t_first),
            "cpu_ms_per_1000": cpu * 1e6 / n_records, "peak_rss_mib": rss, "put_s": put_s,
            "calls": calls, "ms_per_call": (t_done - t_first) * 1000 / max(1, calls)}


def kinesis_run(binary, n_changes):
    r = pool_bench.scaling_run(binary, 1, 1, n_changes)
    r["source"] = "kinesis (kinesalite)"
    return r


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, args = sys.argv[1], sys.argv[2:]
    n_changes = int(args[args.index("--records") + 1]) if "--records" in args else 20000
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 2
    only = args[args.index("--only") + 1] if "--only" in args else None
    runs = []
    if only in (None, "streams"):
        runs.append(streams_run)
    if only in (None, "kinesis"):
        runs.append(kinesis_run)
    for _ in range(repeat):
        for run in runs:
            r = run(binary, n_changes)
            print("%(source)s: %(records)d records, %(records_per_s).0f records/s after the first "
                  "read (%(startup_s).1f s from start), %(cpu_ms_per_1000).1f CPU ms per 1000 "
                  "(ddb2os processes), peak worker RSS %(peak_rss_mib).1f MiB (load %(put_s).1f s)"
                  % r, flush=True)
            if "calls" in r:
                print("  %(calls).0f GetRecords calls, %(ms_per_call).0f ms per call on average"
                      % r, flush=True)


if __name__ == "__main__":
    main()
