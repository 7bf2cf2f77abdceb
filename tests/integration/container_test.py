"""The ddb2os container image (scripts/image) run the way ECS runs it, against the local servers.

podman with runc, the root filesystem read-only and no writable /tmp, explicit rlimits, no
capabilities, the host network to reach PostgreSQL, OpenSearch and kinesis-mock on loopback, and the
configuration in DDB2OS_* variables like the ECS task definition. One pass: records put into the
stream become documents in OpenSearch; /healthz answers through the image's curl (the ECS health
check); a worker killed with SIGKILL is reaped by ddb2os as PID 1 and replaced; SIGTERM drains:
the leases are released and the container exits 0.

usage: container_test.py SOURCE_ROOT   (builds the image for HEAD with scripts/image when missing;
       D2O_TEST_IMAGE=localhost/ddb2os:TAG tests that image instead)
"""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402

ROOT = None
PODMAN = ["podman", "--runtime", "runc"]
LEASE_MS = 3000
SHARDS = 2
WORKERS = 2


def run(args, timeout=120, check=True):
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), res.returncode,
                                                     res.stderr.strip()[-2000:]))
    return res


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


class Container(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("podman", "runc", "buildah", "skopeo", "mmdebstrap"):
            if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
                raise AssertionError("%s is missing: scripts/services install installs it" % tool)
        t0 = time.time()
        cls.image = os.environ.get("D2O_TEST_IMAGE")
        if not cls.image:
            res = run([os.path.join(ROOT, "scripts", "image")], timeout=900)
            cls.image = res.stdout.strip().splitlines()[-1]
        print("image %s ready in %.0f s" % (cls.image, time.time() - t0), flush=True)

    def setUp(self):
        self.env = poolkit.Env("ctr")
        self.items = poolkit.Items()
        self.name = "ddb2os-%s" % self.env.app
        self.port = 20000 + os.getpid() % 20000
        self.env.create_stream(SHARDS)

    def tearDown(self):
        subprocess.run(PODMAN + ["rm", "-f", "-t", "0", self.name], capture_output=True)
        self.env.delete_stream()
        self.env.delete_index()

    def start(self):
        variables = {
            "DDB2OS_APPLICATION": self.env.app,
            "DDB2OS_STREAM_NAME": self.env.stream,
            "DDB2OS_AWS_REGION": poolkit.REGION,
            "DDB2OS_KINESIS_ENDPOINT": self.env.kinesis_url,
            "DDB2OS_OPENSEARCH_URL": self.env.opensearch,
            "DDB2OS_INDEX_MAP": "books=%s" % self.env.index,
            "DDB2OS_KEY_SCHEMA": "books=book_id",
            "DDB2OS_PG_CONNINFO": self.env.pg,
            "DDB2OS_WORKERS": str(WORKERS),
            "DDB2OS_TASK_ID": "ctr",
            "DDB2OS_LEASE_MS": str(LEASE_MS),
            "DDB2OS_SHARD_SYNC_MS": "2000",
            "DDB2OS_BULK_FLUSH_MS": "50",
            "DDB2OS_DRAIN_TIMEOUT_MS": "10000",
            "DDB2OS_METRICS_PORT": str(self.port),
            "DDB2OS_LOG_FORMAT": "json",
        }
        variables.update(poolkit.ENV_AWS)
        args = PODMAN + ["run", "--detach", "--name", self.name, "--network=host",
                         "--read-only", "--read-only-tmpfs=false", "--cap-drop=all",
                         "--security-opt=no-new-privileges", "--pids-limit=64",
                         "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                         "--ulimit", "core=0:0", "--stop-timeout=30"]
        for k, v in sorted(variables.items()):
            args += ["--env", "%s=%s" % (k, v)]
        t0 = time.time()
        run(args + [self.image, "run"])
        self.pid1 = int(run(PODMAN + ["inspect", "-f", "{{.State.Pid}}", self.name])
                        .stdout.strip())

        def healthy():
            res = subprocess.run(PODMAN + ["exec", self.name, "curl", "-fsS", "http://127.0.0.1:%d/healthz"
                                           % self.port], capture_output=True, text=True)
            return res.returncode == 0
        poolkit.wait_for("/healthz through the image's curl", healthy, 30, step=0.1)
        print("container start to healthy: %.2f s" % (time.time() - t0), flush=True)

    def logs(self):
        res = run(PODMAN + ["logs", self.name], check=False)
        return (res.stdout + res.stderr)[-4000:]

    def converge(self, timeout=60):
        def matches():
            return not self.items.mismatches(self.env.documents())
        try:
            poolkit.wait_for("OpenSearch to match the stream", matches, timeout, step=0.5)
        except AssertionError:
            print(self.logs(), file=sys.stderr)
            raise AssertionError("mismatches: %s" % self.items.mismatches(self.env.documents()))

    def test_image_syncs_reaps_and_drains(self):
        env = self.env
        # the image as built: non-root, read-only, nothing writable where nothing is declared
        res = run(PODMAN + ["run", "--rm", "--read-only", "--read-only-tmpfs=false",
                            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=64:64",
                            "--entrypoint", "/bin/sh", self.image, "-c",
                            "id -u; touch /tmp/x 2>/dev/null && echo tmp-writable;"
                            " ls /var/lib/apt /var/cache/apt 2>/dev/null | wc -l"])
        self.assertEqual(res.stdout.split(), ["10001", "0"], res.stdout)

        env.put(self.items.workload(60, 2, prefix="a"))
        self.start()
        self.converge()

        # PID 1 is ddb2os; it reaps a killed worker and starts another
        self.assertEqual(run(PODMAN + ["top", self.name, "pid,args"]).stdout.count("ddb2os"),
                         1 + WORKERS)
        workers = children(self.pid1)
        self.assertEqual(len(workers), WORKERS, workers)
        victim = workers[0]
        os.kill(victim, 9)

        def replaced():
            now = children(self.pid1)
            zombies = [p for p in now if state(p) == "Z"]
            return len(now) == WORKERS and victim not in now and not zombies and now
        poolkit.wait_for("the killed worker reaped and replaced", replaced, 10)
        env.put(self.items.workload(40, 2, prefix="b"))
        self.converge(timeout=LEASE_MS / 1000 * 4 + 60)

        # SIGTERM drains: every lease released, exit 0
        owned = len(env.owners())
        self.assertEqual(owned, SHARDS)
        t0 = time.time()
        run(PODMAN + ["kill", "--signal", "TERM", self.name])
        code = int(run(PODMAN + ["wait", self.name], timeout=60).stdout.strip())
        print("drain after SIGTERM: %.2f s" % (time.time() - t0), flush=True)
        logs = self.logs()
        self.assertEqual(code, 0, logs)
        self.assertEqual(env.owners(), {}, logs)
        released = env.sql("SELECT count(*) FROM lease_events WHERE application = '%s'"
                           " AND event = 'release'" % env.app)
        self.assertGreaterEqual(int(released), SHARDS)
        self.assertIn('"drain"', logs)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ROOT = sys.argv.pop(1)
    poolkit.need("D2O_TEST_PG")
    poolkit.need("D2O_TEST_OPENSEARCH")
    poolkit.need("D2O_TEST_KINESIS_MOCK")
    unittest.main(verbosity=2)
