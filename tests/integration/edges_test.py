#!/usr/bin/python3
"""What happens at the edges of a lease, against real PostgreSQL, kinesis-mock and OpenSearch.

usage: edges_test.py DDB2OS_BINARY [TEST_NAME...]

A writer that lost its lease writes nothing more (its items held in 429s by the fault proxy are
dropped, so a stale write can't bring a deleted document back after index.gc_deletes), and a
worker frozen inside a PostgreSQL transaction can't hold its shard hostage.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402
from poolkit import free_port, http_get  # noqa: E402
import pool_test  # noqa: E402

BINARY = None
LEASE_MS = pool_test.LEASE_MS
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class FaultProxy:
    """tests/proxy/faultproxy.py in front of OpenSearch (or, tcp=True, of any TCP server such as
    PostgreSQL: upstream is host:port, the proxy listens on .port), stopped by stop() or by
    itself."""

    def __init__(self, upstream, faults, max_seconds=180, pass_auth=False, tcp=False):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "proxy", "faultproxy.py"),
             "--upstream", upstream, "--max-seconds", str(max_seconds),
             "--faults", json.dumps(faults)] + (["--pass-auth"] if pass_auth else []) +
            (["--tcp"] if tcp else []),
            stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        # In TCP mode the faults are set through a control server of their own.
        control = int(self.proc.stdout.readline()) if tcp else self.port
        self.url = "http://127.0.0.1:%d" % control

    def set(self, faults):
        req = urllib.request.Request(self.url + "/__fault", data=json.dumps(faults).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

    def stats(self):
        with urllib.request.urlopen(self.url + "/__stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


class EdgeTest(pool_test.PoolTest):
    """A pool test (own stream, index and application; no two owners in one epoch) that may
    put the fault proxy in front of a supervisor's OpenSearch."""
    tag = "edge"

    def setUp(self):
        super().setUp()
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        super().tearDown()

    def start(self, task, opensearch=None, kinesis=None, workers=1, extra=()):
        env = self.env
        saved = env.opensearch, env.kinesis_url
        env.opensearch = opensearch or env.opensearch
        env.kinesis_url = kinesis or env.kinesis_url
        try:
            s = poolkit.Supervisor(BINARY, env, task, workers=workers, lease_ms=LEASE_MS,
                                   extra=list(extra))
        finally:
            env.opensearch, env.kinesis_url = saved
        self.sups.append(s)
        return s

    def logs(self):
        return "\n".join("--- %s\n%s" % (s.task, s.tail(60)) for s in self.sups)

    def lease(self):
        return self.env.rows("SELECT shard_id, owner, lease_counter FROM leases"
                             " WHERE application = '%s'" % self.env.app)


class LostLease(EdgeTest):
    tag = "edgelost"

    def test_a_writer_that_lost_its_lease_does_not_bring_a_delete_back(self):
        env = self.env
        # Deletes are forgotten at the next refresh: the window of index.gc_deletes is over.
        status, res = env.os_call("PUT", "/%s" % env.index, {"settings": {
            "index.gc_deletes": "0s", "number_of_replicas": 0, "refresh_interval": "-1"}})
        self.assertEqual(status, 200, res)
        env.create_stream(1)
        self.proxy = FaultProxy(env.opensearch, {"item_429_ids": {"held": 1000000}})
        # A writes through the proxy, which answers 429 to every write of "held".
        a = self.start("A", opensearch=self.proxy.url, extra=["--retry-cap-ms", "200"])
        poolkit.wait_for("A to hold the lease", lambda: any(
            r[1].startswith("A:") for r in self.lease()), 4 * LEASE_MS / 1000)
        env.put([self.items.change("held", "INSERT", {"title": "old"}),
                 self.items.change("other", "INSERT", {"title": "x"})])
        poolkit.wait_for("A's write of held to be refused with 429",
                         lambda: self.proxy.stats()["injected_items"] >= 3, 30)
        # B writes to OpenSearch directly; it holds nothing while A's lease is valid.
        b = self.start("B")
        poolkit.wait_for("B's worker", lambda: len(b.worker_pids()) == 1, 10)
        b_owner = "B:%d" % b.worker_pids()[0]
        time.sleep(LEASE_MS / 1000 / 2)
        # The steal: the lease moves to B under A's feet, as a takeover after a partition would.
        env.sql("UPDATE leases SET owner = '%s', lease_counter = lease_counter + 1,"
                " expires_at = now() + interval '%d milliseconds'"
                " WHERE application = '%s'" % (b_owner, LEASE_MS, env.app))
        poolkit.wait_for("A to notice the lost lease", lambda: "lease_lost" in a.tail(200),
                         2 * LEASE_MS / 1000)
        # B reads from the checkpoint: it writes held, then the item is deleted.
        env.put([self.items.change("held", "REMOVE")])
        last = last_sequence(env)
        poolkit.wait_for("B to write everything and checkpoint it", lambda: self.lease()[0][1:]
                         and env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                     % env.app) == last, 30, step=0.2)
        status, _ = env.os_call("GET", "/%s/_doc/held" % env.index)
        self.assertEqual(status, 404)
        time.sleep(0.2)
        env.os_call("POST", "/%s/_refresh" % env.index)  # the delete's tombstone is pruned
        # OpenSearch would take A's write now; a writer that lost its lease must not send it.
        self.proxy.set({"item_429_ids": {}})
        time.sleep(3)
        env.os_call("POST", "/%s/_refresh" % env.index)
        status, doc = env.os_call("GET", "/%s/_doc/held" % env.index)
        self.assertEqual(status, 404, "a deleted document came back from the writer that lost "
                         "its lease: %s\n%s" % (doc, self.logs()))
        self.assertIn("bulk_dropped", a.tail(400))


def stopped(pid):
    """Whether the process is stopped (SIGSTOP)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


class FrozenInTransaction(EdgeTest):
    tag = "edgefrozen"

    def test_a_worker_frozen_inside_a_checkpoint_does_not_hold_its_shard(self):
        env = self.env
        env.create_stream(1)
        os.environ["D2O_TEST_STOP_AT"] = "checkpoint_locked"
        try:
            a = self.start("A")
        finally:
            del os.environ["D2O_TEST_STOP_AT"]
        poolkit.wait_for("A to hold the lease", lambda: any(
            r[1].startswith("A:") for r in self.lease()), 4 * LEASE_MS / 1000)
        b = self.start("B")
        poolkit.wait_for("B's worker", lambda: len(b.worker_pids()) == 1, 10)
        env.put(self.items.workload(20, 2, prefix="f"))
        # A writes the batch, then stops inside its first checkpoint, holding the lease row.
        victim = a.worker_pids()[0]
        poolkit.wait_for("A to freeze inside the checkpoint", lambda: stopped(victim), 30,
                         step=0.05)
        t0 = env.db_now()
        try:
            poolkit.wait_for("B to take the shard", lambda: any(
                r[1].startswith("B:") for r in self.lease()), LEASE_MS / 1000 + 6, step=0.05)
            taken_at = float(env.sql(
                "SELECT extract(epoch FROM max(at)) FROM lease_events WHERE application = '%s'"
                " AND owner LIKE 'B:%%' AND at > to_timestamp(%f)" % (env.app, t0)))
            print("takeover from a worker frozen in a transaction: %.2f s (lease %.1f s)"
                  % (taken_at - t0, LEASE_MS / 1000))
            self.assertLessEqual(taken_at - t0, LEASE_MS / 1000 + 2)
        finally:
            os.kill(victim, signal.SIGCONT)
        # A wakes up in its transaction: nothing of it may land over B's work.
        self.converge()
        env.put(self.items.workload(20, 1, prefix="g"))
        self.converge()
        last = last_sequence(env)
        poolkit.wait_for("B's checkpoint at the end of the stream", lambda: env.rows(
            "SELECT owner, checkpoint FROM leases WHERE application = '%s'" % env.app)[0][1]
            == last, 20, step=0.2)
        self.assertTrue(env.rows("SELECT owner FROM leases WHERE application = '%s'"
                                 % env.app)[0][0].startswith("B:"))
        # Each document was written at its own version and no older one: nothing stale landed.
        self.converge()


class LatestPosition(EdgeTest):
    tag = "edgelatest"

    def test_latest_is_stored_before_the_first_read(self):
        env = self.env
        env.create_stream(1)
        a = self.start("A", extra=["--initial-position", "LATEST"])
        poolkit.wait_for("A to hold the lease", lambda: any(
            r[1].startswith("A:") for r in self.lease()), 4 * LEASE_MS / 1000)
        # A resolved LATEST and stored it (as AT_TIMESTAMP) before its first read
        poolkit.wait_for("A to store its starting position", lambda: env.sql(
            "SELECT checkpoint FROM leases WHERE application = '%s'" % env.app) == "AT_TIMESTAMP",
            30, step=0.2)
        self.assertEqual(a.stop(), 0)
        # Records that arrive while nobody reads: the next owner must start where A started.
        env.put(self.items.workload(10, 1, prefix="l"))
        b = self.start("B", extra=["--initial-position", "LATEST"])
        poolkit.wait_for("B to hold the lease", lambda: any(
            r[1].startswith("B:") for r in self.lease()), 4 * LEASE_MS / 1000)
        self.converge(timeout=20)
        self.assertEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                 % env.app), last_sequence(env), b.tail())




def counter(port, name):
    total = 0.0
    for line in http_get(port, "/metrics")[1].splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class IndexBlocked(EdgeTest):
    tag = "edgeblock"

    def test_a_read_only_index_is_waited_for_never_dead_lettered(self):
        env = self.env
        status, res = env.os_call("PUT", "/%s" % env.index, {"settings": {
            "index.blocks.write": True, "number_of_replicas": 0}})
        self.assertEqual(status, 200, res)
        env.create_stream(1)
        port = free_port()
        self.start("K", extra=["--retry-cap-ms", "500", "--metrics-port", str(port)])
        env.put(self.items.workload(10, 2, prefix="k"))
        poolkit.wait_for("the block to be seen", lambda: counter(
            port, "ddb2os_bulk_items_blocked_total") > 0, 30, step=0.2)
        status, why = http_get(port, "/readyz")
        self.assertEqual(status, 503)
        self.assertIn("cluster_block_exception", why)
        # several retries, all blocked: two more rounds of every item after the first
        seen = counter(port, "ddb2os_bulk_items_blocked_total")
        poolkit.wait_for("more blocked retries", lambda: counter(
            port, "ddb2os_bulk_items_blocked_total") >= 3 * seen, 30, step=0.2)
        self.assertEqual(env.sql("SELECT count(*) FROM dlq WHERE application = '%s'" % env.app),
                         "0")
        status, res = env.os_call("PUT", "/%s/_settings" % env.index,
                                  {"index.blocks.write": False})
        self.assertEqual(status, 200, res)
        self.converge(timeout=30)
        self.assertEqual(env.sql("SELECT count(*) FROM dlq WHERE application = '%s'" % env.app),
                         "0")
        poolkit.wait_for("ready again", lambda: http_get(port, "/readyz")[0] == 200,
                         3 * LEASE_MS / 1000)


class NullIterator(EdgeTest):
    tag = "edgenull"

    def test_no_next_iterator_on_an_open_shard_is_not_its_end(self):
        env = self.env
        env.create_stream(1)
        self.proxy = FaultProxy(env.kinesis_url, {}, pass_auth=True)
        a = self.start("N", kinesis=self.proxy.url)
        poolkit.wait_for("the lease", lambda: len(self.lease()) == 1 and self.lease()[0][1],
                         4 * LEASE_MS / 1000)
        env.put(self.items.workload(10, 1, prefix="n"))
        self.converge(timeout=20)
        self.proxy.set({"null_iterator": 1})
        poolkit.wait_for("a GetRecords answer without an iterator",
                         lambda: self.proxy.stats()["null_iterators"] == 1, 20, step=0.1)
        env.put(self.items.workload(10, 2, prefix="m"))
        self.converge(timeout=20)
        self.assertNotEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                    % env.app), "SHARD_END")
        self.assertIn("iterator_missing", a.tail(200))


class HandoffToTheDead(EdgeTest):
    tag = "edgeghost"

    def test_a_dead_pending_owner_does_not_stall_the_shard(self):
        env = self.env
        env.create_stream(1)
        a = self.start("A")
        poolkit.wait_for("A to hold the lease", lambda: any(
            r[1].startswith("A:") for r in self.lease()), 4 * LEASE_MS / 1000)
        # A worker asked for the lease and died before taking it.
        env.sql("UPDATE leases SET pending_owner = 'ghost:1', handoff_deadline = now()"
                " + interval '%d milliseconds' WHERE application = '%s'" % (LEASE_MS, env.app))
        t0 = time.time()
        env.put(self.items.workload(10, 2, prefix="h"))
        self.converge(timeout=20)
        print("records of a shard asked for by a dead worker indexed after %.2f s"
              % (time.time() - t0))
        ghost = env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                        " AND owner = 'ghost:1'" % env.app)
        self.assertEqual(ghost, "0", "the lease went to a dead worker\n%s" % self.logs())
        poolkit.wait_for("A to withdraw the request", lambda: "handoff_withdrawn" in a.tail(200),
                         LEASE_MS / 1000)
        self.assertTrue(self.lease()[0][1].startswith("A:"))


class AllocationFailures(EdgeTest):
    tag = "edgealloc"

    def test_failed_allocations_lose_nothing_and_block_no_checkpoint(self):
        env = self.env
        env.create_stream(1)
        os.environ["D2O_TEST_FAIL_ALLOC"] = "40"  # one record-path allocation in 40 fails
        try:
            a = self.start("F")
        finally:
            del os.environ["D2O_TEST_FAIL_ALLOC"]
        changes = self.items.workload(20, 2, prefix="a")
        poison = [("poison-%d" % i, b"{not a change record %d" % i) for i in range(12)]
        batch = []
        for i, c in enumerate(changes):
            batch.append(c)
            if i % 4 == 0 and poison:
                batch.append(poison.pop())
        batch += poison
        env.put(batch)
        self.converge(timeout=60)
        last = last_sequence(env)
        try:
            poolkit.wait_for("the checkpoint at the end of the stream", lambda: env.sql(
                "SELECT checkpoint FROM leases WHERE application = '%s'" % env.app) == last,
                30, step=0.5)
        except AssertionError:
            self.fail("the shard cannot checkpoint\n%s" % a.tail(80))
        dlq = env.sql("SELECT count(DISTINCT sequence_number) FROM dlq WHERE application = '%s'"
                      % env.app)
        self.assertEqual(dlq, "12", "a refused record was acknowledged without its DLQ row\n%s"
                         % a.tail(200))
        self.assertIn("out_of_memory", a.tail(2000))


class StoppedMidCall(EdgeTest):
    """A worker stopped while GetRecords calls are on their way frees what the calls hold."""
    tag = "edgemid"

    @unittest.skipUnless(shutil.which("valgrind"), "valgrind is not installed")
    def test_calls_in_flight_at_exit_leak_nothing(self):
        env = self.env
        env.create_stream(2)
        # Every GetRecords is held 60 s by the proxy: both shards' calls are on their way when
        # the drain times out.
        self.proxy = FaultProxy(env.kinesis_url,
                                {"delay_ms": 60000, "delay_targets": ["GetRecords"]},
                                max_seconds=240, pass_auth=True)
        saved = env.kinesis_url
        env.kinesis_url = self.proxy.url
        try:
            s = poolkit.Supervisor(
                BINARY, env, "A", workers=1, lease_ms=LEASE_MS,
                extra=["--single-process", "--drain-timeout-ms", "1000", "--log-level", "debug",
                       "--log-debug", "kinesis"],
                wrapper=["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                         "--error-exitcode=99", "--child-silent-after-fork=yes"])
        finally:
            env.kinesis_url = saved
        self.sups.append(s)
        poolkit.wait_for("a GetRecords call on both shards", lambda: len(set(
            line.split()[3] for line in s.tail(400).splitlines()
            if " get_records_call: " in line)) == 2, 120, step=0.5)
        s.signal(signal.SIGTERM)
        code = s.wait(120)
        log = s.tail(200)
        self.assertIn("drain_timeout", log)
        # valgrind exits 99 on a block definitely lost
        self.assertEqual(code, 0, log)


class StartChecks(unittest.TestCase):
    def test_a_timeout_that_outlives_gc_deletes_is_refused(self):
        out = subprocess.run([BINARY, "run", "--stream-name", "s", "--http-timeout-ms", "40s",
                              "--opensearch-gc-deletes-ms", "60s"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 78, out.stderr)
        self.assertIn("http_timeout_ms 40000 must be at most half of opensearch_gc_deletes_ms "
                      "60000", out.stderr)


def last_sequence(env):
    """The sequence number of the last record of the stream's only shard."""
    shard = env.shards()[0]["ShardId"]
    it = env.kinesis.get_shard_iterator(StreamName=env.stream, ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    last = None
    for _ in range(50):
        res = env.kinesis.get_records(ShardIterator=it, Limit=1000)
        if res["Records"]:
            last = res["Records"][-1]["SequenceNumber"]
        elif last:
            return last
        it = res["NextShardIterator"]
    raise AssertionError("no records in %s" % shard)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    BINARY = pool_test.BINARY = sys.argv[1]
    poolkit.need("D2O_TEST_PG")
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
