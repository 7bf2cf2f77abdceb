#!/usr/bin/python3
"""Runs every command example of docs/operations.md, so the runbook cannot drift from the CLI.

usage: runbook.py DDB2OS_BINARY OPERATIONS_MD

Every line of a ```sh block is run by bash in order, with `ddb2os` the binary under test (a
`ddb2os run` is stopped with SIGTERM after a few seconds and must drain and exit 0); every
```sql block goes through psql. A command passes when it exits 0, or 1 when the output block
shown after it is an error message ("ddb2os ..."). When a block of one command is followed by an
output block, the first line of what the command printed must be that block's first line
(blanks compared loosely): the table header or the message. The database is a schema of its own
holding a 4-shard stream owned by live workers and one dead-letter row, as in the examples.

Lines ending in a backslash continue on the next line. A block preceded by the comment
`<!-- runbook: run by PATH -->` is one another test runs (a container under podman, a backfill
against DynamoDB Local): its commands are not run here, but the command word (quoted) and every
option they show must appear in PATH, so the example cannot drift from what that test runs.
"""
import os
import re
import subprocess
import sys
import tempfile

BINARY = None

SETUP = """
INSERT INTO workers (application, id, host, pid, task_id, leases_held)
VALUES ('app', 'vm:9069', 'vm', 9069, 'vm', 2), ('app', 'vm:9070', 'vm', 9070, 'vm', 2);
INSERT INTO leases (application, stream, shard_id, owner, lease_counter, expires_at, checkpoint,
                    checkpointed_at, millis_behind_latest, throughput)
SELECT 'app', 'books-changes', 'shardId-00000000000' || i,
       CASE WHEN i < 2 THEN 'vm:9070' ELSE 'vm:9069' END, 1, now() + interval '1 hour', '100',
       now(), 0, 20.5
FROM generate_series(0, 3) AS i;
INSERT INTO dlq (application, stream, shard_id, sequence_number, table_name, index_name, doc_id,
                 version, raw_record, error_class, http_status, error_message, attempts,
                 first_failed_at, last_failed_at, created_at)
VALUES ('app', 'books-changes', 'shardId-000000000001', '42', 'orders', '{index}', 'cust-7|1000',
        1732500000123456, convert_to('{record}', 'UTF8'), 'mapper_parsing_exception', 400,
        'failed to parse field [total] of type [long]', 1, now(), now(),
        '2026-11-25 03:58:33+00');
"""


def blocks(text):
    """(language, lines, first line number, last line number) of every fenced block."""
    out, lang, lines, start = [], None, None, 0
    for n, line in enumerate(text.splitlines()):
        if lines is None:
            m = re.match(r"^```(\w*)\s*$", line)
            if m:
                lang, lines, start = m.group(1), [], n
        elif line.startswith("```"):
            out.append((lang, lines, start, n))
            lines = None
        else:
            lines.append(line)
    return out


def loose(line):
    return " ".join(line.split())


def main(binary, doc):
    pg = os.environ.get("D2O_TEST_PG")
    os_url = os.environ.get("D2O_TEST_OPENSEARCH", "").rstrip("/")
    kinesis = os.environ.get("D2O_TEST_KINESIS_MOCK")
    if not pg or not os_url or not kinesis:
        print("D2O_TEST_PG, D2O_TEST_OPENSEARCH and D2O_TEST_KINESIS_MOCK must be set "
              "(scripts/services env)", file=sys.stderr)
        return 77
    binary = os.path.abspath(binary)
    schema = "d2o_runbook_%d" % os.getpid()
    index = "runbook-%d" % os.getpid()
    conninfo = "%s options=-csearch_path=%s" % (pg, schema)
    work = tempfile.mkdtemp(prefix="ddb2os-runbook-")
    record = ('{"eventName":"INSERT","tableName":"orders","dynamodb":{'
              '"ApproximateCreationDateTime":1732500000123456,'
              '"ApproximateCreationDateTimePrecision":"MICROSECOND",'
              '"Keys":{"id":{"S":"cust-7|1000"}},"NewImage":{"id":{"S":"cust-7|1000"},'
              '"total":{"N":"12"}}}}')
    env = dict(os.environ, DDB2OS_PG_CONNINFO=conninfo, DDB2OS_APPLICATION="app",
               DDB2OS_OPENSEARCH_URL=os_url, DDB2OS_KINESIS_ENDPOINT=kinesis,
               DDB2OS_STREAM_NAME="books-changes", DDB2OS_INDEX_MAP="orders=%s" % index,
               DDB2OS_KEY_SCHEMA="orders=id", DDB2OS_METRICS_PORT="0",
               DDB2OS_LOG_FORMAT="text", DDB2OS_AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="AKIDRUNBOOK", AWS_SECRET_ACCESS_KEY="runbook-secret",
               OPENSEARCH=os_url, INDEX=index, D2O_BIN=binary)
    with open(os.path.join(work, "ddb2os.conf"), "w") as f:
        f.write("# what the runbook's -c ddb2os.conf holds; the rest comes from DDB2OS_*\n"
                "workers = 1\ndrain_timeout_ms = 5s\n")
    # `ddb2os` in the examples: the binary; `run` drains after 3 s (SIGTERM) and must exit 0.
    prelude = ('ddb2os() { if [ "$1" = run ]; then timeout --preserve-status -s TERM 3 '
               '"$D2O_BIN" "$@"; else "$D2O_BIN" "$@"; fi; }\n')

    def psql(sql, db=conninfo):
        return subprocess.run(["psql", db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              capture_output=True, text=True, timeout=60)

    fails = 0

    def check(name, ok, detail=""):
        nonlocal fails
        print("%s %s%s" % ("ok  " if ok else "FAIL", name, "" if ok else ": " + detail))
        fails += 0 if ok else 1

    # The runbook creates this role (roles are per cluster): none may be left from a run before.
    drop_role = "DROP OWNED BY ddb2os_app; DROP ROLE ddb2os_app"
    psql("DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'ddb2os_app') THEN "
         "EXECUTE 'DROP OWNED BY ddb2os_app'; EXECUTE 'DROP ROLE ddb2os_app'; END IF; END $$", pg)
    try:
        r = psql("CREATE SCHEMA %s" % schema, pg)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        r = subprocess.run([binary, "migrate"], env=env, capture_output=True, text=True,
                           timeout=60)
        check("migrate the fixture database", r.returncode == 0, r.stderr)
        r = psql(SETUP.replace("{index}", index).replace("{record}", record))
        check("fixture rows", r.returncode == 0, r.stderr)
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-XPUT", "%s/%s" % (os_url, index),
                        "-H", "Content-Type: application/json", "-d",
                        '{"settings":{"number_of_replicas":0}}'], check=True, timeout=60)

        with open(doc) as f:
            text = f.read()
        bl, all_lines = blocks(text), text.splitlines()
        n_run = 0
        for i, (lang, lines, _, end) in enumerate(bl):
            # the output shown for a command: a plain block right after it, blank lines between
            following = bl[i + 1] if i + 1 < len(bl) and bl[i + 1][0] == "" and not any(
                ln.strip() for ln in all_lines[end + 1:bl[i + 1][2]]) else None
            if lang == "sql":
                sql = "\n".join(lines)
                r = psql(sql)
                check("sql: %s" % loose(sql)[:70], r.returncode == 0, r.stderr.strip())
                n_run += 1
                continue
            if lang != "sh":
                continue
            commands = [ln for ln in "\n".join(lines).replace("\\\n", " ").splitlines()
                        if ln.strip() and not ln.lstrip().startswith("#")]
            before = [ln for ln in all_lines[:bl[i][2]] if ln.strip()]
            m = re.match(r"^<!-- runbook: run by (\S+) -->$", before[-1]) if before else None
            if m:
                with open(os.path.join(os.path.dirname(os.path.abspath(doc)), "..",
                                       m.group(1))) as f:
                    runner = f.read()
                for cmd in commands:
                    # the command word ("ddb2os backfill": backfill) quoted, and every option
                    words = cmd.split()
                    shown = ['"%s"' % w for w in words[1:2] if not w.startswith("-")]
                    shown += re.findall(r"(--[a-z-]+(?:=[^\s.]+)?)", cmd)
                    missing = [o for o in shown if o not in runner]
                    check("sh (run by %s): %s" % (m.group(1), cmd.strip()[:50]),
                          bool(shown) and not missing, "not in it: %s" % missing)
                    n_run += 1
                continue
            shown = following[1] if following else None
            for cmd in commands:
                r = subprocess.run(["bash", "-c", prelude + cmd], env=env, cwd=work,
                                   capture_output=True, text=True, timeout=120)
                n_run += 1
                refused = shown is not None and shown[0].startswith("ddb2os ")
                want = 1 if refused else 0
                check("sh: %s" % cmd.strip()[:70], r.returncode == want,
                      "exit %d (want %d): %s" % (r.returncode, want, (r.stderr or r.stdout)[-400:]))
                if shown and len(commands) == 1:
                    got = (r.stderr if refused else r.stdout).splitlines()
                    check("  output starts as shown", bool(got) and loose(got[0]) == loose(shown[0]),
                          "got %r, the runbook shows %r" % (got[0] if got else "", shown[0]))
        check("the runbook has examples", n_run >= 15, "only %d ran" % n_run)
    finally:
        psql("DROP SCHEMA IF EXISTS %s CASCADE" % schema, pg)
        psql(drop_role, pg)
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-XDELETE", "%s/%s" % (os_url, index)],
                       timeout=60)
        subprocess.run(["rm", "-rf", work])
    print("%d failed" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
