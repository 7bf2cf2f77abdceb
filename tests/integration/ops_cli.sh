#!/usr/bin/env bash
# The operator commands on the lease table against the real PostgreSQL: status, leases, workers,
# checkpoint set (refused while owned, --force), lease assign and release, and their audit rows.
# docs/operations.md shows these same commands.
set -u
ddb2os=${1:?usage: ops_cli.sh DDB2OS}
: "${D2O_TEST_PG:?D2O_TEST_PG is not set: run scripts/services start and export scripts/services env}"
schema="d2o_ops_$$"
fails=0
check() { if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi; }
pg() { psql "$D2O_TEST_PG options=-csearch_path=$schema" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
trap 'psql "$D2O_TEST_PG" -qAtX -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1' EXIT

psql "$D2O_TEST_PG" -qAtX -c "CREATE SCHEMA $schema" || exit 1
export DDB2OS_PG_CONNINFO="$D2O_TEST_PG options=-csearch_path=$schema" DDB2OS_APPLICATION=app
"$ddb2os" migrate >/dev/null || exit 1
pg "INSERT INTO leases (application, stream, shard_id, owner, lease_counter, expires_at, checkpoint,
      checkpointed_at, millis_behind_latest, throughput) VALUES
    ('app', 'orders', 'shardId-000000000001', 'w1', 3, now() + interval '10 min', '100',
      now() - interval '5 s', 90000, 250),
    ('app', 'orders', 'shardId-000000000002', NULL, 4, NULL, 'TRIM_HORIZON', NULL, NULL, 0),
    ('app', 'orders', 'shardId-000000000003', NULL, 9, NULL, 'SHARD_END', now(), 0, 0)"
pg "INSERT INTO workers (application, id, host, pid, heartbeat_at) VALUES
    ('app', 'w1', 'ip-10-0-0-1', 7, now()), ('app', 'w2', 'ip-10-0-0-2', 8, now() - interval '5 min')"
pg "INSERT INTO dlq (application, stream, shard_id, sequence_number, raw_record, error_class,
      first_failed_at, last_failed_at) VALUES ('app', 'orders', 'shardId-000000000001', '99',
      '\\x7b7d', 'mapper_parsing_exception', now(), now())"

# The checkpoint is 5.8 s old plus however long the next two steps take (seconds on a loaded
# machine); the age is shown in whole seconds, truncated: 5 at least, 5.8 + elapsed at most.
t0=$(date +%s.%N)
pg "UPDATE leases SET checkpointed_at = now() - interval '5.8 s' WHERE shard_id = 'shardId-000000000001'"
out=$("$ddb2os" status)
t1=$(date +%s.%N)
max_age=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", 5.8 + (b - a) }')
age=$(echo "$out" | awk '$2 == "shardId-000000000001" { print $5 }')
echo "$out" | grep -E "shardId-000000000001 +owned +w1 +[0-9]+ +90000 +250.0 +1" >/dev/null &&
  [ "$age" -ge 5 ] && [ "$age" -le "$max_age" ]
check "status: the most behind shard first, with owner, age, lag, rate and DLQ" $? "age $age, at most $max_age: $out"
[ "$(echo "$out" | sed -n 2p | awk '{print $2}')" = shardId-000000000001 ]
check "status: sorted by lag" $? "$out"
echo "$out" | tail -1 | grep -E "^2 +1 +1 +90000 +250.0 +1" >/dev/null
check "status: totals over unfinished shards" $? "$out"
out=$("$ddb2os" status --json)
python3 -c 'import json,sys; d=json.load(sys.stdin); assert {r["shard"] for r in d} == {"shardId-000000000001","shardId-000000000002","shardId-000000000003"}' <<<"$out"
check "status --json" $? "$out"
python3 -c '
import json, sys
d = {r["shard"]: r for r in json.load(sys.stdin)}
one, two = d["shardId-000000000001"], d["shardId-000000000002"]
assert one["behind_ms"] == 90000 and one["dlq_pending"] == 1 and one["records_per_s"] == 250.0, one
assert isinstance(one["checkpoint_age_s"], int), one
assert two["behind_ms"] is None and two["owner"] is None and two["checkpoint_age_s"] is None, two
' <<<"$out"
check "status --json: numbers as numbers, nothing as null" $? "$out"
out=$( { "$ddb2os" status; "$ddb2os" leases; "$ddb2os" workers; "$ddb2os" dlq list; } 2>&1)
! grep -nE " +$" <<<"$out"
check "table output: no line ends in blanks" $? "$(grep -nE ' +$' <<<"$out" | head -3)"
for cmd in status leases workers; do
    head -1 <<<"$("$ddb2os" "$cmd")" | grep -qE "(^| )shard( |$)|^id "
    check "$cmd: a shard column is called shard" $? "$("$ddb2os" "$cmd" | head -1)"
done
out=$("$ddb2os" workers)
echo "$out" | grep -E "^w1 +live" >/dev/null && echo "$out" | grep -E "^w2 +dead" >/dev/null
check "workers: live and dead" $? "$out"
out=$("$ddb2os" leases --json)
python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d) == 3 and d[0]["owner"] == "w1" and d[0]["lease_counter"] == 3 and d[0]["shard"] == "shardId-000000000001"' <<<"$out"
check "leases --json" $? "$out"

"$ddb2os" checkpoint set shardId-000000000001 --at TRIM_HORIZON >/dev/null 2>&1
rc=$?
[ "$rc" -eq 1 ] && [ "$(pg "SELECT checkpoint FROM leases WHERE shard_id = 'shardId-000000000001'")" = 100 ]
check "checkpoint set on an owned shard is refused" $? "exit $rc"
"$ddb2os" checkpoint set shardId-000000000001 --at 150 --force >/dev/null
r=$(pg "SELECT checkpoint || '|' || coalesce(owner, '-') || '|' || lease_counter FROM leases WHERE shard_id = 'shardId-000000000001'")
[ "$r" = "150|-|4" ]
check "checkpoint set --force resets and ends the owner's epoch" $? "$r"
"$ddb2os" checkpoint set shardId-000000000002 --at 2026-11-25T03:00:00Z >/dev/null
r=$(pg "SELECT checkpoint || '|' || (checkpoint_timestamp = '2026-11-25T03:00:00Z') FROM leases WHERE shard_id = 'shardId-000000000002'")
[ "$r" = "AT_TIMESTAMP|true" ]
check "checkpoint set --at a time" $? "$r"
"$ddb2os" checkpoint set shardId-000000000002 --at yesterday >/dev/null 2>&1
check "checkpoint set --at garbage exits 2" $(( $? == 2 ? 0 : 1 )) ""
err=$("$ddb2os" checkpoint set shardId-000000000002 --at 2026-13-45T03:00:00Z 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 2 ] && grep -q "2026-13-45T03:00:00Z' is not TRIM_HORIZON, LATEST, a sequence number or a time like" <<<"$err"
check "checkpoint set --at an impossible time names it and the accepted forms" $? "exit $rc: $err"

err=$("$ddb2os" lease assign shardId-000000000002 w2 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 1 ] && grep -q "'w2' is not a live worker" <<<"$err" &&
    [ "$(pg "SELECT coalesce(owner, '-') FROM leases WHERE shard_id = 'shardId-000000000002'")" = - ]
check "lease assign to a dead worker is refused" $? "exit $rc: $err"
err=$("$ddb2os" lease release shardId-999 2>&1 >/dev/null)
[ "$(grep -o "ddb2os" <<<"$err" | wc -l)" -eq 1 ] && ! grep -q "release: lease release" <<<"$err"
check "errors are prefixed once" $? "$err"

"$ddb2os" lease assign shardId-000000000002 w2 --force >/dev/null
r=$(pg "SELECT owner || '|' || lease_counter FROM leases WHERE shard_id = 'shardId-000000000002'")
[ "$r" = "w2|6" ]
check "lease assign gives an unowned shard at once" $? "$r"
"$ddb2os" lease assign shardId-000000000002 w1 >/dev/null
r=$(pg "SELECT owner || '|' || pending_owner FROM leases WHERE shard_id = 'shardId-000000000002'")
[ "$r" = "w2|w1" ]
check "lease assign of an owned shard asks for a handoff" $? "$r"
"$ddb2os" lease release shardId-000000000002 >/dev/null
r=$(pg "SELECT coalesce(owner, '-') || '|' || lease_counter || '|' || (SELECT previous_owner FROM lease_events WHERE event = 'release') FROM leases WHERE shard_id = 'shardId-000000000002'")
[ "$r" = "-|7|w2" ]
check "lease release ends the epoch and is audited" $? "$r"
"$ddb2os" lease release shardId-999 >/dev/null 2>&1
check "lease release of an unknown shard exits 1" $(( $? == 1 ? 0 : 1 )) ""
"$ddb2os" lease frobnicate x >/dev/null 2>&1
check "lease with a wrong action exits 2" $(( $? == 2 ? 0 : 1 )) ""
r=$(pg "SELECT string_agg(event, ',' ORDER BY id) FROM lease_events")
[ "$r" = "checkpoint_reset,checkpoint_reset,assign,assign,release" ]
check "every change is in lease_events" $? "$r"

# The source of each stream, from its name: a DynamoDB stream ARN is the table's own stream.
ddbarn='arn:aws:dynamodb:eu-west-1:123456789012:table/books/stream/2026-11-25T03:00:00.000'
pg "INSERT INTO leases (application, stream, shard_id, lease_counter, checkpoint) VALUES
    ('app', '$ddbarn', 'shardId-00000001764000000000-abcdef01', 1, 'TRIM_HORIZON')"
for cmd in status leases; do
    out=$("$ddb2os" "$cmd")
    head -1 <<<"$out" | grep -qE " source$" &&
      grep -qE "^orders +shardId-000000000001 .* kinesis$" <<<"$out" &&
      grep -qE "^$ddbarn +shardId-00000001764000000000-abcdef01 .* dynamodb-streams$" <<<"$out"
    check "$cmd: a source column, kinesis or dynamodb-streams; the ARN whole" $? "$out"
    out=$("$ddb2os" "$cmd" --json)
    python3 -c '
import json, sys
src = {r["stream"]: r["source"] for r in json.load(sys.stdin)}
assert src == {"orders": "kinesis", sys.argv[1]: "dynamodb-streams"}, src
' "$ddbarn" <<<"$out"
    check "$cmd --json: the source of each stream" $? "$out"
done
out=$("$ddb2os" leases)
python3 -c '
import sys
lines = sys.stdin.read().splitlines()
col = lines[0].index(" source") + 1
assert [l[col:] for l in lines[1:]] == ["dynamodb-streams"] + ["kinesis"] * 3, lines
' <<<"$out"
check "leases: the source column is aligned" $? "$out"

echo "$fails failed"
[ "$fails" -eq 0 ]
