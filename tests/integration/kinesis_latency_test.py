#!/usr/bin/python3
"""A slow shard listing does not stall a worker, against real PostgreSQL, kinesalite and OpenSearch.

usage: kinesis_latency_test.py DDB2OS_BINARY [TEST_NAME...]

The worker reaches kinesalite through tests/proxy/faultproxy.py, which holds every ListShards call
(the shard sync, every 2 s) for 4 s while changes stream into 8 shards; every other call passes at
once. The listing goes through the loop's multi handle like GetRecords, so every shard's checkpoint
keeps moving while a listing is on its way, every change lands in OpenSearch, and no lease is lost.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402
import edges_test  # noqa: E402
import pg_latency_test  # noqa: E402

SHARDS = 8
LIST_DELAY_MS = 4000
WINDOW_S = 12


class SlowListShards(edges_test.EdgeTest):
    tag = "klistslow"
    checkpoints = pg_latency_test.SlowPostgres.checkpoints
    put_round = pg_latency_test.SlowPostgres.put_round
    stream_changes = pg_latency_test.SlowPostgres.stream_changes
    wait_caught_up = pg_latency_test.SlowPostgres.wait_caught_up

    def setUp(self):
        self.env = poolkit.Env(self.tag, kinesis="D2O_TEST_KINESALITE")
        self.items = poolkit.Items()
        self.sups = []

    def tearDown(self):
        if getattr(self, "proxy", None):
            self.proxy.stop()
        super().tearDown()

    def test_records_flow_on_every_shard_while_the_listing_is_slow(self):
        env = self.env
        env.create_stream(SHARDS)
        self.proxy = edges_test.FaultProxy(env.kinesis_url, {}, max_seconds=240, pass_auth=True)
        # the shard sync every 2 s (the test supervisor's setting)
        a = self.start("A", kinesis=self.proxy.url)
        poolkit.wait_for("A to hold every lease", lambda: len(
            [r for r in self.lease() if r[1].startswith("A:")]) == SHARDS, 30)
        env.put(self.items.workload(5 * SHARDS, 1, prefix="w"))
        self.converge(timeout=60)
        leases_before = sorted(self.lease())

        self.proxy.set({"delay_ms": LIST_DELAY_MS, "delay_targets": ["ListShards"]})
        # Changes go into every shard every second; the checkpoints are sampled in between.
        rounds, last, moves = self.stream_changes(WINDOW_S, 1, 12 * SHARDS, 0.2)
        delayed = self.proxy.stats()["delayed_requests"]
        print("%d rounds in %.0f s, %d ListShards held %d ms each; checkpoint moves per shard: %s"
              % (rounds, WINDOW_S, delayed, LIST_DELAY_MS, moves))
        # The shard sync listed while the changes came: a listing was held most of the time.
        self.assertGreaterEqual(delayed, WINDOW_S * 1000 // (LIST_DELAY_MS + 2000))
        self.assertNotIn("lease_lost", a.tail(2000))
        self.assertEqual(sorted(self.lease()), leases_before)
        # Every shard's checkpoint kept moving: a loop that waited for each listing would turn
        # once every LIST_DELAY_MS, and move each checkpoint at most WINDOW_S / 4 s = 3 times
        # (0 or 1 times, measured).
        self.assertEqual(len(last), SHARDS, "the changes did not reach every shard")
        for shard in last:
            self.assertGreaterEqual(moves.get(shard, 0), WINDOW_S // 3,
                                    "shard %s: checkpoint moved %d times in %d s\n%s"
                                    % (shard, moves.get(shard, 0), WINDOW_S, self.logs()))
        # ...and everything lands, and is checkpointed, while the listing is still slow.
        self.converge(timeout=30)
        self.wait_caught_up(last)
        self.proxy.set({"delay_ms": 0})
        self.assertEqual(a.stop(), 0)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        edges_test.BINARY = sys.argv[1]
    poolkit.main(sys.modules[__name__])
