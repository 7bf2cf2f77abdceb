#!/usr/bin/python3
"""A slow PostgreSQL does not stall a worker, against real PostgreSQL, kinesis-mock and OpenSearch.

usage: pg_latency_test.py DDB2OS_BINARY [TEST_NAME...]

The worker reaches PostgreSQL through tests/proxy/faultproxy.py in TCP mode, which adds 200 ms to
every round trip while changes stream into 8 shards. Renewals and checkpoints never wait in the
worker's loop, so every shard's checkpoint keeps moving, every change lands in OpenSearch, and no
lease is lost or changes owner.

The second case holds 24 shards (kinesalite) with the shard sync every 2 s: a sync of shards
that already have lease rows makes no statement per shard, so its few round trips (the sync's
lock) stall the loop for well under a lease period, and the same holds.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402
import edges_test  # noqa: E402

SHARDS = 8
MANY_SHARDS = 24
LATENCY_MS = 200
WINDOW_S = 14


def conninfo_via(conninfo, port):
    """The conninfo (keyword form) with host and port replaced by the proxy's."""
    words = [w for w in conninfo.split() if not w.startswith(("host=", "hostaddr=", "port="))]
    return " ".join(["host=127.0.0.1", "port=%d" % port] + words)


def conninfo_target(conninfo):
    kv = dict(w.split("=", 1) for w in conninfo.split() if "=" in w)
    return kv.get("host", "127.0.0.1"), kv.get("port", "5432")


class SlowPostgres(edges_test.EdgeTest):
    tag = "pgslow"

    def tearDown(self):
        if getattr(self, "pgproxy", None):
            self.pgproxy.stop()
        super().tearDown()

    def checkpoints(self):
        return {r[0]: r[1] for r in self.env.rows(
            "SELECT shard_id, checkpoint FROM leases WHERE application = '%s'" % self.env.app)}

    def put_round(self, n, prefix):
        """Puts n changes; returns shard id -> highest sequence number put to it."""
        recs = self.items.workload(n, 1, prefix=prefix)
        res = self.env.kinesis.put_records(StreamName=self.env.stream, Records=[
            {"PartitionKey": pk, "Data": data} for pk, data in recs])
        self.assertEqual(res["FailedRecordCount"], 0)
        last = {}
        for r in res["Records"]:
            last[r["ShardId"]] = max(last.get(r["ShardId"], 0), int(r["SequenceNumber"]))
        return last

    def stream_changes(self, window_s, every_s, per_round, sample_s):
        """Puts per_round changes every every_s for window_s, sampling the checkpoints in
        between. Returns the rounds put, shard id -> highest sequence number put to it, and
        shard id -> how many times its checkpoint moved."""
        seen = {}
        last = {}
        rounds = 0
        start = time.time()
        next_put = start
        while time.time() < start + window_s:
            if time.time() >= next_put:
                for shard, seq in self.put_round(per_round, prefix="r%d-" % rounds).items():
                    last[shard] = max(last.get(shard, 0), seq)
                rounds += 1
                next_put += every_s
            for shard, cp in self.checkpoints().items():
                seen.setdefault(shard, set()).add(cp)
            time.sleep(sample_s)
        return rounds, last, {shard: len(cps) - 1 for shard, cps in seen.items()}

    def wait_caught_up(self, last):
        """Waits until every shard's checkpoint is at its last change (from stream_changes)."""
        def caught_up():
            cps = self.checkpoints()
            return all(cps[sh].isdigit() and int(cps[sh]) >= seq for sh, seq in last.items())
        poolkit.wait_for("every shard's checkpoint at its last change", caught_up, 15, step=0.3)

    def test_records_flow_on_every_shard_and_no_lease_is_lost(self):
        # shard discovery at its default period
        self.flow_while_postgres_is_slow(SHARDS, ["--shard-sync-ms", "30000"])

    def test_a_frequent_shard_sync_of_many_shards_stalls_nothing(self):
        # 24 shards, listed every 2 s (the test supervisor's setting): one statement per listed
        # shard would hold the loop 24 x 200 ms every sync, longer than the lease
        self.env = poolkit.Env(self.tag, kinesis="D2O_TEST_KINESALITE")
        self.flow_while_postgres_is_slow(MANY_SHARDS, [])

    def flow_while_postgres_is_slow(self, shards, extra):
        env = self.env
        env.create_stream(shards)
        host, port = conninfo_target(env.pg)
        self.pgproxy = edges_test.FaultProxy("%s:%s" % (host, port), {}, max_seconds=240,
                                             tcp=True)
        saved = env.pg
        env.pg = conninfo_via(env.pg, self.pgproxy.port)
        try:
            a = self.start("A", extra=extra)
        finally:
            env.pg = saved
        poolkit.wait_for("A to hold every lease", lambda: len(
            [r for r in self.lease() if r[1].startswith("A:")]) == shards, 30)
        env.put(self.items.workload(5 * shards, 1, prefix="w"))
        self.converge(timeout=60)
        leases_before = sorted(self.lease())
        events_before = env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                                % env.app)

        self.pgproxy.set({"latency_ms": LATENCY_MS})
        # Changes go into every shard every 2 s; the checkpoints are sampled in between.
        rounds, last, moves = self.stream_changes(WINDOW_S, 2, 12 * shards, 0.3)
        stats = self.pgproxy.stats()
        self.assertGreater(stats["delayed_chunks"], 0)
        print("%d shards, %d rounds in %.0f s at %d ms per round trip; checkpoint moves per "
              "shard: %s" % (shards, rounds, WINDOW_S, LATENCY_MS, moves))
        # No lease was lost, stolen or handed over, and the worker never stopped a shard.
        self.assertNotIn("lease_lost", a.tail(2000))
        self.assertEqual(sorted(self.lease()), leases_before)
        self.assertEqual(env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                                 % env.app), events_before)
        # Every shard's checkpoint kept moving while the changes came...
        self.assertEqual(len(last), shards, "the changes did not reach every shard")
        for shard in last:
            self.assertGreaterEqual(moves.get(shard, 0), 2, "shard %s: checkpoint moved %d times"
                                    " in %d s\n%s" % (shard, moves.get(shard, 0), WINDOW_S,
                                                      self.logs()))
        # ...and everything lands, and is checkpointed, while PostgreSQL is still slow.
        self.converge(timeout=30)
        self.wait_caught_up(last)
        self.pgproxy.set({"latency_ms": 0})
        self.assertEqual(a.stop(), 0)

if __name__ == "__main__":
    if len(sys.argv) > 1:
        edges_test.BINARY = sys.argv[1]
    poolkit.main(sys.modules[__name__])
