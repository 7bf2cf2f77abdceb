"""`ddb2os run` with source = dynamodb-streams on DynamoDB Local's stream (no Kinesis, no
forwarder): a CRUD workload whose items change several times within one second ends exact in
OpenSearch, item for item and version for version; a worker killed with SIGKILL and a supervisor
drained with SIGTERM hand the shard over without a lost or misordered change; a poison item goes
to the dead-letter queue and `ddb2os dlq replay` writes it once the index takes it; a
PostgreSQL restart in the middle of a workload loses no lease for good, and the checkpoint moves
on once PostgreSQL is back; a stream disabled and enabled again is followed without a restart,
and a worker started after that reads the old stream to its end before the new one;
`checkpoint set` and `lease release` work on a stream named by its table.

usage: ddbstreams_test.py DDB2OS_BINARY [TEST_NAME...]
"""
import json
import os
import signal
import subprocess
import time
import unittest

import botocore.session

import poolkit
from ops_life import TcpCut
from poolkit import Env, Supervisor, wait_for

BINARY = None
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class Table:
    """A table with a NEW_AND_OLD_IMAGES stream on DynamoDB Local, and the model of its items."""

    def __init__(self, name):
        self.name = name
        self.ddb = botocore.session.get_session().create_client(
            "dynamodb", region_name=poolkit.REGION,
            endpoint_url=poolkit.need("D2O_TEST_DYNAMODB"),
            aws_access_key_id="AKIDPOOLTEST", aws_secret_access_key="pool-test-secret")
        self.ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "book_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "book_id", "AttributeType": "S"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        self.state = {}

    def put(self, book_id, title, pages):
        self.ddb.put_item(TableName=self.name, Item={
            "book_id": {"S": book_id}, "title": {"S": title}, "pages": {"N": str(pages)}})
        self.state[book_id] = {"book_id": book_id, "title": title, "pages": pages}

    def delete(self, book_id):
        self.ddb.delete_item(TableName=self.name, Key={"book_id": {"S": book_id}})
        self.state[book_id] = None

    def workload(self, n_items, rounds, prefix):
        """Every item created, updated rounds-1 times in a row (the same second, mostly), every
        fourth deleted, every eighth created again."""
        for i in range(n_items):
            bid = "%s-%03d" % (prefix, i)
            for r in range(rounds):
                self.put(bid, "t%d-%d" % (i, r), 100 + r)
            if i % 4 == 0:
                self.delete(bid)
            if i % 8 == 0:
                self.put(bid, "again-%d" % i, 7)

    def mismatches(self, docs):
        bad = []
        for bid, doc in sorted(self.state.items()):
            got = docs.get(bid)
            if doc is None and got is not None:
                bad.append("%s: deleted but present %s" % (bid, got[1]))
            elif doc is not None and (got is None or got[1] != doc):
                bad.append("%s: want %s, got %s" % (bid, doc, got and got[1]))
        bad += ["%s: not in the table" % e for e in sorted(set(docs) - set(self.state))]
        return bad[:10]

    def drop(self):
        try:
            self.ddb.delete_table(TableName=self.name)
        except Exception:  # noqa: BLE001 - cleanup only
            pass


class FirstConnectionOnly(TcpCut):
    """A TCP forwarder to PostgreSQL that passes the first connection (the supervisor's
    migration) and refuses every later one until heal(), as a PostgreSQL that went away right
    after the start would."""

    def __init__(self, conninfo):
        kv = dict(x.split("=", 1) for x in conninfo.split())
        super().__init__(kv.get("host", "127.0.0.1"), int(kv.get("port", "5432")))
        kv.update(host="127.0.0.1", port=str(self.port))
        self.conninfo = " ".join("%s=%s" % x for x in kv.items())
        self.accepted = 0

    def _accept(self, c):
        self.accepted += 1
        if self.accepted == 2:
            self.cut = True
        super()._accept(c)

    def heal(self):
        self.cut = False


def cpu_seconds(pid):
    """User and system CPU time of pid so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StreamsCase(unittest.TestCase):
    def setUp(self):
        self.env = Env("dst")
        self.table = Table(self.env.stream)
        self.sups = []

    def tearDown(self):
        for s in self.sups:
            s.stop(timeout=15)
        self.table.drop()
        self.env.delete_index()

    def start(self, task, workers=1, extra=(), metrics_port=0):
        ddb = poolkit.need("D2O_TEST_DYNAMODB")
        s = Supervisor(BINARY, self.env, task, workers=workers, lease_ms=3000,
                       metrics_port=metrics_port, extra=[
            "--source", "dynamodb-streams", "--streams-endpoint", ddb,
            "--index-map", "%s=%s" % (self.table.name, self.env.index),
            "--key-schema", "%s=book_id" % self.table.name] + list(extra))
        self.sups.append(s)
        return s

    def wait_exact(self, timeout=60):
        def exact():
            docs = self.env.documents()
            return not self.table.mismatches(docs) and docs
        try:
            wait_for("OpenSearch to equal the table", exact, timeout, step=0.5)
        except AssertionError:
            tails = "\n".join(s.tail(20) for s in self.sups)
            self.fail("%s\n%s" % (self.table.mismatches(self.env.documents()), tails))

    def versions(self):
        return {k: v[0] for k, v in self.env.documents().items()}


class Crud(StreamsCase):
    def test_workload_exact_with_changes_in_one_second(self):
        self.table.workload(40, 4, "a")
        port = poolkit.free_port()
        sup = self.start("t1", metrics_port=port)
        self.wait_exact()
        # operators see the source: in /metrics, and in status and leases
        status, body = poolkit.http_get(port, "/metrics")
        self.assertEqual(status, 200, body)
        arn = self.table.ddb.describe_table(TableName=self.table.name)["Table"]["LatestStreamArn"]
        self.assertIn('ddb2os_source_info{source="dynamodb-streams",stream="%s",table="%s"} 1'
                      % (arn, self.table.name), body.splitlines())
        for cmd in ("status", "leases"):
            out = subprocess.run(
                [BINARY, cmd, "--json", "--application", self.env.app, "--pg-conninfo",
                 self.env.pg], capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            got = json.loads(out.stdout)
            self.assertTrue(got, cmd)
            self.assertEqual({r["source"] for r in got}, {"dynamodb-streams"}, got)
            # the table form shows the stream's ARN whole, for an operator to paste
            out = subprocess.run(
                [BINARY, cmd, "--application", self.env.app, "--pg-conninfo", self.env.pg],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(arn + "  ", out.stdout)
        rows = self.env.rows("SELECT stream, shard_id, checkpoint, version_last_ms FROM leases"
                             " WHERE application = '%s'" % self.env.app)
        self.assertTrue(rows, "no lease rows")
        for stream, _, checkpoint, ver in rows:
            self.assertIn(":table/%s/stream/" % self.table.name, stream)
            self.assertRegex(checkpoint, r"^[0-9]+$")
        # the stored version is the greatest one any document got from the stream
        self.assertEqual(max(int(r[3]) for r in rows), max(self.versions().values()))
        self.assertEqual(sup.stop(), 0)


class Handoff(StreamsCase):
    def test_sigkill_then_sigterm_hand_the_shard_over(self):
        self.table.workload(30, 3, "b")
        first = self.start("k1")
        self.wait_exact()
        before = self.versions()
        # killed without a word: the lease expires, the respawned worker reads on from the
        # checkpoint with the version stored there
        for pid in first.worker_pids():
            os.kill(pid, signal.SIGKILL)
        self.table.workload(30, 3, "c")
        self.table.put("b-001", "after-kill", 1)
        self.wait_exact(timeout=90)
        # drained: the second task takes the shard and goes on
        second = self.start("k2")
        self.assertEqual(first.stop(), 0)
        wait_for("the second task to own the shard",
                 lambda: set(self.env.owners().values()) and all(
                     o.startswith("k2:") for o in self.env.owners().values()), 30, step=0.3)
        self.table.put("b-001", "after-term", 2)
        self.table.put("b-001", "after-term-2", 3)
        self.wait_exact()
        after = self.versions()
        for bid, ver in before.items():
            if bid in after:
                self.assertGreaterEqual(after[bid], ver, bid)
        self.assertFalse(self.env.epochs_with_two_owners())
        self.assertEqual(second.stop(), 0)


class PostgresRestart(StreamsCase):
    def checkpoints(self):
        return {shard: int(cp) for shard, cp in self.env.rows(
            "SELECT shard_id, checkpoint FROM leases WHERE application = '%s'"
            " AND checkpoint ~ '^[0-9]+$'" % self.env.app)}

    def test_workload_exact_across_a_postgres_restart(self):
        self.table.workload(30, 3, "r")
        sup = self.start("r1", workers=2)
        self.wait_exact()
        before = self.versions()
        shards = set(self.env.owners())
        self.assertTrue(shards, "no lease owned before the restart")
        checkpoints = self.checkpoints()
        self.assertTrue(checkpoints, "no numeric checkpoint before the restart")
        # PostgreSQL goes away and comes back with its data while the table keeps changing
        # (the changes wait in the stream, ddb2os must pick them up once it reconnects)
        restart = dict(os.environ, D2O_KEEP_DATA="1")
        writer = subprocess.Popen([os.path.join(ROOT, "scripts", "services"), "restart",
                                   "pg"], env=restart, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.table.workload(30, 3, "s")
        self.table.put("r-001", "during-restart", 9)
        out, _ = writer.communicate(timeout=120)
        self.assertEqual(writer.returncode, 0, out)
        self.table.put("r-001", "after-restart", 10)
        self.table.workload(10, 2, "t")
        self.wait_exact()
        # every lease that was owned is owned again (none lost for good), by this task
        wait_for("the leases owned again", lambda: set(self.env.owners()) >= shards, 30,
                 step=0.5)
        self.assertTrue(all(o.startswith("r1:") for o in self.env.owners().values()))
        # the checkpoint moved past where it was before PostgreSQL went away
        wait_for("the checkpoint to move on", lambda: any(
            cp > checkpoints.get(shard, -1) for shard, cp in self.checkpoints().items()), 30,
                 step=0.5)
        after = self.versions()
        for bid, ver in before.items():
            if bid in after:
                self.assertGreaterEqual(after[bid], ver, bid)
        self.assertGreater(after["r-001"], before["r-001"])
        self.assertFalse(self.env.epochs_with_two_owners())
        log = "".join(s.tail(400) for s in self.sups)
        self.assertRegex(log, r" pg_(error|unavailable): ", "the lost connection was not logged")
        self.assertEqual(sup.stop(), 0)


class Reenabled(StreamsCase):
    def set_stream(self, enabled):
        spec = {"StreamEnabled": enabled}
        if enabled:
            spec["StreamViewType"] = "NEW_AND_OLD_IMAGES"
        self.table.ddb.update_table(TableName=self.table.name, StreamSpecification=spec)
        return self.table.ddb.describe_table(TableName=self.table.name)["Table"].get(
            "LatestStreamArn")

    def test_a_stream_enabled_again_is_followed_without_a_restart(self):
        self.table.workload(20, 2, "d")
        sup = self.start("r1")
        self.wait_exact()
        old = self.table.ddb.describe_table(TableName=self.table.name)["Table"]["LatestStreamArn"]
        self.table.put("d-001", "last-on-the-old-stream", 1)
        self.set_stream(False)
        new = self.set_stream(True)
        self.assertNotEqual(old, new)
        # the same item again within the second, then a workload: only the new stream has them
        self.table.put("d-001", "first-on-the-new-stream", 2)
        self.table.workload(20, 2, "e")
        self.wait_exact(timeout=60)
        wait_for("lease rows of the new stream", lambda: self.env.rows(
            "SELECT shard_id FROM leases WHERE application = '%s' AND stream = '%s'"
            % (self.env.app, new)), 10, step=0.3)
        self.assertIn("stream_followed", sup.tail(200))
        self.assertIn(new, sup.tail(200))
        self.assertEqual(sup.stop(), 0)

    def test_a_worker_started_after_the_stream_was_enabled_again_finishes_the_old_one(self):
        self.table.workload(10, 2, "g")
        sup = self.start("s1")
        self.wait_exact()
        self.assertEqual(sup.stop(), 0)
        old = self.table.ddb.describe_table(TableName=self.table.name)["Table"]["LatestStreamArn"]
        # changes on the old stream that no worker has read yet, the last one of g-002 in the
        # same second as its first change on the new stream
        self.table.put("g-001", "only-on-the-old-stream", 1)
        self.table.put("g-002", "last-on-the-old-stream", 2)
        self.set_stream(False)
        new = self.set_stream(True)
        self.assertNotEqual(old, new)
        self.table.put("g-002", "first-on-the-new-stream", 3)
        self.table.put("g-003", "on-the-new-stream", 4)
        sup = self.start("s2")
        self.wait_exact(timeout=60)
        wait_for("the old stream finished and the new one read", lambda: self.env.rows(
            "SELECT 1 FROM leases WHERE application = '%s' AND stream = '%s'"
            % (self.env.app, new)), 20, step=0.3)
        self.assertEqual(self.env.rows(
            "SELECT shard_id, checkpoint FROM leases WHERE application = '%s' AND stream = '%s'"
            " AND checkpoint <> 'SHARD_END'" % (self.env.app, old)), [])
        log = sup.tail(300)
        self.assertIn("stream_unfinished", log)
        self.assertIn("stream_followed", log)
        self.assertEqual(sup.stop(), 0)


class Operator(StreamsCase):
    def cli(self, *args):
        env = dict(os.environ, DDB2OS_PG_CONNINFO=self.env.pg, DDB2OS_APPLICATION=self.env.app,
                   DDB2OS_SOURCE="dynamodb-streams", DDB2OS_STREAM_NAME=self.table.name,
                   DDB2OS_STREAMS_ENDPOINT=poolkit.need("D2O_TEST_DYNAMODB"),
                   DDB2OS_AWS_REGION=poolkit.REGION, **poolkit.ENV_AWS)
        return subprocess.run([BINARY] + list(args), env=env, capture_output=True, text=True,
                              timeout=60)

    def test_checkpoint_set_and_lease_release_on_a_table_stream(self):
        self.table.workload(10, 2, "f")
        sup = self.start("o1")
        self.wait_exact()
        self.assertEqual(sup.stop(), 0)
        (shard, seq), = self.env.rows("SELECT shard_id, checkpoint FROM leases"
                                      " WHERE application = '%s'" % self.env.app)
        self.assertRegex(seq, r"^[0-9]+$")
        # stream_name is the table: the rows name its stream's ARN, DescribeStream checks the range
        bad = self.cli("checkpoint", "set", shard, "--at", "1")
        self.assertEqual(bad.returncode, 1, bad.stderr)
        self.assertIn("sequence number 1 is not in shard %s" % shard, bad.stderr)
        self.assertIn("holds sequence numbers from", bad.stderr)
        good = self.cli("checkpoint", "set", shard, "--at", "TRIM_HORIZON")
        self.assertEqual(good.returncode, 0, good.stderr)
        self.assertEqual(self.env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                      % self.env.app), "TRIM_HORIZON")
        good = self.cli("checkpoint", "set", shard, "--at", seq)
        self.assertEqual(good.returncode, 0, good.stderr)
        self.assertNotIn("could not check", good.stderr)
        self.assertEqual(self.env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                      % self.env.app), seq)
        rel = self.cli("lease", "release", shard)
        self.assertEqual(rel.returncode, 0, rel.stderr)


class PostgresAwayAtStart(StreamsCase):
    def test_the_loop_waits_while_the_stream_to_read_first_is_unknown(self):
        """Which stream of a table to read first is in PostgreSQL: while it is unreachable the
        worker waits for it with a backoff (a loop polling with no timeout would burn a core),
        and reads the table once it is back."""
        proxy = FirstConnectionOnly(self.env.pg)
        self.addCleanup(proxy.close)
        self.table.workload(10, 2, "w")
        sup = self.start("w1", extra=["--pg-conninfo", proxy.conninfo])
        wait_for("the worker to find PostgreSQL away",
                 lambda: sup.worker_pids() and "pg_unavailable" in sup.tail(200), 30, step=0.2)
        pid = sup.worker_pids()[0]
        t0, c0 = time.time(), cpu_seconds(pid)
        time.sleep(3)
        used = cpu_seconds(pid) - c0
        print("worker CPU while PostgreSQL was away: %.2f s in %.1f s" % (used, time.time() - t0))
        self.assertLess(used, 0.3, sup.tail(20))
        proxy.heal()
        self.wait_exact()
        self.assertEqual(sup.stop(), 0)


class Poison(StreamsCase):
    def test_poison_to_the_dlq_then_replay(self):
        # an index whose mapping refuses a text title: the item cannot be indexed
        status, res = self.env.os_call("PUT", "/%s" % self.env.index, {
            "mappings": {"properties": {"title": {"type": "integer"}}}})
        self.assertEqual(status, 200, res)
        self.table.ddb.put_item(TableName=self.table.name, Item={
            "book_id": {"S": "poison"}, "title": {"S": "not a number"}, "pages": {"N": "1"}})
        self.table.put("fine", "12", 5)
        self.table.state["fine"]["title"] = "12"
        sup = self.start("p1", extra=["--item-max-attempts", "2"])
        wait_for("the poison item in the DLQ", lambda: self.env.rows(
            "SELECT doc_id, version FROM dlq WHERE application = '%s' AND state = 'pending'"
            % self.env.app), 60, step=0.5)
        (doc_id, version), = self.env.rows(
            "SELECT doc_id, version FROM dlq WHERE application = '%s'" % self.env.app)
        self.assertEqual(doc_id, "poison")
        self.assertGreater(int(version), 10 ** 15)  # a stream version in microseconds
        self.assertEqual(sup.stop(), 0)
        # the index is fixed (a new one that takes text), and the row replayed at its version
        self.env.delete_index()
        out = subprocess.run(
            [BINARY, "dlq", "replay", "--application", self.env.app, "--pg-conninfo",
             self.env.pg, "--opensearch-url", self.env.opensearch, "--index-map",
             "%s=%s" % (self.table.name, self.env.index), "--key-schema",
             "%s=book_id" % self.table.name, "--stream-name", self.table.name],
            capture_output=True, text=True, timeout=60, env=dict(os.environ, **poolkit.ENV_AWS))
        self.assertEqual(out.returncode, 0, out.stderr + out.stdout)
        docs = wait_for("the replayed document", lambda: self.env.documents().get("poison"), 30)
        self.assertEqual(docs[0], int(version))
        self.assertEqual(docs[1]["title"], "not a number")


if __name__ == "__main__":
    poolkit.main(__import__(__name__))
