#!/usr/bin/python3
"""backfill_bench: backfill and verify throughput, and verify's memory as the table grows.

usage: backfill_bench.py DDB2OS_BINARY [--items 10000,30000] [--workers 2] [--bucket-items N]

For each size N: a fresh DynamoDB Local table gets N items of every attribute type (the items of
tests/integration/backfill_test.py), then
  backfill   `ddb2os backfill` (no stream, 2 workers, 8 segments) into a fresh index: items/s;
  os-alone   the same documents (read back from that index) bulk-indexed into another fresh
             index with 5 MiB _bulk bodies from one client: documents/s OpenSearch takes alone;
  verify     `ddb2os verify` of the table against the index: items/s and the peak RSS of the
             whole process tree (GNU time's maximum resident set size, which covers the waited-for
             worker processes), with --bucket-items as given (default 65536).
Loading the items is not timed. Prints one JSON line per size.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import backfill_test as bt  # noqa: E402 - its item generator and loader
from poolkit import ENV_AWS, REGION, Env, need  # noqa: E402


def bulk_alone(e, index, target):
    """Reads index's documents with a scroll and bulk-indexes them into target; documents/s."""
    docs = []
    status, res = e.os_call("POST", "/%s/_search?scroll=2m" % index, {"size": 5000})
    while status == 200 and res["hits"]["hits"]:
        docs += [(h["_id"], h["_source"]) for h in res["hits"]["hits"]]
        status, res = e.os_call("POST", "/_search/scroll", {"scroll": "2m",
                                                            "scroll_id": res["_scroll_id"]})
    bodies, cur = [], []
    size = 0
    for i, src in docs:
        line = json.dumps({"index": {"_index": target, "_id": i}}) + "\n" + json.dumps(src) + "\n"
        cur.append(line)
        size += len(line)
        if size > 5 * 1024 * 1024:
            bodies.append("".join(cur).encode())
            cur, size = [], 0
    if cur:
        bodies.append("".join(cur).encode())
    t = time.time()
    for b in bodies:
        req = urllib.request.Request(e.opensearch + "/_bulk", data=b, method="POST",
                                     headers={"Content-Type": "application/x-ndjson"})
        with urllib.request.urlopen(req, timeout=300) as r:
            assert not json.loads(r.read())["errors"]
    return len(docs) / (time.time() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--items", default="10000,30000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bucket-items", type=int, default=65536)
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
        e.os_call("PUT", "/%s-alone" % e.index, {"mappings": {"dynamic": False}})
        t = time.time()
        bt.load(ddb, table, n)
        load_s = time.time() - t
        common = ["--table", table, "--application", e.app, "--aws-region", REGION,
                  "--dynamodb-endpoint", ddb_url, "--opensearch-url", e.opensearch,
                  "--index-map", "%s=%s" % (table, e.index), "--pg-conninfo", e.pg,
                  "--workers", str(args.workers), "--log-level", "warn"]
        t = time.time()
        r = subprocess.run([args.binary, "backfill", "--no-stream-check", "--quiet"] + common,
                           env=env, capture_output=True, text=True)
        backfill_s = time.time() - t
        assert r.returncode == 0, r.stderr
        e.os_call("POST", "/%s/_refresh" % e.index)
        alone = bulk_alone(e, e.index, "%s-alone" % e.index)
        t = time.time()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", args.binary, "verify",
                            "--bucket-items", str(args.bucket_items)] + common,
                           env=env, capture_output=True, text=True)
        verify_s = time.time() - t
        assert r.returncode == 0, r.stdout + r.stderr
        rss_kib = int(r.stderr.strip().splitlines()[-1])
        print(json.dumps({"items": n, "load_s": round(load_s, 1),
                          "backfill_items_per_s": round(n / backfill_s),
                          "os_alone_docs_per_s": round(alone),
                          "verify_items_per_s": round(n / verify_s),
                          "verify_peak_rss_mib": round(rss_kib / 1024, 1),
                          "bucket_items": args.bucket_items}), flush=True)
        ddb.delete_table(TableName=table)
        e.delete_index()
        e.os_call("DELETE", "/%s-alone" % e.index)
        e.sql("DELETE FROM backfills WHERE application = '%s'" % e.app)


if __name__ == "__main__":
    main()
