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

LoopUnderSlowPostgres: the same worker, 1.5 s away from PostgreSQL, answers /healthz within a
fraction of a round trip while it hands leases over to a new worker and releases the rest at its
drain, finishes a shard that was split (SHARD_END, then the lease let go before the children are
taken), resolves LATEST on every shard it takes, and checks every bulk request against the
delete store (delete_mode = delete) while changes flow, and reads a DynamoDB stream's start
version before its first read of a shard; and its renewal, which carries the
heartbeat, is never starved by a steady flow of checkpoints: the heartbeat and every lease stay
younger than a renewal plus two round trips.
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
        # on a new database the worker may not have created the table yet (its migration goes
        # through the slow proxy too): no checkpoints so far
        if self.env.sql("SELECT to_regclass('leases') IS NOT NULL") != "t":
            return {}
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


SLOW_MS = 1500
RECONNECT_SLOW_MS = 4000
RECONNECT_LEASE_MS = 60000


class Prober:
    """Asks a worker's /healthz every 50 ms from a thread: (start time, seconds to answer)."""

    def __init__(self, port):
        self.port = port
        self.probes = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            t0 = time.time()
            status, _ = poolkit.http_get(self.port, "/healthz")
            if status == 0 and time.time() - t0 < 4.5:
                break  # the worker is gone, or its loop ended (what it does at exit is not timed)
            self.probes.append((t0, time.time() - t0))
            time.sleep(0.05)

    def stop(self):
        self.done.set()
        self.thread.join(10)

    def slowest(self, start=0, end=float("inf")):
        window = [p for p in self.probes if start <= p[0] <= end]
        return len(window), max(window, key=lambda p: p[1]) if window else (0, 0)


class SlowLoop(ProxiedPostgres):
    """A worker 1.5 s from PostgreSQL whose loop serves /healthz itself (single process)."""

    def slow_worker(self, shards, extra=(), lease_ms=TAKE_LEASE_MS, latency_now=False):
        env = self.env
        if shards:
            env.create_stream(shards)
        host, port = conninfo_target(env.pg)
        self.pgproxy = edges_test.FaultProxy("%s:%s" % (host, port), {}, max_seconds=300,
                                             tcp=True)
        if latency_now:
            self.pgproxy.set({"latency_ms": SLOW_MS})
        self.port = poolkit.free_port()
        saved = env.pg
        env.pg = conninfo_via(env.pg, self.pgproxy.port)
        try:
            a = poolkit.Supervisor(edges_test.BINARY, env, "A", workers=1, lease_ms=lease_ms,
                                   metrics_port=self.port,
                                   extra=["--single-process", "--shard-sync-ms", "120000",
                                          "--memory-budget", "256MiB"] + list(extra))
        finally:
            env.pg = saved
        self.sups.append(a)
        return a

    def log_text(self, sup):
        with open(sup.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def a_holds(self, n):
        return lambda: len([r for r in self.lease() if r[1].startswith("A:")]) == n

    def assert_never_stalled(self, prober, start, end, what, a):
        n, slowest = prober.slowest(start, end)
        print("%s at %d ms per round trip: slowest /healthz answer %.0f ms of %d"
              % (what, SLOW_MS, slowest[1] * 1000, n))
        self.assertGreater(n, 10)
        self.assertLess(slowest[1] * 1000, SLOW_MS * 0.6,
                        "A's loop answered /healthz after %.0f ms while it %s (PostgreSQL %d ms "
                        "away); A's log then:\n%s"
                        % (slowest[1] * 1000, what, SLOW_MS,
                           lines_between(self.log_text(a), slowest[0], slowest[0] + slowest[1])))

    def writes(self, n, prefix):
        """n changes (inserts: a tombstone mode index holds deletes as documents)."""
        return [self.items.change("%s-%05d" % (prefix, i), "INSERT", {"title": "t%d" % i})
                for i in range(n)]

    def flow(self, seconds, prefix, every=0.3, per_round=40, removes=False):
        """Puts per_round changes every `every` s for `seconds` from a thread; join() it."""
        errors = []

        def run():
            try:
                end = time.time() + seconds
                r = 0
                while time.time() < end:
                    p = "%s%d-" % (prefix, r)
                    self.env.put(self.items.workload(per_round, 1, prefix=p) if removes
                                 else self.writes(per_round, p))
                    r += 1
                    time.sleep(every)
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append(e)
        t = threading.Thread(target=run)
        t.start()
        t.errors = errors
        return t



class LoopUnderSlowPostgres(SlowLoop):
    tag = "pgloop"

    def test_handing_over_and_releasing_stall_nothing(self):
        env = self.env
        a = self.slow_worker(SHARDS, ["--delete-mode", "tombstone"])
        poolkit.wait_for("A to hold every lease", self.a_holds(SHARDS), 90, step=0.5)
        env.put(self.writes(4 * SHARDS, "w"))
        self.converge(timeout=60)
        self.pgproxy.set({"latency_ms": SLOW_MS})
        time.sleep(2 * SLOW_MS / 1000.0)
        prober = Prober(self.port)
        t0 = time.time()
        traffic = self.flow(20, "h")
        # B asks A for leases; A hands them over at its next batch boundaries.
        b = poolkit.Supervisor(edges_test.BINARY, env, "B", workers=1, lease_ms=TAKE_LEASE_MS,
                               extra=["--delete-mode", "tombstone", "--shard-sync-ms", "120000"])
        self.sups.append(b)
        poolkit.wait_for("A and B to hold 4 leases each", self.balanced(SHARDS, 4, 2), 120,
                         step=0.5)
        traffic.join()
        self.assertEqual(traffic.errors, [])
        t1 = time.time()
        self.assertIn("lease_handed_over", self.log_text(a))
        self.converge(timeout=60)
        handed = prober.slowest(t0, t1)
        print("handed leases over: slowest /healthz answer %.0f ms of %d"
              % (handed[1][1] * 1000, handed[0]))
        # A drains: it releases its leases, one statement each.
        t2 = time.time()
        a.signal(signal.SIGTERM)
        self.assertEqual(a.wait(60), 0)
        t3 = time.time()
        prober.stop()
        self.assertGreater(self.pgproxy.stats()["delayed_chunks"], 0)
        self.assertIn("lease_released", self.log_text(a))
        n, slowest = prober.slowest(t2, t3)
        print("drain: slowest /healthz answer %.0f ms of %d" % (slowest[1] * 1000, n))
        self.assertLess(slowest[1] * 1000, SLOW_MS * 0.6,
                        "A's loop stopped %.0f ms while it released its leases:\n%s"
                        % (slowest[1] * 1000, lines_between(self.log_text(a), slowest[0],
                                                            slowest[0] + slowest[1])))
        self.assert_never_stalled(prober, t0, t1, "handed leases over", a)
        self.assertNotIn("lease_lost", self.log_text(a))
        poolkit.wait_for("B to hold every lease", lambda: len(
            [r for r in self.lease() if r[1].startswith("B:")]) == SHARDS, 60, step=0.5)
        self.converge(timeout=60)

    def test_finishing_a_split_shard_stalls_nothing(self):
        env = self.env
        a = self.slow_worker(2, ["--delete-mode", "tombstone"])
        poolkit.wait_for("A to hold both leases", self.a_holds(2), 90, step=0.5)
        env.put(self.writes(20, "w"))
        self.converge(timeout=60)
        self.pgproxy.set({"latency_ms": SLOW_MS})
        time.sleep(2 * SLOW_MS / 1000.0)
        prober = Prober(self.port)
        t0 = time.time()
        s0 = env.shards()[0]
        lo = int(s0["HashKeyRange"]["StartingHashKey"])
        hi = int(s0["HashKeyRange"]["EndingHashKey"])
        env.kinesis.split_shard(StreamName=env.stream, ShardToSplit=s0["ShardId"],
                                NewStartingHashKey=str((lo + hi) // 2))
        env.wait_active()
        traffic = self.flow(10, "s")

        def children_taken():
            rows = env.rows("SELECT shard_id, owner, checkpoint FROM leases WHERE application ="
                            " '%s' AND '%s' = ANY (parent_shard_ids)" % (env.app, s0["ShardId"]))
            return len(rows) == 2 and all(r[1].startswith("A:") for r in rows)
        poolkit.wait_for("A to finish the parent and take both children", children_taken, 120,
                         step=0.5)
        traffic.join()
        self.assertEqual(traffic.errors, [])
        t1 = time.time()
        self.converge(timeout=60)
        prober.stop()
        self.assertIn("shard_finished", self.log_text(a))
        self.assert_never_stalled(prober, t0, t1, "finished a shard", a)
        self.assertEqual(a.stop(), 0)

    def test_resolving_latest_stalls_nothing(self):
        env = self.env
        a = self.slow_worker(SHARDS, ["--delete-mode", "tombstone", "--initial-position",
                                      "LATEST"], latency_now=True)
        # The loop runs once the worker's heartbeat is in (it goes with the first renewal).
        poolkit.wait_for("A's heartbeat", lambda: env.sql(
            "SELECT count(*) FROM workers WHERE application = '%s'" % env.app) == "1", 120,
            step=0.3)
        prober = Prober(self.port)
        t0 = time.time()

        def resolved():
            cps = [r[0] for r in env.rows("SELECT checkpoint FROM leases WHERE application ="
                                           " '%s'" % env.app)]
            return len(cps) == SHARDS and all(cp == "AT_TIMESTAMP" for cp in cps)
        poolkit.wait_for("LATEST resolved on every shard", resolved, 120, step=0.3)
        time.sleep(1)
        t1 = time.time()
        prober.stop()
        self.assertIn("latest_resolved", self.log_text(a))
        self.assert_never_stalled(prober, t0, t1, "resolved LATEST", a)
        # What comes after the resolution is read.
        time.sleep(2 * SLOW_MS / 1000.0)
        env.put(self.writes(4 * SHARDS, "x"))
        self.converge(timeout=60)
        self.assertEqual(a.stop(), 0)

    def test_checking_the_delete_store_stalls_nothing(self):
        env = self.env
        a = self.slow_worker(4, ["--delete-mode", "delete"])
        poolkit.wait_for("A to hold every lease", self.a_holds(4), 90, step=0.5)
        env.put(self.items.workload(20, 1, prefix="w"))
        self.converge(timeout=60)
        self.pgproxy.set({"latency_ms": SLOW_MS})
        time.sleep(2 * SLOW_MS / 1000.0)
        prober = Prober(self.port)
        t0 = time.time()
        traffic = self.flow(15, "d", removes=True)
        traffic.join()
        self.assertEqual(traffic.errors, [])
        self.converge(timeout=60)
        t1 = time.time()
        prober.stop()
        self.assertGreater(int(env.sql("SELECT count(*) FROM deletes WHERE application = '%s'"
                                       % env.app)), 0)
        self.assert_never_stalled(prober, t0, t1, "checked bulk requests against the deletes", a)
        self.assertEqual(a.stop(), 0)

    def test_the_renewal_and_heartbeat_are_never_starved_by_checkpoints(self):
        env = self.env
        lease_ms = 12000
        renew_ms = lease_ms // 3
        a = self.slow_worker(SHARDS, ["--delete-mode", "tombstone"], lease_ms=lease_ms)
        poolkit.wait_for("A to hold every lease", self.a_holds(SHARDS), 90, step=0.5)
        self.pgproxy.set({"latency_ms": SLOW_MS})
        time.sleep(2 * SLOW_MS / 1000.0)
        # Changes into every shard all the time: a checkpoint statement is always due.
        traffic = self.flow(30, "r", every=0.2)
        worst_beat = worst_renewal = 0.0
        while traffic.is_alive():
            beat = float(env.sql("SELECT extract(epoch FROM clock_timestamp() - heartbeat_at)"
                                 " FROM workers WHERE application = '%s'" % env.app))
            renewal = float(env.sql(
                "SELECT max(%d / 1000.0 - extract(epoch FROM expires_at - clock_timestamp()))"
                " FROM leases WHERE application = '%s'" % (lease_ms, env.app)))
            worst_beat = max(worst_beat, beat)
            worst_renewal = max(worst_renewal, renewal)
            time.sleep(0.5)
        traffic.join()
        self.assertEqual(traffic.errors, [])
        print("renewal every %d ms at %d ms per round trip, changes on every shard: oldest"
              " heartbeat %.1f s, oldest renewal %.1f s" % (renew_ms, SLOW_MS, worst_beat,
                                                             worst_renewal))
        # A renewal waits behind at most the statement in flight: both are younger than a
        # renewal period plus that statement and its own round trip (and the sampling).
        bound = (renew_ms + 2 * SLOW_MS + 1000) / 1000.0
        self.assertLess(worst_beat, bound, "the heartbeat waited behind the checkpoints\n%s"
                        % a.tail(60))
        self.assertLess(worst_renewal, bound, "the renewal waited behind the checkpoints")
        self.assertNotIn("lease_lost", self.log_text(a))
        self.converge(timeout=60)
        self.pgproxy.set({"latency_ms": 0})
        self.assertEqual(a.stop(), 0)


class ReconnectUnderSlowPostgres(SlowLoop):
    tag = "pgreconn"

    def put_writes(self, n, prefix):
        """Puts n changes; returns shard id -> highest sequence number put to it."""
        res = self.env.kinesis.put_records(StreamName=self.env.stream, Records=[
            {"PartitionKey": pk, "Data": data} for pk, data in self.writes(n, prefix)])
        self.assertEqual(res["FailedRecordCount"], 0)
        last = {}
        for r in res["Records"]:
            last[r["ShardId"]] = max(last.get(r["ShardId"], 0), int(r["SequenceNumber"]))
        return last

    def test_reopening_both_sessions_stalls_nothing(self):
        env = self.env
        a = self.slow_worker(SHARDS, ["--delete-mode", "tombstone"], lease_ms=RECONNECT_LEASE_MS)
        poolkit.wait_for("A to hold every lease", self.a_holds(SHARDS), 90, step=0.5)
        env.put(self.writes(2 * SHARDS, "b"))
        self.converge(timeout=60)
        held = sorted(self.lease())
        prober = Prober(self.port)
        # PostgreSQL becomes slow (4 s a round trip: opening a session, several round trips,
        # cannot finish within the 10 s connect timeout) and both of A's sessions break, so A
        # opens them again, and again, through the proxy.
        self.pgproxy.set({"latency_ms": RECONNECT_SLOW_MS})
        t0 = time.time()
        env.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name LIKE 'ddb2os worker%'")
        poolkit.wait_for("A to notice", lambda: "pg_error" in self.log_text(a), 30)
        # Records read meanwhile are written to OpenSearch (tombstone mode: no PostgreSQL on the
        # way to it) while the sessions are being opened.
        last = self.put_writes(4 * SHARDS, "d")
        self.converge(timeout=RECONNECT_SLOW_MS / 1000.0 * 3)
        # Long enough for an opening to give up (its 10 s) and the next one to begin.
        time.sleep(max(0, t0 + 14 - time.time()))
        t1 = time.time()
        self.assertIn("pg_unavailable", self.log_text(a))
        # PostgreSQL returns: A opens its sessions, checkpoints every shard at its last change,
        # and holds every lease as before (same owner, same counter: none was lost).
        self.pgproxy.set({"latency_ms": 0})

        def caught_up():
            cps = {r[0]: r[1] for r in env.rows(
                "SELECT shard_id, checkpoint FROM leases WHERE application = '%s'" % env.app)}
            return all(cps[sh].isdigit() and int(cps[sh]) >= seq for sh, seq in last.items())
        poolkit.wait_for("every shard's checkpoint at its last change", caught_up, 30, step=0.3)
        prober.stop()
        self.assertEqual(sorted(self.lease()), held)
        self.assertNotIn("lease_lost", self.log_text(a))
        n, slowest = prober.slowest(t0, t1)
        print("reopening its sessions at %d ms per round trip: slowest /healthz answer %.0f ms"
              " of %d" % (RECONNECT_SLOW_MS, slowest[1] * 1000, n))
        self.assertGreater(n, 10)
        self.assertLess(slowest[1] * 1000, SLOW_MS * 0.6,
                        "A's loop answered /healthz after %.0f ms while it opened its sessions;"
                        " A's log then:\n%s" % (slowest[1] * 1000, lines_between(
                            self.log_text(a), slowest[0], slowest[0] + slowest[1])))
        self.converge(timeout=60)


class StreamStartUnderSlowPostgres(SlowLoop):
    """A DynamoDB stream (DynamoDB Local): a shard's start version comes from PostgreSQL."""
    tag = "pgddb"

    def test_reading_a_start_version_stalls_nothing(self):
        import ddbstreams_test
        env = self.env
        table = ddbstreams_test.Table(env.stream)
        try:
            for i in range(10):
                table.put("s-%03d" % i, "t%d" % i, 100 + i)
            a = self.slow_worker(0, [
                "--source", "dynamodb-streams", "--streams-endpoint",
                poolkit.need("D2O_TEST_DYNAMODB"), "--index-map",
                "%s=%s" % (table.name, env.index), "--key-schema", "%s=book_id" % table.name,
                "--delete-mode", "tombstone"], latency_now=True)
            poolkit.wait_for("A's heartbeat", lambda: env.sql(
                "SELECT count(*) FROM workers WHERE application = '%s'" % env.app) == "1", 120,
                step=0.3)
            prober = Prober(self.port)
            t0 = time.time()

            def read():
                docs = env.documents()
                return not table.mismatches(docs) and docs
            poolkit.wait_for("the table's items in OpenSearch", read, 120, step=0.5)
            t1 = time.time()
            prober.stop()
            self.assertGreater(int(env.sql(
                "SELECT count(*) FROM leases WHERE application = '%s'" % env.app)), 0)
            self.assert_never_stalled(prober, t0, t1, "read the shards' start versions", a)
            self.assertEqual(a.stop(), 0)
        finally:
            table.drop()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        edges_test.BINARY = sys.argv[1]
    poolkit.main(sys.modules[__name__])
