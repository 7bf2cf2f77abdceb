#!/usr/bin/python3
"""Deletes stay deleted with delete_mode = delete, even when OpenSearch restarts.

usage: deletes_test.py DDB2OS_BINARY [TEST_NAME...]

Against the real PostgreSQL, kinesis-mock and OpenSearch (restarted with its data kept by
scripts/services), with tests/proxy/faultproxy.py in front of OpenSearch. Two changes of one item
travel on different shards, so two workers write them independently: an older write is held in
429s by the proxy while the item's delete lands; OpenSearch restarts and so forgets the delete's
version; then the write is released. The document must stay deleted. The same for a dead-letter
row older than a delete, replayed with `ddb2os dlq replay`. A re-create after the delete is still
indexed. And the workers' retention job forgets deletes older than the retention.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402

BINARY = None
LEASE_MS = 4000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class Proxy:
    def __init__(self, upstream, log):
        # The proxy's complaints while OpenSearch restarts go to log.
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "proxy", "faultproxy.py"),
             "--upstream", upstream, "--max-seconds", "600"], stdout=subprocess.PIPE,
            stderr=self.log)
        port = int(self.proc.stdout.readline())
        self.url = "http://127.0.0.1:%d" % port

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.log.close()


class DeletesStayDeleted(unittest.TestCase):
    def setUp(self):
        self.env = poolkit.Env("dels")
        # A schema of this run, so the run's tables are its own.
        self.base_pg = self.env.pg
        self.schema = "d2o_" + self.env.app
        self.env.sql("CREATE SCHEMA %s" % self.schema)
        self.env.pg = "%s options=-csearch_path=%s" % (self.base_pg, self.schema)
        self.items = poolkit.Items()
        self.proxy = Proxy(self.env.opensearch, os.path.join(self.env.logdir, "proxy.log"))
        self.sup = None

    def tearDown(self):
        if self.sup:
            self.sup.stop(timeout=10)
        self.proxy.stop()
        self.env.delete_stream()
        self.env.delete_index()
        self.env.pg = self.base_pg
        self.env.sql("DROP SCHEMA %s CASCADE" % self.schema)
        shutil.rmtree(self.env.logdir, ignore_errors=True)

    def put_on(self, shard, record):
        """Puts one (partition key, data) record on the given shard; returns its sequence number."""
        res = self.env.kinesis.put_record(
            StreamName=self.env.stream, PartitionKey=record[0], Data=record[1],
            ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"])
        self.assertEqual(res["ShardId"], shard["ShardId"])
        return res["SequenceNumber"]

    def doc(self, book_id):
        status, res = self.env.os_call("GET", "/%s/_doc/%s" % (self.env.index, book_id))
        return res["_version"] if status == 200 and res.get("found") else None

    def wait_doc(self, book_id, want, timeout=60):
        poolkit.wait_for("%s at %s" % (book_id, want), lambda: self.doc(book_id) == want or None,
                         timeout, step=0.2)

    def checkpoint(self, shard_id):
        return self.env.sql("SELECT checkpoint FROM leases WHERE application = '%s' AND"
                            " shard_id = '%s'" % (self.env.app, shard_id))

    def stale(self):
        """The pool's ddb2os_documents_total{outcome="stale"}."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("ddb2os_documents_total{") and 'outcome="stale"' in line)

    def passed(self, shard_id, seq):
        cp = self.checkpoint(shard_id)
        return cp.isdigit() and int(cp) >= int(seq)

    def test_late_writes_and_replays_stay_deleted_across_a_restart(self):
        env, items = self.env, self.items
        env.create_stream(2)
        shard_a, shard_b = env.shards()
        # Deletes recorded long ago (3 h) and just now; the pool keeps them for 1 h.
        out = subprocess.run([BINARY, "migrate"], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, DDB2OS_PG_CONNINFO=env.pg))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        env.sql("INSERT INTO deletes (application, index_name, doc_id, version, deleted_at)"
                " VALUES ('%s', '%s', 'ancient', 1, now() - interval '3 hours'),"
                " ('%s', '%s', 'recent', 1, now())" % (env.app, env.index, env.app, env.index))
        # Both workers write through the proxy; retries come back within a second.
        saved, env.opensearch = env.opensearch, self.proxy.url
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.sup = poolkit.Supervisor(BINARY, env, "D", workers=2, lease_ms=LEASE_MS,
                                      extra=["--retry-cap-ms", "1000", "--stream-retention-ms",
                                             "1h", "--dlq-replay-window-ms", "0"],
                                      metrics_port=self.port)
        env.opensearch = saved

        def one_each():
            owners = env.owners()
            return len(owners) == 2 and len(set(owners.values())) == 2 or None
        poolkit.wait_for("one shard per worker", one_each, 30, step=0.2)
        poolkit.wait_for("the retention job", lambda: env.sql(
            "SELECT string_agg(doc_id, ',') FROM deletes") == "recent" or None, 30, step=0.2)

        # x and y exist; both creates travel on shard B.
        self.put_on(shard_b, items.change("x", "INSERT", {"title": "x1"}))
        self.put_on(shard_b, items.change("y", "INSERT", {"title": "y1"}))
        y_created = items.clock_us
        self.wait_doc("x", items.state["x"][0])
        self.wait_doc("y", y_created)

        # An older write of x on shard A is held in 429s by the proxy ...
        late = items.change("x", "MODIFY", {"title": "late"})
        late_version = items.clock_us
        self.proxy.call("POST", "/__fault", {"item_429_hold": {"x": late_version}})
        late_seq = self.put_on(shard_a, late)
        poolkit.wait_for("the late write to be held",
                         lambda: self.proxy.call("GET", "/__stats")["held_items"] > 0, 30)
        # ... while x's delete lands through the other worker. y changes (a change that failed
        # and waits in the dead-letter queue: it is not put on the stream), then is deleted.
        self.put_on(shard_b, items.change("x", "REMOVE"))
        y_late = items.change("y", "MODIFY", {"title": "y-late"})
        y_late_version = items.clock_us
        self.put_on(shard_b, items.change("y", "REMOVE"))
        self.wait_doc("x", None)
        self.wait_doc("y", None)

        # OpenSearch restarts with its data: it no longer knows the deletes' versions.
        out = subprocess.run([os.path.join(ROOT, "scripts", "services"), "restart", "opensearch"],
                             env=dict(os.environ, D2O_KEEP_DATA="1"), capture_output=True,
                             text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(self.doc("x"), None)

        # The late write is released and acknowledged: x must stay deleted.
        self.proxy.call("POST", "/__fault", {"item_429_hold": {}})
        poolkit.wait_for("the late write to be acknowledged",
                         lambda: self.passed(shard_a["ShardId"], late_seq), 60, step=0.2)
        env.os_call("POST", "/%s/_refresh" % env.index)
        with self.subTest("a late write after the delete and a restart"):
            self.assertEqual(self.doc("x"), None, "a late older write brought x back")
            self.assertGreaterEqual(self.stale(), 1, "the dropped write was not counted stale")

        # A dead-letter row of y older than y's delete is replayed: y must stay deleted.
        row = env.sql(
            "INSERT INTO dlq (application, stream, shard_id, sequence_number, table_name,"
            " index_name, doc_id, version, raw_record, error_class, http_status, error_message,"
            " attempts, first_failed_at, last_failed_at) VALUES ('%s', '%s', '%s', '1', 'books',"
            " '%s', 'y', %d, convert_to('%s', 'UTF8'), 'mapper_parsing_exception', 400, 'test',"
            " 1, now(), now()) RETURNING id"
            % (env.app, env.stream, shard_b["ShardId"], env.index, y_late_version,
               y_late[1].decode().replace("'", "''")))
        replay = subprocess.run(
            [BINARY, "dlq", "replay", "--id", row.split()[0]], capture_output=True, text=True,
            timeout=60, env=dict(os.environ, DDB2OS_PG_CONNINFO=env.pg,
                                 DDB2OS_OPENSEARCH_URL=env.opensearch, DDB2OS_APPLICATION=env.app,
                                 DDB2OS_INDEX_MAP="books=%s" % env.index,
                                 DDB2OS_KEY_SCHEMA="books=book_id", DDB2OS_LOG_FORMAT="text"))
        self.assertEqual(replay.returncode, 0, replay.stdout + replay.stderr)
        env.os_call("POST", "/%s/_refresh" % env.index)
        with self.subTest("a dead-letter row older than the delete, replayed"):
            self.assertEqual(self.doc("y"), None,
                             "a replayed older dead-letter row brought y back")
            self.assertIn("stale: the document was deleted", env.sql(
                "SELECT replay_result FROM dlq WHERE id = %s" % row.split()[0]))

        # A re-create after the delete carries a newer version and is indexed.
        self.put_on(shard_a, items.change("x", "INSERT", {"title": "again"}))
        self.wait_doc("x", items.state["x"][0])


if __name__ == "__main__":
    poolkit.main(sys.modules[__name__])
