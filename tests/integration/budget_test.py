#!/usr/bin/python3
"""The memory budget against real PostgreSQL, kinesalite and OpenSearch.

usage: budget_test.py DDB2OS_BINARY [TEST_NAME...]

A backlog of large change records (about 600 KB each) on 16 shards, behind about 40 small ones
a shard, is read by one worker with the default memory_budget (32 MiB). The small records make
the worker ask for many records at a time, so answers with the large ones pass their cap and are
read again for fewer. Every change must reach OpenSearch, and the worker's peak resident size
(VmHWM from /proc) must stay within the budget plus the process's fixed size: without the budget
every shard's GetRecords answer (several MB each) arrives at once and the worker holds them all
(79-85 MiB measured before the budget existed).
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolkit  # noqa: E402

BINARY = None
BUDGET_MIB = 32  # the default
# The worker's size with nothing read (libcurl, OpenSSL, libpq, json-c: about 12 MiB here) and
# the allocator's slack around the budget's bytes.
FIXED_MIB = 24


class LargeRecords(unittest.TestCase):
    def setUp(self):
        self.env = poolkit.Env("budget", kinesis="D2O_TEST_KINESALITE")
        self.items = poolkit.Items()
        self.sup = None

    def tearDown(self):
        if self.sup:
            self.sup.stop(timeout=10)
        self.env.delete_stream()
        self.env.delete_index()
        shutil.rmtree(self.env.logdir, ignore_errors=True)

    def test_peak_memory_stays_within_the_budget(self):
        libs = subprocess.run(["ldd", BINARY], capture_output=True, text=True).stdout
        if "libasan" in libs:
            self.skipTest("AddressSanitizer's shadow memory is not the worker's")
        shards, n_items = 16, 48
        self.env.create_stream(shards)
        records = []
        for i in range(n_items):
            bid = "big-%03d" % i
            # distinct text per item, so nothing is shared between documents
            blob = ("%03d" % i) * 200000
            records.append(self.items.change(bid, "INSERT", {"title": "t%d" % i, "blob": blob}))
        # Small changes first, on every shard: the worker learns small records and asks for
        # many at a time, so the large ones after them pass the answer's cap, and the same
        # iterator must be read again for fewer records without losing any.
        small = []
        for i in range(40 * shards):
            small.append(self.items.change("small-%04d" % i, "INSERT", {"title": "s%d" % i}))
        self.env.put(small)
        for pk, data in records:
            self.assertLess(len(data), 1 << 20)
            self.env.kinesis.put_record(StreamName=self.env.stream, PartitionKey=pk, Data=data)
        self.sup = poolkit.Supervisor(BINARY, self.env, "M", workers=1, lease_ms=10000,
                                      extra=["--log-level", "debug", "--log-debug", "kinesis"])
        pid = poolkit.wait_for("the worker", lambda: (self.sup.worker_pids() or [None])[0], 30)

        def arrived():
            return not self.items.mismatches(self.env.documents()) or None
        try:
            poolkit.wait_for("every change in OpenSearch", arrived, 180, step=1)
        except AssertionError:
            self.fail("missing in OpenSearch: %s\n%s"
                      % (self.items.mismatches(self.env.documents()), self.sup.tail()))
        peak = poolkit.proc_hwm_mib(pid)
        with open(self.sup.log_path, errors="replace") as f:
            capped = sum(" get_records_capped: " in line for line in f)
        print("worker VmHWM %.1f MiB with memory_budget %d MiB (%d records of %d KB on %d "
              "shards; %d answers passed their cap and were read again)"
              % (peak, BUDGET_MIB, n_items, len(records[0][1]) // 1000, shards, capped),
              flush=True)
        self.assertLess(peak, BUDGET_MIB + FIXED_MIB,
                        "the worker's peak resident size passed the budget")
        self.assertGreater(capped, 0, "no answer passed its cap: the test did not test it")


if __name__ == "__main__":
    poolkit.main(sys.modules[__name__])
