#!/usr/bin/python3
"""A slow PostgreSQL does not stall a worker, against real PostgreSQL, kinesis-mock and OpenSearch.

usage: pg_latency_test.py DDB2OS_BINARY [TEST_NAME...]

The worker reaches PostgreSQL through tests/proxy/faultproxy.py in TCP mode, which adds 200 ms to
every round trip while changes stream into 8 shards. Renewals and checkpoints never wait in the
worker's loop, so every shard's checkpoint keeps moving, every change lands in OpenSearch, and no
lease is lost or changes owner.

The second case holds 24 shards (kinesalite) with the shard sync every 2 s: a sync writes the
lease rows of every listed shard in one statement on the asynchronous session, so it never stops
the loop, and the same holds.

TakesUnderSlowPostgres: a worker 1.5 s away from PostgreSQL takes over the leases of a worker
killed with -9 while it keeps reading its own shards; its loop never stops for the takes (it
answers /healthz, which it serves itself in single-process mode, within a fraction of a round
trip the whole time).
"""
import datetime
import os
import re
import signal
import sys
import threading
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


class ProxiedPostgres(edges_test.EdgeTest):
    """An edge test that may put the fault proxy (self.pgproxy) in front of PostgreSQL."""

    def tearDown(self):
        if getattr(self, "pgproxy", None):
            self.pgproxy.stop()
        super().tearDown()


class SlowPostgres(ProxiedPostgres):
    tag = "pgslow"

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


TAKE_LATENCY_MS = 1500
TAKE_LEASE_MS = 24000
CALL_RE = re.compile(r"^(\S+) debug \S+ (\S+) get_records_call: ")


def call_times(log_text, shards):
    """shard id -> the wall times (s) of the GetRecords calls a worker's debug log shows."""
    out = {sh: [] for sh in shards}
    for line in log_text.splitlines():
        m = CALL_RE.match(line)
        if m and m.group(2) in out:
            ts = datetime.datetime.strptime(m.group(1).replace("Z", "+0000"),
                                            "%Y-%m-%dT%H:%M:%S.%f%z")
            out[m.group(2)].append(ts.timestamp())
    return out


def lines_between(log_text, start, end):
    """The lines of a log written between two wall times (s)."""
    out = []
    for line in log_text.splitlines():
        try:
            ts = datetime.datetime.strptime(line.split(" ", 1)[0].replace("Z", "+0000"),
                                            "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        except ValueError:
            continue
        if start <= ts <= end:
            out.append(line)
    return "\n".join(out)


class TakesUnderSlowPostgres(ProxiedPostgres):
    tag = "pgtake"

    def start_worker(self, task, pg, extra=(), metrics_port=0):
        env = self.env
        saved = env.pg
        env.pg = pg
        try:
            # Idle shards are polled every 200 ms, so a loop that stops for a round trip to
            # PostgreSQL shows as a gap between a shard's GetRecords calls; a memory budget
            # that never makes a call wait for room, so no other wait does. Discovery runs at
            # the start only.
            s = poolkit.Supervisor(edges_test.BINARY, env, task, workers=1,
                                   lease_ms=TAKE_LEASE_MS, metrics_port=metrics_port,
                                   extra=["--poll-idle-max-ms", "200", "--shard-sync-ms",
                                          "120000", "--memory-budget", "256MiB"] + list(extra))
        finally:
            env.pg = saved
        self.sups.append(s)
        return s

    def log_text(self, sup):
        with open(sup.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def test_taking_a_dead_workers_leases_stalls_no_held_shard(self):
        env = self.env
        env.create_stream(SHARDS)
        host, port = conninfo_target(env.pg)
        self.pgproxy = edges_test.FaultProxy("%s:%s" % (host, port), {}, max_seconds=300,
                                             tcp=True)
        # One process: the worker's own loop serves /healthz, so the time it takes to answer
        # is how long the loop can stop.
        port = poolkit.free_port()
        a = self.start_worker("A", conninfo_via(env.pg, self.pgproxy.port),
                              ["--single-process", "--log-level", "debug", "--log-debug",
                               "kinesis"], metrics_port=port)
        b = self.start_worker("B", env.pg)
        poolkit.wait_for("A and B to hold 4 leases each", self.balanced(SHARDS, 4, 2), 90,
                         step=0.5)
        held = sorted(r[0] for r in self.lease() if r[1].startswith("A:"))
        env.put(self.items.workload(4 * SHARDS, 1, prefix="w"))
        self.converge(timeout=60)

        self.pgproxy.set({"latency_ms": TAKE_LATENCY_MS})
        time.sleep(2 * TAKE_LATENCY_MS / 1000.0)
        probes = []  # (start, seconds to answer /healthz)
        done = threading.Event()

        def probe():
            while not done.is_set():
                t0 = time.time()
                poolkit.http_get(port, "/healthz")
                probes.append((t0, time.time() - t0))
                time.sleep(0.05)
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        # B dies without a word: its leases stay owned until they expire by the database's
        # clock, and A (the only live worker) takes them over.
        pids = b.worker_pids()
        b.signal(signal.SIGKILL)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed = time.time()
        poolkit.wait_for("A to hold every lease", lambda: len(
            [r for r in self.lease() if r[1].startswith("A:")]) == SHARDS,
            TAKE_LEASE_MS / 1000.0 * 2.5, step=0.3)
        time.sleep(1.0)
        took = time.time()
        done.set()
        prober.join(10)
        stats = self.pgproxy.stats()
        self.assertGreater(stats["delayed_chunks"], 0)

        # A's loop never stopped for a round trip to PostgreSQL: it answered every probe in a
        # fraction of one (on a loaded machine an answer takes up to a few hundred ms)...
        window = [p for p in probes if killed <= p[0] <= took]
        self.assertGreater(len(window), 20)
        slowest = max(window, key=lambda p: p[1])
        # ...and kept polling the shards it held (a gap between two calls also holds Kinesis'
        # answer time, so it is reported, not judged).
        calls = call_times(self.log_text(a), held)
        worst = (0.0, None, 0.0)
        for shard, times in calls.items():
            window = [t for t in times if killed <= t <= took]
            self.assertGreater(len(window), 5, "shard %s: %d calls while A took B's leases\n%s"
                               % (shard, len(window), self.logs()))
            for prev, nxt in zip(window, window[1:]):
                if nxt - prev > worst[0]:
                    worst = (nxt - prev, shard, prev)
        print("takes over %.1f s at %d ms per round trip; slowest /healthz answer %.0f ms of %d;"
              " largest gap between GetRecords calls of a held shard: %.0f ms (%s)"
              % (took - killed, TAKE_LATENCY_MS, slowest[1] * 1000, len(window),
                 worst[0] * 1000, worst[1]))
        self.assertLess(slowest[1] * 1000, TAKE_LATENCY_MS * 0.6,
                        "A's loop answered /healthz after %.0f ms while it took leases (PostgreSQL"
                        " %d ms away); A's log then:\n%s"
                        % (slowest[1] * 1000, TAKE_LATENCY_MS,
                           lines_between(self.log_text(a), slowest[0], slowest[0] + slowest[1])))
        self.assertIn("took the lease", a.tail(400))
        self.assertNotIn("lease_lost", self.log_text(a))

        # Nothing is lost: changes to every shard land, with PostgreSQL still slow.
        env.put(self.items.workload(4 * SHARDS, 1, prefix="x"))
        self.converge(timeout=60)
        self.pgproxy.set({"latency_ms": 0})
        self.assertEqual(a.stop(), 0)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        edges_test.BINARY = sys.argv[1]
    poolkit.main(sys.modules[__name__])
