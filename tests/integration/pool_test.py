#!/usr/bin/python3
"""The worker pool against real PostgreSQL, kinesis-mock and OpenSearch.

usage: pool_test.py DDB2OS_BINARY [TEST_NAME...]

Each test starts its own supervisors (`ddb2os run`) on a stream, application and index of its
own, writes change records into the stream and checks OpenSearch against a model of the table,
and the lease audit trail: no shard may have two owners in one lease epoch.
"""
import collections
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402

BINARY = None
LEASE_MS = 4000


class PoolTest(unittest.TestCase):
    tag = "pool"

    def setUp(self):
        self.env = poolkit.Env(self.tag)
        self.items = poolkit.Items()
        self.sups = []

    def tearDown(self):
        for s in self.sups:
            s.stop(timeout=5)
        two = self.env.epochs_with_two_owners()
        self.env.delete_stream()
        self.env.delete_index()
        shutil.rmtree(self.env.logdir, ignore_errors=True)
        self.assertEqual(two, [], "a shard had two owners in one lease epoch")

    def start(self, task, workers=2, **kw):
        s = poolkit.Supervisor(BINARY, self.env, task, workers=workers, lease_ms=LEASE_MS, **kw)
        self.sups.append(s)
        return s

    def converge(self, timeout=60):
        def matches():
            bad = self.items.mismatches(self.env.documents())
            return not bad or None
        try:
            poolkit.wait_for("OpenSearch to match the table", matches, timeout, step=0.5)
        except AssertionError:
            bad = self.items.mismatches(self.env.documents())
            logs = "\n".join("--- %s\n%s" % (s.task, s.tail()) for s in self.sups)
            self.fail("OpenSearch differs from the table:\n  %s\n%s" % ("\n  ".join(bad), logs))

    def lease_events(self, shard, since):
        """(shard, event, previous owner, owner, at) of shard's lease events after since (the
        database's clock), oldest first; a missing owner is ""."""
        return [(r[0], r[1], r[2], r[3], float(r[4])) for r in self.env.rows(
            "SELECT shard_id, event, coalesce(previous_owner, ''), coalesce(owner, ''),"
            " extract(epoch FROM at) FROM lease_events WHERE application = '%s'"
            " AND shard_id = '%s' AND at > to_timestamp(%f) ORDER BY at, id"
            % (self.env.app, shard, since))]

    def balanced(self, n_shards, per_owner, owners):
        def check():
            o = self.env.owners()
            counts = {}
            for owner in o.values():
                counts[owner] = counts.get(owner, 0) + 1
            ok = (len(o) == n_shards and len(counts) == owners and
                  all(c == per_owner for c in counts.values()))
            return counts if ok else None
        return check


class TwoSupervisors(PoolTest):
    tag = "pool2"

    def test_even_share_failover_and_handoff(self):
        env = self.env
        env.create_stream(8)
        a = self.start("A")
        b = self.start("B")
        counts = poolkit.wait_for("8 leases shared 2-2-2-2", self.balanced(8, 2, 4),
                                  6 * LEASE_MS / 1000)
        self.assertEqual(sorted(counts.values()), [2, 2, 2, 2])
        self.assertEqual(len([o for o in counts if o.startswith("A:")]), 2)
        env.put(self.items.workload(200, 3, prefix="x"))
        self.converge()

        # kill -9 of one worker: its shards resume elsewhere once their leases ran out. How soon
        # (lease + 2 s on an idle machine) is bench/pool_bench.py failover's to measure: a loaded
        # machine delays the takers, not the outcome.
        victim = a.worker_pids()[0]
        before = env.owners()
        lost = sorted(s for s, o in before.items() if o.endswith(":%d" % victim))
        self.assertEqual(len(lost), 2)
        t0 = env.db_now()
        os.kill(victim, signal.SIGKILL)
        env.put(self.items.workload(100, 2, prefix="y"))

        def resumed():
            o = env.owners()
            return all(s in o and not o[s].endswith(":%d" % victim) for s in lost)
        poolkit.wait_for("the dead worker's shards to be taken", resumed, 10 * LEASE_MS / 1000)
        # each lost shard's first change of owner: its lease expired, the dead worker's
        firsts = [self.lease_events(shard, t0)[0] for shard in lost]
        print("failover after kill -9: %.2f s (lease %.1f s)"
              % (max(at for _, _, _, _, at in firsts) - t0, LEASE_MS / 1000))
        for shard, event, previous, _, _ in firsts:
            self.assertEqual((event, previous.rsplit(":", 1)[-1]), ("expire", str(victim)), shard)
        self.converge()

        # The respawned worker has its share again: no handoff is under way when B stops.
        poolkit.wait_for("8 leases shared 2-2-2-2 again", self.balanced(8, 2, 4),
                         10 * LEASE_MS / 1000)

        # SIGTERM of supervisor B: its shards are handed off, each released by B and then taken
        # by A, without waiting for an expiry. How soon (1 s on an idle machine) is
        # bench/pool_bench.py handoff's to measure.
        b_shards = sorted(s for s, o in env.owners().items() if o.startswith("B:"))
        self.assertTrue(b_shards)
        t0 = env.db_now()
        b.signal(signal.SIGTERM)

        def moved():
            o = env.owners()
            return all(s in o and o[s].startswith("A:") for s in b_shards)
        poolkit.wait_for("B's shards to move to A", moved, 10 * LEASE_MS / 1000, step=0.05)
        self.assertEqual(b.wait(60), 0)
        events = {shard: self.lease_events(shard, t0) for shard in b_shards}
        print("handoff after SIGTERM: %.2f s for %d shards"
              % (max(ev[1][4] for ev in events.values() if len(ev) > 1) - t0, len(b_shards)))
        for shard, ev in events.items():
            # released by B, then taken as a free lease by A: no expiry, no steal
            self.assertEqual([(e, p.split(":")[0], o.split(":")[0]) for _, e, p, o, _ in ev[:2]],
                             [("release", "B", ""), ("take", "", "A")], (shard, ev))
            self.assertNotIn("expire", [e for _, e, _, _, _ in ev], (shard, ev))
        released = env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                           " AND event = 'release' AND previous_owner LIKE 'B:%%'" % env.app)
        self.assertEqual(int(released), len(b_shards))
        env.put(self.items.workload(100, 2, prefix="z"))
        self.converge()


class Reshard(PoolTest):
    tag = "poolrs"

    def metric(self, port, name, label):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def test_split_and_merge_under_traffic(self):
        env = self.env
        env.create_stream(2)
        port = 19000 + os.getpid() % 500
        self.start("R", workers=2, metrics_port=port)
        poolkit.wait_for("both shards leased", lambda: len(env.owners()) == 2, 4 * LEASE_MS / 1000)
        stop = threading.Event()
        errors = []

        def traffic():
            try:
                r = 0
                while not stop.is_set():
                    batch = []
                    for i in range(60):
                        batch.append(self.items.change(
                            "m-%03d" % i, "MODIFY" if r else "INSERT",
                            {"title": "round %d" % r, "round": r}))
                    env.put(batch)
                    r += 1
                    time.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append(e)
        t = threading.Thread(target=traffic)
        t.start()
        try:
            time.sleep(2)
            shards = env.shards()
            s0 = shards[0]
            lo, hi = int(s0["HashKeyRange"]["StartingHashKey"]), int(s0["HashKeyRange"]["EndingHashKey"])
            env.kinesis.split_shard(StreamName=env.stream, ShardToSplit=s0["ShardId"],
                                    NewStartingHashKey=str((lo + hi) // 2))
            env.wait_active()
            time.sleep(3)
            open_shards = [s for s in env.shards()
                           if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
            open_shards.sort(key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
            env.kinesis.merge_shards(StreamName=env.stream,
                                     ShardToMerge=open_shards[0]["ShardId"],
                                     AdjacentShardToMerge=open_shards[1]["ShardId"])
            env.wait_active()
            time.sleep(3)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.converge(timeout=90)
        # Parents finish before children: every child's first take comes after each parent's
        # end, the moment its SHARD_END checkpoint was committed (the lease is let go after it,
        # once the worker has the checkpoint's answer).
        late = env.rows(
            "SELECT c.shard_id, p FROM leases c, unnest(c.parent_shard_ids) p"
            " WHERE c.application = '{a}' AND EXISTS (SELECT 1 FROM lease_events t"
            "  WHERE t.application = '{a}' AND t.shard_id = c.shard_id AND t.event = 'take'"
            "  AND t.at < coalesce((SELECT e.checkpointed_at FROM leases e"
            "   WHERE e.application = '{a}' AND e.shard_id = p AND e.checkpoint = 'SHARD_END'),"
            "   'infinity'))".format(a=env.app))
        self.assertEqual(late, [], "a child was taken before its parent ended")
        ended = int(env.sql("SELECT count(*) FROM leases WHERE application = '%s'"
                            " AND checkpoint = 'SHARD_END'" % env.app))
        self.assertGreaterEqual(ended, 3)  # the split parent and both merged parents
        # Each item's writes arrived in order: none was refused as older than what was indexed.
        stale = self.metric(port, "ddb2os_documents_total", 'outcome="stale"')
        indexed = self.metric(port, "ddb2os_documents_total", 'outcome="indexed"')
        self.assertGreater(indexed, 0)
        self.assertEqual(stale, 0, "writes of an item arrived out of order")


class PostgresRestart(PoolTest):
    tag = "poolpg"

    def test_workers_recover(self):
        env = self.env
        env.create_stream(4)
        self.start("P", workers=2)
        poolkit.wait_for("4 leases owned", lambda: len(env.owners()) == 4, 4 * LEASE_MS / 1000)
        env.put(self.items.workload(100, 2, prefix="p"))
        self.converge()
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        restart = dict(os.environ, D2O_KEEP_DATA="1")
        subprocess_run([os.path.join(root, "scripts", "services"), "restart", "pg"], restart)
        env.put(self.items.workload(100, 2, prefix="q"))
        poolkit.wait_for("4 leases owned again", lambda: len(env.owners()) == 4,
                         6 * LEASE_MS / 1000, step=0.5)
        self.converge()
        log = "".join(s.tail(400) for s in self.sups)
        self.assertTrue(re.search(r" pg_(error|unavailable): ", log),
                        "the lost connection was not logged")


class MetricsAndHealth(PoolTest):
    tag = "poolmet"

    def get(self, port, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_counters_match_what_was_sent(self):
        from prometheus_client.parser import text_string_to_metric_families
        env = self.env
        env.create_stream(4)
        port = 19600 + os.getpid() % 300
        self.start("M", workers=2, metrics_port=port)
        # Balanced first, so no record is read twice by a lease move while the test counts.
        poolkit.wait_for("2 leases per worker", lambda: len(env.owners()) == 4 and sorted(
            collections.Counter(env.owners().values()).values()) == [2, 2], 8 * LEASE_MS / 1000)
        changes = self.items.workload(60, 2, prefix="m")  # 120 writes, 12 deletes
        bad = [(hashlib.md5(b"junk").hexdigest(), b"{this is not a change record")]
        env.put(changes + bad)
        self.converge()

        def scrape():
            return {f.name: f for f in text_string_to_metric_families(self.get(port, "/metrics")[1])}

        def total(fams, family, **labels):
            return sum(s.value for s in fams[family].samples if s.name.endswith("_total")
                       and all(s.labels.get(k) == v for k, v in labels.items()))

        def settled():
            fams = scrape()
            done = (total(fams, "ddb2os_records_read") >= len(changes) + 1
                    and total(fams, "ddb2os_dlq_writes") >= 1
                    and sum(s.value for s in fams["ddb2os_pending_records"].samples) == 0)
            return fams if done else None
        fams = poolkit.wait_for("every record counted and checkpointed", settled, 30, step=0.5)
        self.assertEqual(total(fams, "ddb2os_records_read"), len(changes) + 1)
        self.assertEqual(total(fams, "ddb2os_documents", outcome="indexed"), 120)
        self.assertEqual(total(fams, "ddb2os_documents", outcome="deleted"), 12)
        self.assertEqual(total(fams, "ddb2os_documents", outcome="dlq"), 1)
        self.assertEqual(total(fams, "ddb2os_dlq_writes"), 1)
        # Every change OpenSearch acknowledged is in the latency histogram, the dead-lettered
        # record is not; the changes' timestamps start at the model's creation, so no latency
        # can be longer than the time since.
        lat = [s for s in fams["ddb2os_replication_latency_seconds"].samples]
        count = sum(s.value for s in lat if s.name.endswith("_count"))
        self.assertEqual(count, 132)
        self.assertEqual(sum(s.value for s in lat if s.name.endswith("_bucket")
                             and s.labels["le"] == "+Inf"), 132)
        lat_sum = sum(s.value for s in lat if s.name.endswith("_sum"))
        self.assertGreater(lat_sum, 0)
        self.assertLessEqual(lat_sum, count * (time.time() - self.items.clock_us / 1e6 + 1))
        self.assertEqual(total(fams, "ddb2os_replication_latency_skewed"), 0)
        moved_in = (total(fams, "ddb2os_leases", event="taken")
                    + total(fams, "ddb2os_leases", event="stolen"))
        moved_out = (total(fams, "ddb2os_leases", event="released")
                     + total(fams, "ddb2os_leases", event="lost"))
        self.assertEqual(moved_in - moved_out, 4)
        held = sum(s.value for s in fams["ddb2os_leases_held"].samples)
        self.assertEqual(held, 4)
        self.assertEqual(self.get(port, "/healthz")[0], 200)
        self.assertEqual(self.get(port, "/readyz"), (200, "ready\n"))
        self.assertEqual(self.get(port, "/nope")[0], 404)
        rows = env.sql("SELECT error_class FROM dlq WHERE application = '%s'" % env.app)
        self.assertEqual(rows, "bad_record")

        # The operator's commands against the running pool.
        cli_env = dict(os.environ, DDB2OS_PG_CONNINFO=env.pg, DDB2OS_APPLICATION=env.app)

        def cli(*args):
            return subprocess.run([BINARY] + list(args), env=cli_env, capture_output=True,
                                  text=True, timeout=30)
        st = cli("status", "--json")
        self.assertEqual(st.returncode, 0, st.stderr)
        shards = json.loads(st.stdout)
        self.assertEqual(sorted((r["shard"], r["state"], r["owner"]) for r in shards),
                         sorted((sh, "owned", o) for sh, o in env.owners().items()))
        wk = json.loads(cli("workers", "--json").stdout)
        self.assertEqual(sorted(r["state"] for r in wk), ["live", "live"])
        shard = sorted(env.owners())[0]
        before = env.sql("SELECT checkpoint FROM leases WHERE application = '%s' AND shard_id = "
                         "'%s'" % (env.app, shard))
        refused = cli("checkpoint", "set", shard, "--at", "TRIM_HORIZON")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("owned by a live worker", refused.stderr)
        self.assertEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s' AND "
                                 "shard_id = '%s'" % (env.app, shard)), before)


class SecretsAndLogs(PoolTest):
    tag = "poolsec"

    def test_no_secret_in_logs_and_sighup_reopens(self):
        env = self.env
        env.create_stream(1)
        secrets = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETKEY",
                   "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENzzzz",
                   "password": "os-Pa55word-zzzz"}
        log_file = os.path.join(env.logdir, "daemon.log")
        os.environ["AWS_SESSION_TOKEN"] = secrets["AWS_SESSION_TOKEN"]
        try:
            poolkit.ENV_AWS["AWS_SECRET_ACCESS_KEY"] = secrets["AWS_SECRET_ACCESS_KEY"]
            sup = self.start("L", workers=1, extra=[
                "--opensearch-auth", "basic", "--opensearch-user", "ddb2os",
                "--opensearch-password", secrets["password"], "--log-level", "debug",
                "--log-debug", "all", "--log-file", log_file])
        finally:
            poolkit.ENV_AWS["AWS_SECRET_ACCESS_KEY"] = "pool-test-secret"
            del os.environ["AWS_SESSION_TOKEN"]
        poolkit.wait_for("the lease", lambda: len(env.owners()) == 1, 4 * LEASE_MS / 1000)
        batch = self.items.workload(30, 2, prefix="s")
        batch.append(("bad", b'{"eventName": "MODIFY", "dynamodb": {}}'))  # to the DLQ
        env.put(batch)
        self.converge()
        poolkit.wait_for("the bad record in the DLQ", lambda: env.sql(
            "SELECT count(*) FROM dlq WHERE application = '%s'" % env.app) == "1", 20)
        # SIGHUP reopens log_file: after a rotation, new lines go to a new file.
        os.rename(log_file, log_file + ".1")
        sup.signal(signal.SIGHUP)
        poolkit.wait_for("a new log file", lambda: os.path.exists(log_file), 10)
        env.put(self.items.workload(5, 1, prefix="t"))
        self.converge()
        self.assertEqual(sup.stop(), 0)
        with open(log_file + ".1", errors="replace") as f:
            text = f.read()
        with open(log_file, errors="replace") as f:
            text += f.read()
        self.assertIn("lease_acquired", text)
        self.assertIn("logs_reopened", text)
        for name, value in secrets.items():
            self.assertNotIn(value, text, "%s appears in the log" % name)
            self.assertNotIn(value[:12], text, "a part of %s appears in the log" % name)


class Retention(PoolTest):
    """Shards that left the stream, and a stream that does not exist."""
    tag = "poolret"

    def lease_row(self, shard, checkpoint, parents=()):
        self.env.sql("INSERT INTO leases (application, stream, shard_id, checkpoint,"
                     " parent_shard_ids) VALUES ('%s', '%s', '%s', '%s', '{%s}')"
                     % (self.env.app, self.env.stream, shard, checkpoint, ",".join(parents)))

    def events(self, shard, event):
        return int(self.env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                                " AND shard_id = '%s' AND event = '%s'"
                                % (self.env.app, shard, event)))

    def test_aged_out_parents_do_not_hold_their_child(self):
        env = self.env
        env.create_stream(1)
        child = env.shards()[0]["ShardId"]
        subprocess_run([BINARY, "migrate", "--pg-conninfo", env.pg], dict(os.environ))
        # The parents of a merge, both gone from the stream: one never read (TRIM_HORIZON), one
        # read up to a sequence number. The stream's only shard is their child.
        gone = ["shardId-000000009998", "shardId-000000009999"]
        self.lease_row(gone[0], "TRIM_HORIZON")
        self.lease_row(gone[1], "49650000000000000000000000000000000000000000000000000000")
        self.lease_row(child, "TRIM_HORIZON", gone)
        env.put(self.items.workload(20, 2, prefix="r"))
        self.start("A", workers=1)
        self.converge(timeout=60)
        for shard in gone:
            self.assertEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                     " AND shard_id = '%s'" % (env.app, shard)), "SHARD_END")
            self.assertEqual(self.events(shard, "aged_out"), 1, shard)
            self.assertEqual(self.events(shard, "shard_end"), 1, shard)
        self.assertGreaterEqual(self.events(child, "take"), 1)

    def test_missing_stream_stays_an_error(self):
        env = self.env
        subprocess_run([BINARY, "migrate", "--pg-conninfo", env.pg], dict(os.environ))
        self.lease_row("shardId-000000000000", "TRIM_HORIZON")
        sup = self.start("A", workers=1)
        poolkit.wait_for("the missing stream reported",
                         lambda: "stream_not_found" in sup.tail(200), 30, step=0.5)
        self.assertIsNone(sup.proc.poll(), "the supervisor exited")
        self.assertEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                 % env.app), "TRIM_HORIZON")
        self.assertEqual(self.events("shardId-000000000000", "aged_out"), 0)


class MillisecondPrecision(PoolTest):
    tag = "poolms"

    def test_warned_once_per_shard_and_versions_in_microseconds(self):
        env = self.env
        self.items = poolkit.Items(precision="MILLISECOND")
        env.create_stream(2)
        env.put(self.items.workload(40, 3, prefix="ms"))
        sup = self.start("A", workers=1)
        self.converge(timeout=60)  # the model's versions are the milliseconds x 1000
        lines = [l for l in sup.tail(100000).splitlines() if "millisecond_precision" in l]
        shards = sorted(s["ShardId"] for s in env.shards())
        per_shard = {s: sum(1 for l in lines if s in l) for s in shards}
        self.assertEqual(per_shard, {s: 1 for s in shards}, "\n".join(lines))
        self.assertEqual(len(lines), len(shards))


def subprocess_run(args, env):
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError("%s failed: %s %s" % (args, out.stdout, out.stderr))


if __name__ == "__main__":
    poolkit.main(sys.modules[__name__])
