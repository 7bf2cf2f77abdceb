"""Shard lineage of a DynamoDB stream, which DynamoDB Local does not roll: `ddb2os run` with
source = dynamodb-streams against a small fake of the Streams API served from this process (real
PostgreSQL and OpenSearch). The fake lists its shards one a page (ExclusiveStartShardId):

  P   closed parent: x changed twice and y once, all in second S
  E   its child, closed without a record (a quiet partition rolls over too)
  C   E's child: x changed again in second S (rollovers between two changes of x inside one
      second), y in second S+1
  C2  a child whose parent aged out of the stream (not listed): read, not waited for
  X   a shard whose checkpoint is past the retention: GetShardIterator answers
      TrimmedDataAccessException, and the worker goes on from TRIM_HORIZON

Checked: C is asked for an iterator only after P was read to its end, and its lease row names P
as parent; every document ends at its item's last change with exactly the version the lineage
rule gives (docs/architecture.md, "Versions of a DynamoDB stream"); the trimmed checkpoint is
logged as records_trimmed. A stream of the table's that was replaced and no longer exists
(ResourceNotFoundException), with lease rows still open, is finished as aged out before the
table's latest stream is read.

usage: ddbstreams_lineage_test.py DDB2OS_BINARY [TEST_NAME...]
"""
import http.server
import json
import threading
import time
import unittest

import poolkit
from poolkit import Env, Supervisor, wait_for

BINARY = None
S = 1796179100


def rec(n, item, value, second, event="MODIFY"):
    return {"eventID": "e%d" % n, "eventName": event, "eventSource": "aws:dynamodb",
            "dynamodb": {"ApproximateCreationDateTime": second + 0.25,
                         "Keys": {"book_id": {"S": item}},
                         "NewImage": {"book_id": {"S": item}, "v": {"N": str(value)}},
                         "SequenceNumber": "%021d" % n, "StreamViewType": "NEW_AND_OLD_IMAGES"}}


class FakeStreams:
    """DescribeStream, GetShardIterator, GetRecords and ListStreams over one stream."""

    def __init__(self, table):
        self.table = table
        self.arn = "arn:aws:dynamodb:us-east-1:000000000000:table/%s/stream/2026-12-01T00:00:00.000" \
            % table
        # shard id -> (parent, closed, first sequence number still kept, records)
        self.shards = {
            "shardId-1-p": (None, True, 1, [rec(1, "x", 1, S, "INSERT"), rec(2, "y", 1, S, "INSERT"),
                                            rec(3, "x", 2, S)]),
            "shardId-1-pe": ("shardId-1-p", True, 4, []),
            "shardId-2-c": ("shardId-1-pe", False, 4, [rec(4, "x", 3, S), rec(5, "y", 2, S + 1)]),
            "shardId-3-c2": ("shardId-0-aged", False, 6, [rec(6, "z", 1, S, "INSERT"),
                                                           rec(7, "z", 2, S)]),
            "shardId-4-x": (None, False, 10, [rec(10, "w", 1, S, "INSERT"), rec(11, "w", 2, S)]),
        }
        self.events = []
        self.lock = threading.Lock()
        self.page = 2  # records per GetRecords answer (at most the call's Limit)
        # GetRecords from position hold_at on waits for release (a page never crosses it)
        self.hold_at, self.release = None, threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                op = self.headers.get("X-Amz-Target", "").split(".")[-1]
                if op == "GetRecords" and fake.hold_at is not None and \
                        int(body["ShardIterator"].rsplit("|", 1)[1]) >= fake.hold_at:
                    fake.release.wait(60)
                with fake.lock:
                    status, out = fake.answer(op, body)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shard_json(self, sid):
        parent, closed, first, recs = self.shards[sid]
        out = {"ShardId": sid, "SequenceNumberRange": {"StartingSequenceNumber": "%021d" % first}}
        if closed:
            out["SequenceNumberRange"]["EndingSequenceNumber"] = "%021d" % max(first, first + len(recs) - 1)
        if parent:
            out["ParentShardId"] = parent
        return out

    def answer(self, op, body):
        if op == "ListStreams":
            return 200, {"Streams": [{"StreamArn": self.arn, "TableName": self.table,
                                      "StreamLabel": "2026-12-01T00:00:00.000"}]}
        if body.get("StreamArn", self.arn) != self.arn:
            return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                         "message": "Requested resource not found: Stream: %s not found"
                         % body.get("StreamArn")}
        ids = sorted(self.shards)
        if op == "DescribeStream":
            after = body.get("ExclusiveStartShardId")
            rest = [s for s in ids if after is None or s > after]
            desc = {"StreamArn": self.arn, "StreamStatus": "ENABLED", "TableName": self.table,
                    "StreamViewType": "NEW_AND_OLD_IMAGES", "Shards": [self.shard_json(rest[0])]}
            if len(rest) > 1:
                desc["LastEvaluatedShardId"] = rest[0]
            return 200, {"StreamDescription": desc}
        if op == "GetShardIterator":
            sid, kind = body["ShardId"], body["ShardIteratorType"]
            self.events.append(("iterator", sid, kind))
            _, _, first, recs = self.shards[sid]
            if kind == "TRIM_HORIZON":
                pos = 0
            elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
                seq = int(body["SequenceNumber"]) + (kind == "AFTER_SEQUENCE_NUMBER")
                if seq < first:
                    return 400, {"__type": "com.amazonaws.dynamodb.v20120810#"
                                 "TrimmedDataAccessException",
                                 "message": "the requested sequence number is beyond the trim "
                                 "horizon"}
                pos = seq - first
            else:
                pos = len(recs)
            return 200, {"ShardIterator": "%s|%d" % (sid, pos)}
        if op == "GetRecords":
            sid, pos = body["ShardIterator"].rsplit("|", 1)
            _, closed, _, recs = self.shards[sid]
            pos = int(pos)
            end = pos + min(self.page, body.get("Limit", self.page))
            if self.hold_at is not None and pos < self.hold_at:
                end = min(end, self.hold_at)
            page = recs[pos:end]
            out = {"Records": page}
            if not closed or pos + len(page) < len(recs):
                out["NextShardIterator"] = "%s|%d" % (sid, pos + len(page))
            else:
                self.events.append(("end", sid, ""))
            return 200, out
        return 400, {"__type": "com.amazon.coral.service#UnknownOperationException"}


def lineage_versions(recs, prev):
    out = []
    for r in recs:
        prev = max(prev + 1, int(r["dynamodb"]["ApproximateCreationDateTime"]) * 10 ** 6)
        out.append(prev)
    return out


class Lineage(unittest.TestCase):
    def test_parent_child_aged_out_parent_and_trimmed_checkpoint(self):
        env = Env("dsl")
        fake = FakeStreams(env.stream)
        # X's checkpoint, left by an earlier reader, is older than what the stream keeps
        env.sql("INSERT INTO leases (application, stream, shard_id, checkpoint) VALUES"
                " ('%s', '%s', 'shardId-4-x', '%021d')" % (env.app, fake.arn, 5))
        sup = Supervisor(BINARY, env, "l1", workers=2, lease_ms=3000, extra=[
            "--source", "dynamodb-streams", "--streams-endpoint", fake.url,
            "--index-map", "%s=%s" % (env.stream, env.index),
            "--key-schema", "%s=book_id" % env.stream])
        try:
            p = lineage_versions(fake.shards["shardId-1-p"][3], 0)
            c = lineage_versions(fake.shards["shardId-2-c"][3], p[-1])
            c2 = lineage_versions(fake.shards["shardId-3-c2"][3], 0)
            x = lineage_versions(fake.shards["shardId-4-x"][3], 0)
            want = {"x": (c[0], 3), "y": (c[1], 2), "z": (c2[1], 2), "w": (x[1], 2)}

            def done():
                docs = env.documents()
                return docs if {k: (v[0], int(v[1]["v"])) for k, v in docs.items()} == want \
                    else None
            try:
                wait_for("the documents of the whole lineage", done, 60, step=0.5)
            except AssertionError:
                self.fail("%s != %s\n%s" % (env.documents(), want, sup.tail(30)))
            # x's third change came in the same second as its second one, on the child
            self.assertEqual(c, [S * 10 ** 6 + 3, (S + 1) * 10 ** 6])
            # the child was started only after its parent was read to its end
            with fake.lock:
                events = list(fake.events)
            end_p = events.index(("end", "shardId-1-pe", ""))
            first_c = next(i for i, e in enumerate(events)
                           if e[0] == "iterator" and e[1] == "shardId-2-c")
            self.assertLess(end_p, first_c, events)
            rows = dict(env.rows("SELECT shard_id, array_to_string(parent_shard_ids, ',') FROM"
                                 " leases WHERE application = '%s'" % env.app))
            self.assertEqual(rows["shardId-1-pe"], "shardId-1-p")
            self.assertEqual(rows["shardId-2-c"], "shardId-1-pe")
            self.assertEqual(rows["shardId-3-c2"], "shardId-0-aged")
            self.assertIn("records_trimmed", sup.tail(200))
            self.assertIn(("iterator", "shardId-4-x", "TRIM_HORIZON"), events)
            self.assertEqual(sup.stop(), 0)
        finally:
            sup.stop()
            fake.server.shutdown()
            env.delete_index()


def scrape(port):
    """(records read, records pending) from the supervisor's /metrics; None while it is not up."""
    status, body = poolkit.http_get(port, "/metrics")
    if status != 200:
        return None
    got = {}
    for line in body.splitlines():
        for name in ("ddb2os_records_read_total", "ddb2os_pending_records"):
            if line.startswith(name + "{"):
                got[name] = got.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return got.get("ddb2os_records_read_total", 0), got.get("ddb2os_pending_records", 0)


class PendingMetric(unittest.TestCase):
    def test_records_read_are_pending_until_written(self):
        """Records read and none pending means they are in OpenSearch: what a drain is judged
        by. The records of one answer count as read only once they count as pending."""
        env = Env("dsp")
        fake = FakeStreams(env.stream)
        pad = "p" * 4000
        recs = []
        for n in range(1, 1002):
            r = rec(n, "i%04d" % n, n, S, "INSERT")
            r["dynamodb"]["NewImage"]["pad"] = {"S": pad}
            recs.append(r)
        fake.shards = {"shardId-5-m": (None, False, 1, recs)}
        fake.page, fake.hold_at = 1000, 1
        port = poolkit.free_port()
        # a long lease: a slow build must not lose it while it takes the 1000 records
        sup = Supervisor(BINARY, env, "m1", workers=1, lease_ms=20000, metrics_port=port, extra=[
            "--source", "dynamodb-streams", "--streams-endpoint", fake.url,
            "--index-map", "%s=%s" % (env.stream, env.index),
            "--key-schema", "%s=book_id" % env.stream, "--memory-budget", "256MiB"])
        try:
            # the first record is written and checkpointed while the next answer is held back
            wait_for("the first record written", lambda: scrape(port) == (1, 0)
                     and "i0001" in env.documents(), 60, step=0.05)
            fake.release.set()
            seen = []
            deadline = time.time() + 60
            while time.time() < deadline:
                got = scrape(port)
                if got and got[0] >= len(recs):
                    seen.append(got)
                    if got[1] == 0:
                        break
            self.assertTrue(seen and seen[-1][1] == 0, "not drained: %s" % seen[-3:])
            # every scrape that counted the answer's records also counted them pending, until
            # they were written: OpenSearch holds them all when pending first shows 0
            self.assertGreater(seen[0][1], 0, seen[:3])
            self.assertEqual(len(env.documents()), len(recs))
            self.assertEqual(sup.stop(), 0)
        finally:
            sup.stop()
            fake.release.set()
            fake.server.shutdown()
            env.delete_index()


class GoneStream(unittest.TestCase):
    def test_an_old_stream_that_no_longer_exists_is_finished_as_aged_out(self):
        env = Env("dsg")
        fake = FakeStreams(env.stream)
        fake.shards = {"shardId-9-r": (None, False, 20, [rec(20, "x", 1, S, "INSERT"),
                                                          rec(21, "x", 2, S)])}
        # rows of the table's earlier stream, disabled long ago: the stream answers
        # ResourceNotFoundException to every call, and its changes after the checkpoint are lost
        old = fake.arn.replace("2026-12-01T00:00:00.000", "2026-11-20T00:00:00.000")
        old_ver = (S + 100) * 10 ** 6
        env.sql("INSERT INTO leases (application, stream, shard_id, checkpoint, version_last_ms)"
                " VALUES ('%s', '%s', 'shardId-0-old', '%021d', %d)"
                % (env.app, old, 3, old_ver))
        sup = Supervisor(BINARY, env, "g1", workers=1, lease_ms=3000, extra=[
            "--source", "dynamodb-streams", "--streams-endpoint", fake.url,
            "--index-map", "%s=%s" % (env.stream, env.index),
            "--key-schema", "%s=book_id" % env.stream])
        try:
            try:
                docs = wait_for("the new stream's documents", lambda: env.documents().get("x"),
                                60, step=0.5)
            except AssertionError:
                self.fail("%s\n%s" % (env.documents(), sup.tail(30)))
            # the new stream goes on above every version the old one stored
            self.assertEqual(docs[0], old_ver + 2)
            self.assertEqual(int(docs[1]["v"]), 2)
            self.assertEqual(env.rows("SELECT checkpoint FROM leases WHERE application = '%s'"
                                      " AND stream = '%s'" % (env.app, old)), [["SHARD_END"]])
            self.assertTrue(env.rows(
                "SELECT 1 FROM lease_events WHERE application = '%s' AND shard_id ="
                " 'shardId-0-old' AND event = 'aged_out'" % env.app))
            log = sup.tail(200)
            self.assertIn("stream_unfinished", log)
            self.assertIn("stream_gone", log)
            self.assertEqual(sup.stop(), 0)
        finally:
            sup.stop()
            fake.server.shutdown()
            env.delete_index()


if __name__ == "__main__":
    poolkit.main(__import__(__name__))
