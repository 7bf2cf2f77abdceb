"""Helpers to run ddb2os supervisors against the local servers (scripts/services).

Used by the pool integration tests (pool_test.py) and the pool benchmarks (bench/pool_bench.py).
Kinesis is kinesis-mock, spoken to through botocore; PostgreSQL through psql; OpenSearch through
urllib. Every supervisor gets a time limit and is killed by stop_all() at the latest.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import botocore.config
import botocore.session

REGION = "us-east-1"
ENV_AWS = {"AWS_ACCESS_KEY_ID": "AKIDPOOLTEST", "AWS_SECRET_ACCESS_KEY": "pool-test-secret",
           "AWS_REGION": REGION}


def need(var):
    value = os.environ.get(var)
    if not value:
        print("%s is not set: run scripts/services start and export scripts/services env" % var,
              file=sys.stderr)
        sys.exit(77)
    return value


class Env:
    """The servers, and names that no other run shares."""

    def __init__(self, tag, kinesis="D2O_TEST_KINESIS_MOCK"):
        """kinesis names the emulator's variable: kinesis-mock (ChildShards, resharding) by
        default; the benchmarks use D2O_TEST_KINESALITE, which takes volume far faster."""
        self.pg = need("D2O_TEST_PG")
        self.opensearch = need("D2O_TEST_OPENSEARCH").rstrip("/")
        self.kinesis_url = need(kinesis)
        suffix = "%d%d" % (os.getpid(), int(time.time() * 1000) % 100000)
        self.app = "%s%s" % (tag, suffix)
        self.stream = "%s-%s" % (tag, suffix)
        self.index = ("%s-%s" % (tag, suffix)).lower()
        session = botocore.session.get_session()
        self.kinesis = session.create_client(
            "kinesis", region_name=REGION, endpoint_url=self.kinesis_url, verify=False,
            aws_access_key_id="AKIDPOOLTEST", aws_secret_access_key="pool-test-secret",
            config=botocore.config.Config(retries={"max_attempts": 8, "mode": "standard"}))
        self.logdir = tempfile.mkdtemp(prefix="ddb2os-%s-" % tag)

    # ---- PostgreSQL ----
    def sql(self, query):
        out = subprocess.run(["psql", self.pg, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                              "-c", query], check=True, capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    def rows(self, query):
        text = self.sql(query)
        return [line.split("|") for line in text.splitlines()] if text else []

    def owners(self):
        """shard id -> owner of every unexpired lease of this run's stream."""
        return dict(self.rows(
            "SELECT shard_id, owner FROM leases WHERE application = '%s' AND owner IS NOT NULL"
            " AND expires_at > now() AND checkpoint <> 'SHARD_END'" % self.app))

    def epochs_with_two_owners(self):
        return self.rows(
            "SELECT shard_id, lease_counter, string_agg(DISTINCT owner, ',') FROM lease_events"
            " WHERE application = '%s' AND owner IS NOT NULL GROUP BY 1, 2"
            " HAVING count(DISTINCT owner) > 1" % self.app)

    def forget_rows(self):
        """Removes the run's rows from PostgreSQL: leases, their history, workers, deletes, DLQ."""
        for table in ("leases", "lease_events", "workers", "deletes", "dlq"):
            self.sql("DELETE FROM %s WHERE application = '%s'" % (table, self.app))

    def db_now(self):
        return float(self.sql("SELECT extract(epoch FROM clock_timestamp())"))

    # ---- Kinesis ----
    def create_stream(self, shards):
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=shards)
        self.wait_active()

    def wait_active(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            desc = self.kinesis.describe_stream_summary(StreamName=self.stream)
            if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            time.sleep(0.2)
        raise AssertionError("stream %s not ACTIVE after %ds" % (self.stream, timeout))

    def shards(self):
        out, token = [], None
        while True:
            kw = {"NextToken": token} if token else {"StreamName": self.stream}
            page = self.kinesis.list_shards(**kw)
            out += page["Shards"]
            token = page.get("NextToken")
            if not token:
                return out

    def put(self, records):
        """records: list of (partition key, bytes). Retries the failed entries."""
        for start in range(0, len(records), 500):
            batch = records[start:start + 500]
            pending = [{"PartitionKey": pk, "Data": data} for pk, data in batch]
            for _ in range(20):
                res = self.kinesis.put_records(StreamName=self.stream, Records=pending)
                if res["FailedRecordCount"] == 0:
                    break
                # keep only failures, in order: a later change of an item never overtakes
                failed_from = next(i for i, r in enumerate(res["Records"]) if "ErrorCode" in r)
                pending = pending[failed_from:]
                time.sleep(0.2)
            else:
                raise AssertionError("PutRecords kept failing")

    def delete_stream(self):
        try:
            self.kinesis.delete_stream(StreamName=self.stream, EnforceConsumerDeletion=True)
        except Exception:  # noqa: BLE001 - cleanup only
            pass

    # ---- OpenSearch ----
    def os_call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.opensearch + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def documents(self):
        """_id -> (_version, _source) of every document of the run's index."""
        self.os_call("POST", "/%s/_refresh" % self.index)
        status, res = self.os_call("POST", "/%s/_search?version=true" % self.index,
                                   {"size": 10000, "query": {"match_all": {}}})
        if status == 404:
            return {}
        if status == 503 and (res or {}).get("error", {}).get("type") == \
                "search_phase_execution_exception":
            # The index the workers just created answers 503 until its primary shard has
            # started: nothing is visible yet.
            return {}
        assert status == 200, res
        return {h["_id"]: (h["_version"], h["_source"]) for h in res["hits"]["hits"]}

    def delete_index(self):
        self.os_call("DELETE", "/%s" % self.index)


class Items:
    """A model of a books table: each change becomes a Kinesis-destination record with a strictly
    increasing ApproximateCreationDateTime (microseconds, or milliseconds with
    precision="MILLISECOND"), and the model remembers the final state."""

    def __init__(self, precision="MICROSECOND"):
        self.clock_us = int(time.time() * 1e6)
        self.precision = precision
        self.state = {}  # id -> (version, doc) or (version, None) when deleted
        self.changes = 0

    def change(self, book_id, event, fields=None):
        keys = {"book_id": {"S": book_id}}
        if self.precision == "MILLISECOND":
            self.clock_us = (self.clock_us // 1000 + 1) * 1000
            stamp = self.clock_us // 1000
        else:
            self.clock_us += 1
            stamp = self.clock_us
        ddb = {"ApproximateCreationDateTime": stamp,
               "ApproximateCreationDateTimePrecision": self.precision, "Keys": keys,
               "SizeBytes": 100}
        doc = None
        if event != "REMOVE":
            image = dict(keys)
            doc = {"book_id": book_id}
            for k, v in (fields or {}).items():
                if isinstance(v, bool):
                    image[k] = {"BOOL": v}
                elif isinstance(v, int):
                    image[k] = {"N": str(v)}
                else:
                    image[k] = {"S": str(v)}
                doc[k] = v
            ddb["NewImage"] = image
        record = {"awsRegion": REGION, "eventID": "e%d" % self.clock_us, "eventName": event,
                  "userIdentity": None, "recordFormat": "application/json", "tableName": "books",
                  "dynamodb": ddb, "eventSource": "aws:dynamodb"}
        self.state[book_id] = (self.clock_us, doc)
        self.changes += 1
        pk = hashlib.md5(book_id.encode()).hexdigest()
        return pk, json.dumps(record).encode()

    def workload(self, n_items, rounds, prefix="b"):
        """n_items books, each created then updated rounds-1 times; every 5th deleted at the end."""
        out = []
        for r in range(rounds):
            for i in range(n_items):
                bid = "%s-%05d" % (prefix, i)
                out.append(self.change(bid, "INSERT" if r == 0 else "MODIFY",
                                       {"title": "t%d-%d" % (i, r), "round": r, "pages": 100 + r,
                                        "available": r % 2 == 0}))
        for i in range(0, n_items, 5):
            out.append(self.change("%s-%05d" % (prefix, i), "REMOVE"))
        return out

    def mismatches(self, docs):
        """What differs between the model and OpenSearch's documents (at most 10 lines)."""
        bad = []
        for bid, (version, doc) in sorted(self.state.items()):
            got = docs.get(bid)
            if doc is None:
                if got is not None:
                    bad.append("%s: deleted but present (version %s)" % (bid, got[0]))
            elif got is None:
                bad.append("%s: missing" % bid)
            elif got[0] != version or got[1] != doc:
                bad.append("%s: want v%d %s, got v%d %s" % (bid, version, doc, got[0], got[1]))
        extra = set(docs) - set(self.state)
        bad += ["%s: not in the model" % e for e in sorted(extra)]
        return bad[:10]


class Supervisor:
    """One `ddb2os run` process (a task) with its own task id."""

    def __init__(self, binary, env, task, workers=2, lease_ms=4000, extra=(), metrics_port=0,
                 wrapper=()):
        """wrapper: a command the binary runs under (valgrind, say)."""
        self.task = task
        self.log_path = os.path.join(env.logdir, "%s.log" % task)
        args = list(wrapper) + [binary, "run", "--application", env.app, "--stream-name", env.stream,
                "--aws-region", REGION, "--kinesis-endpoint", env.kinesis_url,
                "--opensearch-url", env.opensearch, "--index-map", "books=%s" % env.index,
                "--key-schema", "books=book_id", "--pg-conninfo", env.pg,
                "--workers", str(workers), "--task-id", task, "--lease-ms", str(lease_ms),
                "--shard-sync-ms", "2000", "--bulk-flush-ms", "50", "--log-format", "text",
                "--metrics-port", str(metrics_port), "--drain-timeout-ms", "10000"] + list(extra)
        proc_env = dict(os.environ)
        proc_env.update(ENV_AWS)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=proc_env)

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True)
        return [int(p) for p in out.stdout.split()]

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def main(module):
    """Runs a test script's unittest cases: `SCRIPT DDB2OS_BINARY [TEST_NAME...]`; the binary
    goes to module.BINARY."""
    import unittest
    if len(sys.argv) < 2:
        print(module.__doc__, file=sys.stderr)
        sys.exit(2)
    module.BINARY = sys.argv[1]
    need("D2O_TEST_PG")
    unittest.main(module=module, argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)


# A deadline of wait_for bounds a wait for something that should happen; it is not a speed goal
# (those are measured in bench/). On a loaded machine (CI's 2 cores shared by several suites)
# everything is slower, so each deadline gets slack: it is multiplied by D2O_TEST_TIMEOUT_SCALE
# (default 3), adding at most 60 s. Set it to 1 for the bare deadlines.
TIMEOUT_SCALE = float(os.environ.get("D2O_TEST_TIMEOUT_SCALE") or 3)


def slack(timeout):
    """The deadline wait_for uses for timeout seconds."""
    return timeout + min((TIMEOUT_SCALE - 1) * timeout, 60.0)


def wait_for(what, predicate, timeout, step=0.1):
    """Calls predicate every step seconds until it returns something true, and returns that;
    fails after slack(timeout) seconds."""
    limit = slack(timeout)
    deadline = time.time() + limit
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.time() >= deadline:
            break
        time.sleep(step)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (limit, what, last))


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    """(status, body) of GET 127.0.0.1:port/path; (0, the reason) while nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def proc_hwm_mib(pid):
    """Peak resident set (VmHWM) of a live process, in MiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0
