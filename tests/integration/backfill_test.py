#!/usr/bin/python3
"""backfill and verify on DynamoDB Local, kinesis-mock, PostgreSQL and OpenSearch.

usage: backfill_test.py BUILD/ddb2os      (items: D2O_BACKFILL_ITEMS, default 10000)

One scenario, in order:
 1. A table (composite key, every attribute type) gets its items BEFORE its stream is enabled, so
    only the backfill can bring them in. Then the stream is turned on, the Kinesis destination is
    played by scripts/dev/stream-forwarder and `ddb2os run` consumes it (delete_mode = tombstone).
 2. A workload updates, deletes and creates items through the stream for the whole backfill.
 3. `ddb2os backfill` runs rate-limited; a second backfill of the table is refused while it runs;
    the first is killed with SIGKILL (whole process group) mid-way, then run again: it resumes and
    reads no segment that was finished before the kill.
 4. After the workload stops and the pipeline catches up, `ddb2os verify` reports an exact match;
    every document's version is the backfill's or newer, and every item the workload changed after
    the backfill started carries a newer version than the backfill's (the stream's change won).
 5. Drift is seeded: documents deleted, items changed while the pipeline is stopped (stale),
    documents without an item (extra), one at a version from the future (different), one whose
    TTL has expired (kept with ttl_deletes = keep: not extra). verify finds each class with the
    right counts and ids; --repair fixes all but the future one (superseded); verify matches
    once that one is removed.
"""
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402
from poolkit import ENV_AWS, REGION, Env, Supervisor, free_port, need, wait_for  # noqa: E402

import botocore.config  # noqa: E402
import botocore.session  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1] if len(sys.argv) > 1 else "ddb2os"
N = int(os.environ.get("D2O_BACKFILL_ITEMS", "10000"))
SEGMENTS = 8
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def ddb_client(url):
    return botocore.session.get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=url, aws_access_key_id="AKIDBACKFILL",
        aws_secret_access_key="backfill-secret",
        config=botocore.config.Config(retries={"max_attempts": 10, "mode": "standard"}))


def item(i, rnd):
    """Every attribute type ddb2os converts, with the edge cases of numbers and nesting."""
    it = {
        "pk": {"S": "p%04d" % (i % 997)}, "sk": {"N": str(i)},
        "title": {"S": "Title %d \u00e9\u4e2d \"q\" \\" % i},
        "price": {"N": "%d.%02d" % (rnd.randint(0, 999), rnd.randint(0, 99))},
        "big": {"N": "1234567890123456789012345678901234567%d" % (i % 10)},
        "tiny": {"N": "1E-%d" % (100 + i % 30)},
        "flag": {"BOOL": i % 2 == 0}, "nothing": {"NULL": True},
        "blob": {"B": os.urandom(8 + i % 5)},
        "tags": {"SS": ["t%d" % (i % 7), "all"]},
        "nums": {"NS": [str(i), "0.5", "-3"]},
        "blobs": {"BS": [b"\x00\x01", bytes([i % 256, 7])]},
        "meta": {"M": {"depth": {"M": {"n": {"N": str(i)}, "l": {"L": [{"S": "x"}, {"N": "1"}]}}},
                       "e": {"M": {"x": {"S": ""}}}}},
        "list": {"L": [{"BOOL": True}, {"NULL": True}, {"L": []}, {"SS": ["a"]}]},
    }
    if i % 50 == 0:
        del it["nothing"]
    return it


def load(ddb, table, n):
    """BatchWriteItem in 4 threads, retrying unprocessed items."""
    def worker(lo, hi):
        rnd = random.Random(lo)
        batch = []
        for i in range(lo, hi):
            batch.append({"PutRequest": {"Item": item(i, rnd)}})
            if len(batch) == 25 or i == hi - 1:
                req = {table: batch}
                while req:
                    res = ddb.batch_write_item(RequestItems=req)
                    req = res.get("UnprocessedItems") or {}
                batch = []
    step = (n + 3) // 4
    threads = [threading.Thread(target=worker, args=(k, min(n, k + step)))
               for k in range(0, n, step)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Workload(threading.Thread):
    """Updates, deletes and creates until stopped; remembers when each key was last changed."""

    def __init__(self, ddb, table, n):
        super().__init__(daemon=True)
        self.ddb, self.table, self.n = ddb, table, n
        self.stopped = threading.Event()
        self.last = {}  # (pk, sk) -> wall time after the change was acknowledged
        self.ops = 0

    def run(self):
        rnd = random.Random(7)
        next_new = self.n
        while not self.stopped.is_set():
            op = rnd.random()
            i = rnd.randrange(self.n)
            key = {"pk": {"S": "p%04d" % (i % 997)}, "sk": {"N": str(i)}}
            if op < 0.6:
                self.ddb.update_item(TableName=self.table, Key=key,
                                     UpdateExpression="SET title = :t, price = :p ADD tags :g",
                                     ExpressionAttributeValues={
                                         ":t": {"S": "changed %d" % self.ops},
                                         ":p": {"N": str(self.ops)}, ":g": {"SS": ["w"]}})
            elif op < 0.8:
                self.ddb.delete_item(TableName=self.table, Key=key)
            else:
                i = next_new
                next_new += 1
                self.ddb.put_item(TableName=self.table, Item=item(i, rnd))
                key = {"pk": {"S": "p%04d" % (i % 997)}, "sk": {"N": str(i)}}
            self.last[(key["pk"]["S"], key["sk"]["N"])] = time.time()
            self.ops += 1
            time.sleep(0.01)


def run_cli(args, env, timeout=600, **kw):
    return subprocess.run([BIN] + args, env=env, capture_output=True, text=True, timeout=timeout,
                          **kw)


def verify(common, env, extra=()):
    res = run_cli(["verify", "--json", "--samples", "20"] + common + list(extra), env)
    try:
        return res.returncode, json.loads(res.stdout.strip().splitlines()[-1]), res.stderr
    except (ValueError, IndexError):
        return res.returncode, None, res.stdout + res.stderr


def segment_rows(e, table):
    return {int(r[0]): r[1:] for r in e.rows(
        "SELECT segment, state, items, pages, finished_at FROM backfill_segments"
        " WHERE application = '%s' AND table_name = '%s'" % (e.app, table))}


def main():
    ddb_url = need("D2O_TEST_DYNAMODB")
    e = Env("bf")
    table = "bf-%s" % e.app
    ddb = ddb_client(ddb_url)
    env = dict(os.environ)
    env.update(ENV_AWS)
    common = ["--table", table, "--application", e.app, "--stream-name", e.stream,
              "--aws-region", REGION, "--dynamodb-endpoint", ddb_url,
              "--opensearch-url", e.opensearch, "--index-map", "%s=%s" % (table, e.index),
              "--pg-conninfo", e.pg, "--delete-mode", "tombstone", "--ttl-deletes", "keep",
              "--log-format", "text", "--bulk-flush-ms", "50"]
    forwarder = sup = None
    work = Workload(ddb, table, N)
    t0 = time.time()
    try:
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "N"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
        # The index's mapping takes every attribute as it comes: numbers of 38 digits and
        # 1E-129, lists of mixed types. Only the keys are indexed; _source keeps everything.
        e.os_call("PUT", "/%s" % e.index, {"mappings": {"dynamic": False, "properties": {
            "pk": {"type": "keyword"}, "sk": {"type": "long"}, "title": {"type": "text"}}}})
        load(ddb, table, N)
        print("loaded %d items in %.1f s" % (N, time.time() - t0), flush=True)
        ddb.update_table(TableName=table, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires"})
        fwd_log = open(os.path.join(e.logdir, "forwarder.log"), "wb")
        forwarder = subprocess.Popen(
            [os.path.join(ROOT, "scripts/dev/stream-forwarder"), "--dynamodb", ddb_url,
             "--kinesis", e.kinesis_url, "--table", table, "--stream", e.stream,
             "--create-stream", "2", "--recreate-stream", "--max-seconds", "900"],
            stdout=fwd_log, stderr=subprocess.STDOUT, env=env)
        wait_for("the forwarder", lambda: b"forwarding" in open(fwd_log.name, "rb").read(), 60)
        # without consumed leases the backfill refuses to start
        early = run_cli(["backfill", "--quiet"] + common, env)
        check(early.returncode == 1 and "not consumed" in early.stderr,
              "backfill refuses while the stream is not consumed: %s" % early.stderr.strip()[-200:])
        check(e.sql("SELECT count(*) FROM backfills WHERE application = '%s'" % e.app) == "0",
              "a refused backfill leaves no state behind")
        sup = Supervisor(BIN, e, "bf-run", workers=2, extra=(
            "--index-map", "%s=%s" % (table, e.index), "--key-schema", "%s=pk:sk" % table,
            "--delete-mode", "tombstone", "--ttl-deletes", "keep"))
        wait_for("leases", lambda: e.sql(
            "SELECT count(*) FROM leases WHERE application = '%s' AND checkpoint <> 'LATEST'"
            % e.app) == "2", 60)
        work.start()
        time.sleep(1.0)

        # run 1: rate-limited, killed mid-way
        t_backfill = time.time()
        rate = max(100, N // 20)
        port = free_port()
        log1 = open(os.path.join(e.logdir, "backfill1.log"), "wb")
        b1 = subprocess.Popen([BIN, "backfill", "--workers", "2", "--segments", str(SEGMENTS),
                               "--rate-items", str(rate), "--page-limit", "200",
                               "--progress-port", str(port), "--progress"] + common,
                              stdout=log1, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
        wait_for("segments in progress", lambda: e.sql(
            "SELECT count(*) FROM backfill_segments WHERE application = '%s' AND items > 0"
            % e.app) not in ("", "0"), 120)
        second = run_cli(["backfill", "--quiet"] + common, env, timeout=60)
        check(second.returncode == 1 and "another backfill" in second.stderr,
              "a second backfill of the table is refused while one runs: %s"
              % second.stderr.strip()[-200:])
        # kill when two segments are done and another one is half read
        wait_for("two finished segments and one half read", lambda: e.sql(
            "SELECT count(*) FILTER (WHERE state = 'done') >= 2 AND count(*) FILTER (WHERE"
            " state = 'running' AND items > 0) >= 1 FROM backfill_segments"
            " WHERE application = '%s'" % e.app) == "t", 180, step=0.05)
        def scrape():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
                return dict(line.split(" ", 1) for line in r.read().decode().splitlines()
                            if line and not line.startswith("#"))
        # the coordinator reads its progress from the segments table once per turn of its
        # loop, so /metrics may lag the table by a turn: look again until it shows it (the
        # deadline, scaled by D2O_TEST_TIMEOUT_SCALE, is for a coordinator that never does)
        metrics = {}

        def progress_shown():
            metrics.clear()
            metrics.update(scrape())
            return (metrics.get("ddb2os_backfill_segments_total") == "8"
                    and int(metrics.get("ddb2os_backfill_segments_done", "0")) >= 1
                    and int(metrics.get("ddb2os_backfill_items_total", "0")) > 0
                    and metrics.get("ddb2os_backfill_version", "").isdigit())
        try:
            shown = wait_for("the backfill's progress in /metrics", progress_shown, 5, step=0.05)
        except AssertionError:
            shown = False
        check(shown, "the backfill's progress series: %s" % metrics)
        items_at_kill = int(e.sql("SELECT sum(items) FROM backfill_segments WHERE application"
                                  " = '%s'" % e.app))
        elapsed = time.time() - t_backfill
        os.killpg(b1.pid, signal.SIGKILL)
        b1.wait()
        check(items_at_kill <= rate * elapsed * 1.25 + 2 * 200,
              "the rate limit holds: %d items in %.1f s at --rate-items %d"
              % (items_at_kill, elapsed, rate))
        time.sleep(0.5)
        before = segment_rows(e, table)
        done_before = {s for s, r in before.items() if r[0] == "done"}
        check(0 < len(done_before) < SEGMENTS,
              "killed mid-way: %d of %d segments done" % (len(done_before), SEGMENTS))
        version = int(e.sql("SELECT version FROM backfills WHERE application = '%s'" % e.app))

        # run 2: resumes
        b2 = run_cli(["backfill", "--workers", "2", "--progress"] + common, env)
        check(b2.returncode == 0, "the resumed backfill finishes: %s" % b2.stderr.strip()[-300:])
        check("resumed at version %d" % version in b2.stderr,
              "the resumed backfill keeps the first run's version %d" % version)
        after = segment_rows(e, table)
        check(all(after[s] == before[s] for s in done_before),
              "segments finished before the kill are untouched by the resumed run")
        reread = [s for s in done_before if "segment %d/%d" % (s, SEGMENTS) in b2.stderr]
        check(not reread, "the resumed run reads no finished segment (read again: %s)" % reread)
        check(all(r[0] == "done" for r in after.values()), "every segment is done")
        partial = [s for s in range(SEGMENTS) if s not in done_before and before[s][1] != "0"]
        check(partial and all("segment %d/%d resumes" % (s, SEGMENTS) in b2.stderr
                              for s in partial),
              "segments stopped mid-way (%s) resume after their last key" % partial)
        time.sleep(2.0)
        work.stopped.set()
        work.join()
        print("workload: %d changes" % work.ops, flush=True)

        # the pipeline catches up; then verify must match exactly
        def matched():
            rc, rep, _ = verify(common, env)
            return rep if rc == 0 and rep and rep["match"] else None
        try:
            rep = wait_for("verify to match", matched, 300, step=3)
        except AssertionError:
            rc, rep, err = verify(common, env)
            print(json.dumps(rep), err[-2000:])
            rep = None
        check(rep is not None, "verify reports an exact match after backfill + stream")
        if rep:
            check(rep["items"] == rep["documents"] and rep["items"] > N * 0.8,
                  "%d items = %d documents" % (rep["items"], rep["documents"]))

        # versions: nothing below the backfill's; every later change won
        e.os_call("POST", "/%s/_refresh" % e.index)
        versions = {}
        status, res = e.os_call("POST", "/%s/_search?scroll=1m" % e.index,
                                {"size": 5000, "version": True, "_source": ["pk", "sk"]})
        while status == 200 and res["hits"]["hits"]:
            for h in res["hits"]["hits"]:
                versions[h["_id"]] = h["_version"]
            status, res = e.os_call("POST", "/_search/scroll",
                                    {"scroll": "1m", "scroll_id": res["_scroll_id"]})
        check(versions and min(versions.values()) >= version,
              "no document is older than the backfill's version")
        later = [k for k, t in work.last.items() if t > t_backfill]
        lost = [k for k in later if versions.get("%s|%s" % k, version + 1) <= version]
        check(later and not lost, "all %d items changed after the backfill started carry the "
              "stream's newer version (lost: %s)" % (len(later), lost[:5]))
        untouched = [v for i, v in versions.items() if v == version]
        check(len(untouched) > N // 2, "%d documents are at the backfill's version" % len(untouched))

        # drift, with the pipeline stopped
        sup.stop()
        forwarder.send_signal(signal.SIGTERM)
        forwarder.wait(60)
        ids = sorted(i for i, v in versions.items() if v == version)
        gone = ids[:5]
        for i in gone:
            e.os_call("DELETE", "/%s/_doc/%s" % (e.index, i.replace("|", "%7C")))
        stale = ids[5:10]
        for i in stale:
            pk, sk = i.split("|")
            ddb.update_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"N": sk}},
                            UpdateExpression="SET title = :t",
                            ExpressionAttributeValues={":t": {"S": "missed by the index"}})
        # two documents of items that are gone, one that no item could have made
        extra = ["zz|1", "zz|2", "foreign-doc"]
        for i in extra:
            e.os_call("PUT", "/%s/_doc/%s?version=5&version_type=external" % (
                e.index, i.replace("|", "%7C")),
                {"pk": "zz", "sk": int(i[3:])} if i.startswith("zz|") else {"title": "?"})
        e.os_call("PUT", "/%s/_doc/zz-ttl?version=5&version_type=external" % e.index,
                  {"pk": "zz", "sk": 2, "expires": 1000})
        future = ids[10]
        e.os_call("PUT", "/%s/_doc/%s?version=%d&version_type=external" % (
            e.index, future.replace("|", "%7C"), version * 2), {"pk": "x", "sk": 0})
        e.os_call("POST", "/%s/_refresh" % e.index)
        rc, rep, err = verify(common, env)
        check(rc == 1 and rep and not rep["match"], "verify says the index differs (exit 1)")
        if rep:
            check(rep["missing"]["count"] == 5 and set(rep["missing"]["sample"]) == set(gone),
                  "missing: %s" % rep["missing"])
            check(rep["stale"]["count"] == 5 and set(rep["stale"]["sample"]) == set(stale),
                  "stale: %s" % rep["stale"])
            check(rep["extra"]["count"] == 3 and set(rep["extra"]["sample"]) == set(extra),
                  "extra (the expired TTL document is not): %s" % rep["extra"])
            check(rep["different"]["count"] == 1 and rep["different"]["sample"] == [future],
                  "different: %s" % rep["different"])
        text = run_cli(["verify"] + common, env)
        check(text.returncode == 1 and "DIFFERENT" in text.stdout and "missing    5" in text.stdout,
              "the text report: %s" % text.stdout.strip().replace("\n", " / ")[:300])
        rc, rep, err = verify(common, env, ["--repair"])
        check(rc == 0 and rep and rep.get("repaired") == 13 and rep.get("superseded", {}).get(
            "sample") == [future],
              "--repair rewrites 13 and leaves the future version alone: %s %s"
              % (rep and {k: rep.get(k) for k in ("repaired", "superseded", "repair_failed")},
                 err[-300:]))
        e.os_call("POST", "/%s/_refresh" % e.index)
        rc, rep, err = verify(common, env)
        check(rep and rep["missing"]["count"] + rep["stale"]["count"] + rep["extra"]["count"] == 0
              and rep["different"]["count"] == 1, "after --repair only the future version differs")
    finally:
        work.stopped.set()
        if sup:
            sup.stop()
        if forwarder and forwarder.poll() is None:
            forwarder.kill()
            forwarder.wait()
        try:
            ddb.delete_table(TableName=table)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
        e.delete_stream()
        e.delete_index()
    print("%d checks failed; %.0f s; logs in %s" % (len(failures), time.time() - t0, e.logdir))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
