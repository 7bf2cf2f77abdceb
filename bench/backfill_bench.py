#!/usr/bin/python3
"""backfill_bench: backfill and verify throughput, and verify's memory as the table grows.

usage: backfill_bench.py DDB2OS_BINARY [--items 10000,100000] [--workers 2]
                         [--bucket-items 65536,8192] [--index backfill|direct] [--loaders 4]

For each size N: a fresh DynamoDB Local table gets N items of every attribute type (the items of
tests/integration/backfill_test.py), written with BatchWriteItem (25 items a call) by --loaders
processes (load items/s is printed, not otherwise used), then the index is filled:
  --index backfill (default)
             `ddb2os backfill` (no stream, 2 workers, 8 segments) into a fresh index: items/s;
             then os-alone: the same documents (read back from that index) bulk-indexed into
             another fresh index with 5 MiB _bulk bodies from one client: documents/s
             OpenSearch takes alone;
  --index direct
             the loaders also write each item as an INSERT change record; `ddb2os transform`
             turns them into the exact bulk NDJSON the sink sends, posted as 5 MiB _bulk bodies:
             the index holds the documents a backfill would write, without waiting for
             DynamoDB Local's Scan (for the verify sizes a backfill would take too long to build);
and then, for each --bucket-items setting,
  verify     `ddb2os verify` of the table against the index: items/s and peak RSS: GNU time's
             maximum resident set size (the largest of the process and its waited-for workers)
             and, sampled from /proc every 0.1 s, VmHWM of the coordinator and of each Scan
             worker process.
Prints one JSON line per size and setting.
"""
import argparse
import base64
import decimal
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import backfill_test as bt  # noqa: E402 - its item generator
from poolkit import ENV_AWS, REGION, Env, need  # noqa: E402


def post_bulk(e, bodies):
    """POSTs each _bulk body; every action must succeed."""
    for b in bodies:
        req = urllib.request.Request(e.opensearch + "/_bulk", data=b, method="POST",
                                     headers={"Content-Type": "application/x-ndjson"})
        with urllib.request.urlopen(req, timeout=300) as r:
            assert not json.loads(r.read())["errors"]


def chunks(lines, limit=5 * 1024 * 1024):
    """Joins NDJSON lines (str) into _bulk bodies of about limit bytes, never splitting a pair."""
    bodies, cur, size = [], [], 0
    for line in lines:
        cur.append(line)
        size += len(line)
        if size > limit and len(cur) % 2 == 0:
            bodies.append("".join(cur).encode())
            cur, size = [], 0
    if cur:
        bodies.append("".join(cur).encode())
    return bodies


def canonical(v, blob=bytes):
    """An item attribute in the form DynamoDB Local stores and returns it: numbers written out
    without exponent or trailing zeros, sets sorted (binary by Java's signed bytes); each binary
    value passed through blob (b64 for a change record, which carries binary as base64)."""
    (t, x), = v.items()
    if t == "N":
        return {t: num(x)}
    if t == "NS":
        return {t: sorted((num(y) for y in x), key=decimal.Decimal)}
    if t == "SS":
        return {t: sorted(x)}
    if t == "B":
        return {t: blob(x)}
    if t == "BS":
        return {t: [blob(b) for b in sorted(x, key=lambda b: [c - 256 if c > 127 else c
                                                               for c in b])]}
    if t == "M":
        return {t: {k: canonical(w, blob) for k, w in x.items()}}
    if t == "L":
        return {t: [canonical(w, blob) for w in x]}
    return v


def num(x):
    d = decimal.Decimal(x).normalize()
    return format(d, "f") if d != 0 else "0"


def b64(b):
    return base64.b64encode(b).decode()


def load_part(job):
    """One loader process: items lo..hi-1 by BatchWriteItem; with records, also their INSERT
    change records, one JSON line each, into the file records."""
    ddb_url, table, lo, hi, records = job
    ddb = bt.ddb_client(ddb_url)
    rnd = random.Random(lo)
    out = open(records, "w") if records else None
    stamp = int(time.time() * 1000)
    batch = []
    for i in range(lo, hi):
        it = {k: canonical(v) for k, v in bt.item(i, rnd).items()}
        batch.append({"PutRequest": {"Item": it}})
        if out:
            ddb_part = {"ApproximateCreationDateTime": stamp,
                        "ApproximateCreationDateTimePrecision": "MILLISECOND",
                        "Keys": {"pk": it["pk"], "sk": it["sk"]},
                        "NewImage": {k: canonical(v, b64) for k, v in it.items()},
                        "SizeBytes": 600}
            out.write(json.dumps({"awsRegion": REGION, "eventID": "e%d" % i,
                                  "eventName": "INSERT", "recordFormat": "application/json",
                                  "tableName": table, "dynamodb": ddb_part,
                                  "eventSource": "aws:dynamodb"}) + "\n")
        if len(batch) == 25 or i == hi - 1:
            req = {table: batch}
            while req:
                req = ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}
            batch = []
    if out:
        out.close()


def load(ddb_url, table, n, procs, records_dir):
    """Loads items 0..n-1 from procs processes; returns the change record files (or [])."""
    step = (n + procs - 1) // procs
    jobs = [(ddb_url, table, lo, min(n, lo + step),
             os.path.join(records_dir, "r%d.jsonl" % lo) if records_dir else None)
            for lo in range(0, n, step)]
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        pool.map(load_part, jobs)
    return [j[4] for j in jobs if j[4]]


def index_direct(binary, env, e, table, files):
    """The records through `ddb2os transform`, posted as _bulk bodies; documents/s."""
    with open(os.devnull) as null:
        cat = subprocess.Popen(["cat"] + files, stdout=subprocess.PIPE, stdin=null)
        r = subprocess.run([binary, "transform", "--index-map", "%s=%s" % (table, e.index),
                            "--key-schema", "%s=pk:sk" % table], stdin=cat.stdout, env=env,
                           capture_output=True, text=True)
        cat.wait()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines(keepends=True)
    t = time.time()
    post_bulk(e, chunks(lines))
    return len(lines) / 2 / (time.time() - t)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed_verify(cmd, env):
    """Runs cmd (ddb2os verify ...) under GNU time, sampling VmHWM of the coordinator and its
    workers; returns (seconds, time's max RSS KiB, coordinator KiB, largest worker KiB, stdout)."""
    t = time.time()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M"] + cmd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    coord, workers = 0, {}
    while p.poll() is None:
        for c in children(p.pid):
            coord = max(coord, vm_hwm_kib(c))
            for w in children(c):
                workers[w] = max(workers.get(w, 0), vm_hwm_kib(w))
        time.sleep(0.1)
    out, err = p.communicate()
    secs = time.time() - t
    assert p.returncode == 0, out + err
    return secs, int(err.strip().splitlines()[-1]), coord, max(workers.values() or [0]), out


def bulk_alone(e, index, target):
    """Reads index's documents with a scroll and bulk-indexes them into target; documents/s."""
    docs = []
    status, res = e.os_call("POST", "/%s/_search?scroll=2m" % index, {"size": 5000})
    while status == 200 and res["hits"]["hits"]:
        docs += [(h["_id"], h["_source"]) for h in res["hits"]["hits"]]
        status, res = e.os_call("POST", "/_search/scroll", {"scroll": "2m",
                                                            "scroll_id": res["_scroll_id"]})
    bodies = chunks([json.dumps({"index": {"_index": target, "_id": i}}) + "\n" +
                     json.dumps(src) + "\n" for i, src in docs])
    t = time.time()
    post_bulk(e, bodies)
    return len(docs) / (time.time() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--items", default="10000,30000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bucket-items", default="65536")
    p.add_argument("--index", choices=("backfill", "direct"), default="backfill")
    p.add_argument("--loaders", type=int, default=4)
    args = p.parse_args()
    ddb_url = need("D2O_TEST_DYNAMODB")
    env = dict(os.environ)
    env.update(ENV_AWS)
    for n in [int(x) for x in args.items.split(",")]:
        e = Env("bb")
        table = "bb-%s" % e.app
        ddb = bt.ddb_client(ddb_url)
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "N"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
        e.os_call("PUT", "/%s" % e.index, {"mappings": {"dynamic": False}})
        records_dir = tempfile.mkdtemp(prefix="ddb2os-bb-") if args.index == "direct" else None
        t = time.time()
        files = load(ddb_url, table, n, args.loaders, records_dir)
        res = {"items": n, "load_items_per_s": round(n / (time.time() - t))}
        common = ["--table", table, "--application", e.app, "--aws-region", REGION,
                  "--dynamodb-endpoint", ddb_url, "--opensearch-url", e.opensearch,
                  "--index-map", "%s=%s" % (table, e.index), "--pg-conninfo", e.pg,
                  "--workers", str(args.workers), "--log-level", "warn"]
        if args.index == "direct":
            res["index_direct_docs_per_s"] = round(index_direct(args.binary, env, e, table, files))
            for f in files:
                os.unlink(f)
            os.rmdir(records_dir)
        else:
            e.os_call("PUT", "/%s-alone" % e.index, {"mappings": {"dynamic": False}})
            t = time.time()
            r = subprocess.run([args.binary, "backfill", "--no-stream-check", "--quiet"] + common,
                               env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            res["backfill_items_per_s"] = round(n / (time.time() - t))
            e.os_call("POST", "/%s/_refresh" % e.index)
            res["os_alone_docs_per_s"] = round(bulk_alone(e, e.index, "%s-alone" % e.index))
            e.os_call("DELETE", "/%s-alone" % e.index)
        e.os_call("POST", "/%s/_refresh" % e.index)
        print(json.dumps(res), flush=True)
        for b in [int(x) for x in args.bucket_items.split(",")]:
            secs, rss, coord, worker, _ = timed_verify(
                [args.binary, "verify", "--bucket-items", str(b)] + common, env)
            print(json.dumps({"items": n, "bucket_items": b, "buckets": n // b + 1,
                              "verify_items_per_s": round(n / secs),
                              "verify_peak_rss_mib": round(rss / 1024, 1),
                              "coordinator_vmhwm_mib": round(coord / 1024, 1),
                              "worker_vmhwm_mib": round(worker / 1024, 1)}), flush=True)
        ddb.delete_table(TableName=table)
        e.delete_index()
        e.sql("DELETE FROM backfills WHERE application = '%s'" % e.app)


if __name__ == "__main__":
    main()
