#!/usr/bin/python3
"""ddb2os under an orchestrator: signals, process life, health and readiness, startup errors.

usage: ops_life.py DDB2OS_BINARY [TEST_NAME...]

Each test starts its own `ddb2os run` (in a process group of its own, as a container's init or
a terminal would) against the real PostgreSQL, kinesis-mock and OpenSearch, and checks what an
orchestrator sees: exit codes, /healthz and /readyz, the metrics, the workers table, the log.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402
from poolkit import free_port, http_get  # noqa: E402

BINARY = None
LEASE_MS = 3000




def alive(pid):
    """True while pid runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except OSError:
        return False


def serve(sock, deadline, handle):
    """Hands each connection accepted on sock to handle(conn), until deadline() has passed or
    sock is closed."""
    sock.settimeout(0.2)
    while time.time() < deadline():
        try:
            c, _ = sock.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        handle(c)


class Stall:
    """An HTTP server that reads requests and never answers them, as a hung OpenSearch would.
    seen() is what it received so far. Stops by itself after max_seconds."""

    def __init__(self, max_seconds=120):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.conns = []
        self.lock = threading.Lock()
        self.deadline = time.time() + max_seconds
        threading.Thread(target=serve, args=(self.sock, lambda: self.deadline, self._accept),
                         daemon=True).start()

    def _accept(self, c):
        with self.lock:
            self.conns.append(c)
        threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        c.settimeout(0.2)
        while time.time() < self.deadline:
            try:
                data = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.data += data

    def seen(self):
        with self.lock:
            return self.data

    def close(self):
        self.deadline = 0
        with self.lock:
            for c in self.conns:
                c.close()
        self.sock.close()


class TcpCut:
    """A TCP forwarder to PostgreSQL that can be cut: then it closes every connection and
    refuses new ones, as a lost network would. Stops by itself after max_seconds."""

    def __init__(self, host, port, max_seconds=120):
        self.up = (host, port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.cut = False
        self.lock = threading.Lock()
        self.deadline = time.time() + max_seconds
        threading.Thread(target=serve, args=(self.sock, lambda: self.deadline, self._accept),
                         daemon=True).start()

    def _accept(self, c):
        if self.cut:
            c.close()
            return
        try:
            u = socket.create_connection(self.up, timeout=5)
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns += [c, u]
        threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def sever(self):
        self.cut = True
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass
            self.conns = []

    def close(self):
        self.deadline = 0
        self.sever()
        self.sock.close()


def answer_credentials(c, key_id, valid_s):
    """Reads a request on c and answers it as an ECS container credentials endpoint, with
    credentials that expire in valid_s seconds; then closes c."""
    c.settimeout(5)
    try:
        c.recv(65536)
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + valid_s))
        body = json.dumps({"AccessKeyId": key_id, "SecretAccessKey": "test-secret",
                           "Token": "test-token", "Expiration": exp}).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                  b"%d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    finally:
        c.close()


class SlowCredentials(Stall):
    """An ECS container credentials endpoint that answers the first request with credentials
    due for a refresh (they expire in 200 s, within the 5 minutes ddb2os refreshes ahead) and
    then hangs: every refresh reaches it and gets no answer."""

    def _accept(self, c):
        with self.lock:
            first = not getattr(self, "answered", False)
            self.answered = True
        if not first:
            return super()._accept(c)
        answer_credentials(c, "AKIDSLOWCREDS", 200)

    def refreshes(self):
        return self.seen().count(b"GET /creds")


class CredentialsThenHang(Stall):
    """An ECS container credentials endpoint that answers with credentials valid for an hour
    (no refresh is due) until hang() is called, and from then on reads every request and never
    answers it. answered() and hung() count the requests of each kind."""

    def __init__(self, max_seconds=120):
        super().__init__(max_seconds)
        self.hanging = False
        self.n_answered = 0

    def hang(self):
        self.hanging = True

    def _accept(self, c):
        if self.hanging:
            return super()._accept(c)
        answer_credentials(c, "AKIDHANGCREDS", 3600)
        with self.lock:
            self.n_answered += 1

    def answered(self):
        with self.lock:
            return self.n_answered

    def hung(self):
        return self.seen().count(b"GET /creds")


class Run:
    """One `ddb2os run` in its own process group, logging to a file."""

    def __init__(self, env, task, workers=2, extra=(), pg=None, stream=None, conf_file=None,
                 environ=None):
        self.log_path = os.path.join(env.logdir, "%s.log" % task)
        args = [BINARY, "run"]
        if conf_file:
            args += ["-c", conf_file]
        args += ["--application", env.app, "--aws-region", poolkit.REGION,
                 "--kinesis-endpoint", env.kinesis_url, "--opensearch-url", env.opensearch,
                 "--index-map", "books=%s" % env.index, "--key-schema", "books=book_id",
                 "--pg-conninfo", pg or env.pg, "--workers", str(workers), "--task-id", task,
                 "--lease-ms", str(LEASE_MS), "--shard-sync-ms", "2000", "--bulk-flush-ms",
                 "50", "--log-format", "text", "--drain-timeout-ms", "10000"]
        if not conf_file:
            args += ["--stream-name", stream or env.stream]
        if "--metrics-port" not in extra:
            # No fixed port: another run on the machine may hold the default one.
            args += ["--metrics-port", "0"]
        args += list(extra)
        proc_env = dict(os.environ)
        proc_env.update(poolkit.ENV_AWS)
        for k, v in (environ or {}).items():
            if v is None:
                proc_env.pop(k, None)
            else:
                proc_env[k] = v
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=proc_env, start_new_session=True)

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True)
        return [int(p) for p in out.stdout.split()]

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Base(unittest.TestCase):
    tag = "life"

    def setUp(self):
        self.env = poolkit.Env(self.tag)
        self.items = poolkit.Items()
        self.runs = []

    def tearDown(self):
        for r in self.runs:
            r.stop()
            for pid in r.worker_pids():
                os.kill(pid, signal.SIGKILL)
        self.env.delete_stream()
        self.env.delete_index()
        if not os.environ.get("D2O_KEEP_LOGS"):
            shutil.rmtree(self.env.logdir, ignore_errors=True)

    def start(self, task, **kw):
        r = Run(self.env, task, **kw)
        self.runs.append(r)
        return r

    def held(self, n):
        return lambda: len(self.env.owners()) == n

    def start_holding(self, task, shards, **kw):
        """A stream of shards shards and a run whose workers hold every lease."""
        self.env.create_stream(shards)
        run = self.start(task, **kw)
        poolkit.wait_for("%d leases" % shards, self.held(shards), 6 * LEASE_MS / 1000)
        return run

    def logs(self):
        return "\n".join(r.text() for r in self.runs)


class Signals(Base):
    tag = "lifesig"

    def test_group_signal_is_one_drain(self):
        env = self.env
        # The drain must end by itself, not by its timeout: a generous one, for a loaded machine
        # where OpenSearch answers the last bulk requests slowly.
        run = self.start_holding("G", 2, workers=2, extra=["--drain-timeout-ms", "60000"])
        env.put(self.items.workload(50, 2, prefix="g"))
        # What Ctrl-C, `timeout`, systemd and docker do: the signal goes to the whole group.
        os.killpg(run.proc.pid, signal.SIGTERM)
        self.assertEqual(run.proc.wait(timeout=90), 0, run.text()[-3000:])
        log = run.text()
        self.assertIn(" drain: ", log)
        self.assertNotIn("stop_now", log, "one signal to the group was taken as two")
        self.assertNotIn("drain_timeout", log)
        released = env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                           " AND event = 'release'" % env.app)
        self.assertEqual(int(released), 2)

    def test_drained_workers_show_stopped(self):
        env = self.env
        run = self.start_holding("W", 2, workers=2, extra=["--drain-timeout-ms", "60000"])
        env.put(self.items.workload(20, 1, prefix="w"))
        time.sleep(1)
        run.proc.send_signal(signal.SIGTERM)
        self.assertEqual(run.proc.wait(timeout=90), 0)
        cli_env = dict(os.environ, DDB2OS_PG_CONNINFO=env.pg, DDB2OS_APPLICATION=env.app)
        out = subprocess.run([BINARY, "workers", "--json"], env=cli_env, capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        states = sorted(w["state"] for w in json.loads(out.stdout))
        self.assertEqual(states, ["stopped", "stopped"])

    def start_stuck(self, task, drain_ms):
        """A run of one worker whose records are stuck in the sink: its bulk request reached an
        OpenSearch that never answers (self.stall), so its drain lasts until drain_ms."""
        self.env.create_stream(1)
        self.stall = Stall()
        self.addCleanup(self.stall.close)
        run = self.start(task, workers=1, extra=[
            "--opensearch-url", "http://127.0.0.1:%d" % self.stall.port,
            "--http-timeout-ms", "30000", "--drain-timeout-ms", str(drain_ms)])
        poolkit.wait_for("the lease", self.held(1), 10 * LEASE_MS / 1000)
        self.env.put(self.items.workload(5, 1, prefix=task.lower()))
        poolkit.wait_for("the bulk request", lambda: b"POST /_bulk" in self.stall.seen(), 60)
        return run

    def assert_stopped_now(self, run):
        """It exits because of a second signal, with the bulk request still unanswered and
        long before the drain timeout would have ended the drain."""
        self.assertEqual(run.proc.wait(timeout=50), 0)
        self.assertIn("stop_now", run.text())
        self.assertNotIn("drain_timeout", run.text())

    def test_second_signal_a_while_later_releases_at_once(self):
        run = self.start_stuck("Q", 60000)
        os.killpg(run.proc.pid, signal.SIGTERM)
        # Both the supervisor and the worker took the first signal ...
        poolkit.wait_for("the drain to begin", lambda: " stop signal: " in run.text()
                         and " draining: " in run.text(), 30)
        # ... and the second one comes a while later.
        time.sleep(1.5)
        os.killpg(run.proc.pid, signal.SIGTERM)
        self.assert_stopped_now(run)

    def test_group_signal_forwarded_late_is_still_one_drain(self):
        run = self.start_stuck("L", 12000)
        sup = run.proc.pid
        # A supervisor slow to forward (a loaded machine): it is stopped while the group's
        # signal reaches the worker, and forwards its copy 2.5 s after the worker took its
        # own, later than any fixed window for "the same request" would allow.
        os.kill(sup, signal.SIGSTOP)
        try:
            os.killpg(sup, signal.SIGTERM)
            poolkit.wait_for("the worker draining", lambda: " draining: " in run.text(), 30)
            time.sleep(2.5)
        finally:
            os.kill(sup, signal.SIGCONT)
        poolkit.wait_for("the supervisor's copy", lambda: " stop signal: " in run.text(), 30)
        # One request: the worker drains on until the drain timeout, it does not stop at once.
        self.assertEqual(run.proc.wait(timeout=60), 0)
        log = run.text()
        self.assertNotIn("stop_now", log, "a late forwarded copy was taken as a second signal")
        self.assertIn("drain_timeout", log)

    def test_second_signal_to_the_supervisor_alone_releases_at_once(self):
        run = self.start_stuck("S", 60000)
        # docker stop, twice: only the supervisor gets the signals, the workers only the
        # forwarded copies, which have no direct twin and are two requests.
        run.proc.send_signal(signal.SIGTERM)
        poolkit.wait_for("the drain to begin", lambda: " draining: " in run.text(), 30)
        run.proc.send_signal(signal.SIGTERM)
        self.assert_stopped_now(run)

    def test_workers_exit_when_the_supervisor_is_killed(self):
        env = self.env
        run = self.start_holding("K", 2, workers=2)
        pids = run.worker_pids()
        self.assertEqual(len(pids), 2)
        run.proc.kill()  # kill -9 of the supervisor alone, as the OOM killer would
        run.proc.wait()
        poolkit.wait_for("the orphaned workers to exit", lambda: not any(alive(p) for p in pids),
                         15)
        # They drained: their leases are free now, not held until they expire.
        self.assertEqual(env.owners(), {})

    def test_sighup_reloads_the_log_settings(self):
        env = self.env
        env.create_stream(1)
        conf = os.path.join(env.logdir, "ddb2os.conf")
        with open(conf, "w") as f:
            f.write("stream_name = %s\nlog_level = info\n" % env.stream)
        run = self.start("H", workers=1, conf_file=conf, extra=["--log-debug", "all"])
        poolkit.wait_for("the lease", self.held(1), 6 * LEASE_MS / 1000)
        self.assertNotIn(" debug ", run.text())
        with open(conf, "w") as f:
            f.write("stream_name = %s\nlog_level = debug  # was info\n" % env.stream)
        os.kill(run.proc.pid, signal.SIGHUP)
        poolkit.wait_for("debug lines after SIGHUP", lambda: run.text().count(" debug ") >= 2,
                         3 * LEASE_MS / 1000)
        self.assertIn("config_reloaded", run.text())
        # A bad file is refused and the running configuration stays.
        with open(conf, "w") as f:
            f.write("stream_name = %s\nlog_level = loud\n" % env.stream)
        os.kill(run.proc.pid, signal.SIGHUP)
        poolkit.wait_for("the refusal", lambda: "was not reloaded" in run.text(), 5)
        self.assertIsNone(run.proc.poll())


class Health(Base):
    tag = "lifehealth"

    def slowest_healthz(self, port, seconds):
        """Asks /healthz every 50 ms for seconds; each answer must be 200. Returns the slowest
        answer's time in seconds."""
        slowest = 0.0
        end = time.time() + seconds
        while time.time() < end:
            t0 = time.time()
            code, _ = http_get(port, "/healthz")
            self.assertEqual(code, 200)
            slowest = max(slowest, time.time() - t0)
            time.sleep(0.05)
        return slowest

    def test_healthz_answers_before_postgresql_is_reachable(self):
        port = free_port()
        dead_pg = "host=127.0.0.1 port=%d dbname=ddb2os user=postgres" % free_port()
        run = self.start("P", workers=1, pg=dead_pg, extra=["--metrics-port", str(port)])
        status = poolkit.wait_for("/healthz", lambda: http_get(port, "/healthz")[0], 10)
        self.assertEqual(status, 200)
        code, body = http_get(port, "/readyz")
        self.assertEqual(code, 503)
        self.assertIn("PostgreSQL", body)
        self.assertIsNone(run.proc.poll())

    def test_readyz_names_a_missing_stream(self):
        port = free_port()
        self.start("S", workers=1, stream=self.env.stream + "-missing",
                   extra=["--metrics-port", str(port)])

        def kinesis_reason():
            code, body = http_get(port, "/readyz")
            return body if code == 503 and "Kinesis" in body else None
        body = poolkit.wait_for("/readyz to name Kinesis", kinesis_reason, 20, step=0.3)
        self.assertIn("-missing", body)

    def test_metrics_port_taken_exits_78_naming_the_address(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            run = self.start("B", workers=1, extra=["--metrics-port", str(port)])
            self.assertEqual(run.proc.wait(timeout=20), 78)
        self.assertIn("127.0.0.1:%d" % port, run.text())

    def test_a_hung_credentials_endpoint_stalls_no_shard(self):
        env = self.env
        env.create_stream(2)
        creds = SlowCredentials()
        self.addCleanup(creds.close)
        port = free_port()
        # single process: the worker's own loop answers /healthz
        run = self.start("C", workers=1, extra=["--single-process", "--metrics-port", str(port)],
                         environ={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                                  "AWS_EC2_METADATA_DISABLED": "true",
                                  "AWS_CONTAINER_CREDENTIALS_FULL_URI":
                                  "http://127.0.0.1:%d/creds" % creds.port})
        poolkit.wait_for("2 leases", self.held(2), 6 * LEASE_MS / 1000)
        # Every lease tick (about 1 s) tries to refresh the credentials, and each try hangs until
        # its 1 s timeout: the loop must answer /healthz meanwhile, and records keep flowing.
        poolkit.wait_for("a refresh to reach the endpoint", lambda: creds.refreshes() >= 1, 20)
        env.put(self.items.workload(20, 2, prefix="c"))
        slowest = self.slowest_healthz(port, 6)
        print("slowest /healthz answer while refreshes hung: %.0f ms (%d refreshes)"
              % (slowest * 1000, creds.refreshes()))
        self.assertGreaterEqual(creds.refreshes(), 3)
        self.assertLess(slowest, 0.5, run.text()[-2000:])
        self.assertIn("creds_refresh_failed", run.text())
        poolkit.wait_for("the records in OpenSearch",
                         lambda: not self.items.mismatches(env.documents()), 30, step=0.5)

    def test_iam_auth_reconnects_without_asking_for_credentials(self):
        """With pg_iam_auth a worker signs each opening's token with the credentials it keeps
        fresh on its multi handle: a reconnect asks no credentials endpoint and waits for none.
        (The local PostgreSQL trusts every connection, so it does not check the token.)"""
        env = self.env
        env.create_stream(2)
        creds = CredentialsThenHang()
        self.addCleanup(creds.close)
        port = free_port()
        # single process: the worker's own loop answers /healthz
        run = self.start("I", workers=1,
                         extra=["--single-process", "--metrics-port", str(port), "--pg-iam-auth", "true"],
                         environ={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                                  "AWS_EC2_METADATA_DISABLED": "true",
                                  "AWS_CONTAINER_CREDENTIALS_FULL_URI":
                                  "http://127.0.0.1:%d/creds" % creds.port})
        poolkit.wait_for("2 leases", self.held(2), 6 * LEASE_MS / 1000)
        self.assertGreaterEqual(creds.answered(), 1)
        creds.hang()
        sessions = ("SELECT count(*) FROM pg_stat_activity WHERE application_name IN"
                    " ('ddb2os worker', 'ddb2os worker async')")
        self.assertEqual(env.sql(sessions), "2")
        # Both of the worker's sessions break; it opens them again while the endpoint hangs.
        env.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name"
                " IN ('ddb2os worker', 'ddb2os worker async')")
        slowest = self.slowest_healthz(port, 4)
        print("slowest /healthz answer while reconnecting: %.0f ms; credentials requests "
              "after the hang: %d" % (slowest * 1000, creds.hung()))
        poolkit.wait_for("both sessions open again", lambda: env.sql(sessions) == "2", 10)
        self.assertEqual(creds.hung(), 0, run.text()[-2000:])
        self.assertLess(slowest, 0.5, run.text()[-2000:])
        env.put(self.items.workload(20, 2, prefix="i"))
        poolkit.wait_for("the records in OpenSearch",
                         lambda: not self.items.mismatches(env.documents()), 30, step=0.5)
        poolkit.wait_for("2 leases held on", self.held(2), 2 * LEASE_MS / 1000)

    def test_leases_held_drops_when_postgresql_is_lost(self):
        from prometheus_client.parser import text_string_to_metric_families
        env = self.env
        env.create_stream(2)
        host = dict(kv.split("=", 1) for kv in env.pg.split())
        cut = TcpCut(host.get("host", "127.0.0.1"), int(host["port"]))
        try:
            pg = " ".join("%s=%s" % (k, v) for k, v in host.items() if k not in ("host", "port"))
            pg += " host=127.0.0.1 port=%d" % cut.port
            port = free_port()
            self.start("L", workers=1, pg=pg, extra=["--metrics-port", str(port)])

            def held():
                code, text = http_get(port, "/metrics")
                if code != 200:
                    return None
                fams = {f.name: f for f in text_string_to_metric_families(text)}
                return sum(s.value for s in fams["ddb2os_leases_held"].samples)
            poolkit.wait_for("2 leases held", lambda: held() == 2, 6 * LEASE_MS / 1000)
            cut.sever()
            poolkit.wait_for("leases_held to drop", lambda: held() == 0, 3 * LEASE_MS / 1000)
        finally:
            cut.close()


class StartupErrors(Base):
    tag = "lifecfg"

    def test_unknown_database_exits_78_without_the_password(self):
        host = dict(kv.split("=", 1) for kv in self.env.pg.split())
        host["dbname"] = "no_such_db_%d" % os.getpid()
        host["password"] = "Sup3rSecretPw"
        pg = " ".join("%s=%s" % kv for kv in host.items())
        run = self.start("D", workers=1, pg=pg)
        self.assertEqual(run.proc.wait(timeout=40), 78)
        log = run.text()
        self.assertIn("does not exist", log)
        self.assertNotIn("Sup3rSecretPw", log)


class LeastPrivilege(Base):
    """A database of its own per test, dropped at the end, with a role that may not do DDL."""
    tag = "lifedb"

    def setUp(self):
        super().setUp()
        self.db = "d2o_life_%d" % os.getpid()
        self.role = "d2o_app_%d" % os.getpid()
        self.env.sql("CREATE DATABASE %s" % self.db)
        self.env.sql("CREATE ROLE %s LOGIN" % self.role)
        self.conn = dict(kv.split("=", 1) for kv in self.env.pg.split())
        self.conn["dbname"] = self.db

    def tearDown(self):
        super().tearDown()
        self.env.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db)
        self.env.sql("DROP ROLE IF EXISTS %s" % self.role)

    def conninfo(self, role=None):
        c = dict(self.conn, user=role) if role else self.conn
        return " ".join("%s=%s" % kv for kv in c.items())

    def cli(self, *args, role=None):
        env = dict(os.environ, DDB2OS_PG_CONNINFO=self.conninfo(role),
                   DDB2OS_APPLICATION=self.env.app)
        return subprocess.run([BINARY] + list(args), env=env, capture_output=True, text=True,
                              timeout=30)

    def test_commands_on_an_unmigrated_database_say_run_migrate(self):
        for args in (["status"], ["leases"], ["workers"], ["dlq", "list"]):
            out = self.cli(*args)
            self.assertEqual(out.returncode, 1, out)
            self.assertIn("run 'ddb2os migrate'", out.stderr)
            self.assertNotIn("relation", out.stderr)

    def test_run_works_without_ddl_rights(self):
        env = self.env
        # The deployment's migration step, under a role that may do DDL.
        out = self.cli("migrate")
        self.assertEqual(out.returncode, 0, out.stderr)
        grants = ("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r};"
                  " GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {r};").format(r=self.role)
        subprocess.run(["psql", self.conninfo(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                        grants], check=True, capture_output=True, timeout=30)
        # The role may not create anything: `migrate` under it is refused ...
        refused = self.cli("migrate", role=self.role)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("permission denied", refused.stderr)
        # ... and `run` under it works.
        env.create_stream(1)
        run = self.start("R", workers=1, pg=self.conninfo(self.role))
        poolkit.wait_for("the lease", lambda: subprocess.run(
            ["psql", self.conninfo(), "-X", "-At", "-c",
             "SELECT count(*) FROM leases WHERE owner IS NOT NULL"],
            capture_output=True, text=True).stdout.strip() == "1", 6 * LEASE_MS / 1000)
        self.assertNotIn("error", run.text())
        # A current schema is left alone, and the log does not claim a migration.
        self.assertNotIn("migrated from", run.text())

    def test_run_without_ddl_rights_on_an_unmigrated_database_exits_78(self):
        run = self.start("U", workers=1, pg=self.conninfo(self.role))
        self.assertEqual(run.proc.wait(timeout=30), 78)
        self.assertIn("run 'ddb2os migrate'", run.text())


class CheckpointAt(Base):
    tag = "lifeseq"

    def setUp(self):
        super().setUp()
        # The rows below go into the lease table directly: it must exist even when this class
        # runs first, before any run has migrated the database.
        subprocess.run([BINARY, "migrate"], env=dict(os.environ, DDB2OS_PG_CONNINFO=self.env.pg),
                       check=True, capture_output=True, timeout=60)

    def test_a_sequence_number_outside_the_shard_is_refused(self):
        env = self.env
        env.create_stream(1)
        put = env.kinesis.put_record(StreamName=env.stream, PartitionKey="k", Data=b"{}")
        seq = put["SequenceNumber"]
        shard = put["ShardId"]
        env.sql("INSERT INTO leases (application, stream, shard_id, checkpoint) VALUES"
                " ('%s', '%s', '%s', 'TRIM_HORIZON')" % (env.app, env.stream, shard))
        cli_env = dict(os.environ, DDB2OS_PG_CONNINFO=env.pg, DDB2OS_APPLICATION=env.app,
                       DDB2OS_STREAM_NAME=env.stream, DDB2OS_KINESIS_ENDPOINT=env.kinesis_url,
                       DDB2OS_AWS_REGION=poolkit.REGION, **poolkit.ENV_AWS)

        def at(position):
            return subprocess.run([BINARY, "checkpoint", "set", shard, "--at", position],
                                  env=cli_env, capture_output=True, text=True, timeout=60)
        bad = at("1")
        self.assertEqual(bad.returncode, 1, bad.stderr)
        self.assertIn("sequence number 1 is not in shard %s" % shard, bad.stderr)
        self.assertEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                 % env.app), "TRIM_HORIZON")
        good = at(seq)
        self.assertEqual(good.returncode, 0, good.stderr)
        self.assertEqual(env.sql("SELECT checkpoint FROM leases WHERE application = '%s'"
                                 % env.app), seq)

    def test_a_checkpoint_kinesis_refuses_is_named_in_the_log(self):
        env = self.env
        env.create_stream(1)
        shard = env.kinesis.put_record(StreamName=env.stream, PartitionKey="k",
                                       Data=b"{}")["ShardId"]
        # What an operator's SQL can leave behind: a number that is no position of this shard.
        env.sql("INSERT INTO leases (application, stream, shard_id, checkpoint) VALUES"
                " ('%s', '%s', '%s', '1')" % (env.app, env.stream, shard))
        run = self.start("B", workers=1)
        poolkit.wait_for("the bad checkpoint in the log", lambda: "bad_checkpoint" in run.text(),
                         6 * LEASE_MS / 1000)
        self.assertIn("'ddb2os checkpoint set %s --at" % shard, run.text())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    BINARY = sys.argv[1]
    poolkit.need("D2O_TEST_PG")
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
