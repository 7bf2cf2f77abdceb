#!/usr/bin/env bash
# `ddb2os dlq` against the real PostgreSQL and OpenSearch: a record that failed on a mapping
# conflict is replayed after the mapping is fixed, the DLQ drains and the document appears with
# its original version; a replay that still fails is recorded on the row; list, show, --json,
# --dry-run and discard work; wrong arguments exit 2.
set -u
ddb2os=${1:?usage: dlq_cli.sh DDB2OS}
: "${D2O_TEST_PG:?D2O_TEST_PG is not set: run scripts/services start and export scripts/services env}"
: "${D2O_TEST_OPENSEARCH:?D2O_TEST_OPENSEARCH is not set: run scripts/services start}"
os=$D2O_TEST_OPENSEARCH
schema="d2o_dlqcli_$$"
index="dlq-cli-$$"
fails=0
check() { if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi; }
pg() { psql "$D2O_TEST_PG options=-csearch_path=$schema" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
cleanup() {
    psql "$D2O_TEST_PG" -qAtX -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
    curl -s -XDELETE "$os/$index" >/dev/null
}
trap cleanup EXIT

psql "$D2O_TEST_PG" -qAtX -c "CREATE SCHEMA $schema" || exit 1
export DDB2OS_PG_CONNINFO="$D2O_TEST_PG options=-csearch_path=$schema"
export DDB2OS_OPENSEARCH_URL=$os DDB2OS_APPLICATION=app DDB2OS_LOG_FORMAT=text
"$ddb2os" migrate >/dev/null
check "migrate" $? ""

# A record whose 'pages' is a string, into an index that maps pages as a number.
record="{\"eventName\":\"INSERT\",\"tableName\":\"$index\",\"dynamodb\":{\"ApproximateCreationDateTime\":1732500000123456,\"ApproximateCreationDateTimePrecision\":\"MICROSECOND\",\"Keys\":{\"id\":{\"S\":\"b-1\"}},\"NewImage\":{\"id\":{\"S\":\"b-1\"},\"pages\":{\"S\":\"many\"}}}}"
curl -s -XPUT "$os/$index" -H 'Content-Type: application/json' \
    -d '{"settings":{"number_of_replicas":0},"mappings":{"properties":{"pages":{"type":"long"}}}}' >/dev/null
pg "INSERT INTO dlq (application, stream, shard_id, sequence_number, table_name, index_name, doc_id,
      version, raw_record, error_class, http_status, error_message, attempts, first_failed_at,
      last_failed_at)
    VALUES ('app', 's', 'shardId-000000000001', '42', '$index', '$index', 'b-1', 1732500000123456,
      convert_to('$record', 'UTF8'), 'mapper_parsing_exception', 400, 'failed to parse field [pages]',
      1, now(), now())"

out=$("$ddb2os" dlq list)
echo "$out" | grep -q "mapper_parsing_exception" && echo "$out" | grep -q "(1 row)"
check "list shows the row" $? "$out"
out=$("$ddb2os" dlq list --json --error-class mapper_parsing_exception)
python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[0]["doc_id"]=="b-1" and d[0]["version"]==1732500000123456' <<<"$out"
check "list --json parses and filters" $? "$out"
out=$("$ddb2os" dlq show --id 1 --json)
python3 -c 'import json,sys; d=json.load(sys.stdin); assert json.loads(d[0]["raw_record"])["tableName"]' <<<"$out"
check "show --json carries the raw record" $? "$out"
"$ddb2os" dlq show --id 999 >/dev/null 2>&1
check "show of a missing row exits 1" $(( $? == 1 ? 0 : 1 )) ""

out=$("$ddb2os" dlq replay --dry-run)
echo "$out" | grep -q '"version":1732500000123456,"version_type":"external"'
check "replay --dry-run prints the bulk item with the original version" $? "$out"

# Replaying before the mapping is fixed fails again and says so on the row.
"$ddb2os" dlq replay >/dev/null 2>&1
rc=$?
state=$(pg "SELECT state || '|' || attempts || '|' || replay_result FROM dlq")
[ "$rc" -eq 1 ] && [[ "$state" == pending\|2\|failed:\ mapper_parsing_exception* ]]
check "a failing replay is recorded on the row" $? "exit $rc, $state"

# Fix the mapping; the replay drains the DLQ and the document appears with its version.
curl -s -XDELETE "$os/$index" >/dev/null
curl -s -XPUT "$os/$index" -H 'Content-Type: application/json' \
    -d '{"settings":{"number_of_replicas":0},"mappings":{"properties":{"pages":{"type":"keyword"}}}}' >/dev/null
"$ddb2os" dlq replay 2>/dev/null
check "replay after the fix exits 0" $? ""
state=$(pg "SELECT state || '|' || replay_result FROM dlq")
[[ "$state" == replayed\|indexed* ]]
check "the row is replayed" $? "$state"
doc=$(curl -s "$os/$index/_doc/b-1")
python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["found"] and d["_version"]==1732500000123456 and d["_source"]["pages"]=="many"' <<<"$doc"
check "the document is in OpenSearch with the original version" $? "$doc"
out=$("$ddb2os" dlq replay 2>&1)
echo "$out" | grep -q "replay: 0 rows"
check "nothing pending is left" $? "$out"
# Replaying it once more (forced) is a harmless 409.
"$ddb2os" dlq replay --state replayed 2>/dev/null
state=$(pg "SELECT replay_result FROM dlq")
[[ "$state" == stale* ]]
check "a replay of a stale row is a harmless 409" $? "$state"

"$ddb2os" dlq discard --id 1 --dry-run >/dev/null 2>&1
[ "$(pg "SELECT state FROM dlq")" = replayed ]
check "discard --dry-run changes nothing" $? ""
"$ddb2os" dlq discard --id 1 2>/dev/null
[ "$(pg "SELECT state FROM dlq")" = discarded ]
check "discard marks the row" $? ""

# A record refused before it had a version (a bad document: version 0 in the row) is replayed
# with the version that is its own, never 0, which would lose to every earlier change.
record2="{\"eventName\":\"MODIFY\",\"tableName\":\"$index\",\"dynamodb\":{\"ApproximateCreationDateTime\":1732500000999,\"ApproximateCreationDateTimePrecision\":\"MILLISECOND\",\"Keys\":{\"id\":{\"S\":\"b-2\"}},\"NewImage\":{\"id\":{\"S\":\"b-2\"}}}}"
pg "INSERT INTO dlq (application, stream, shard_id, sequence_number, table_name, raw_record,
      error_class, error_message, first_failed_at, last_failed_at)
    VALUES ('app', 's', 'shardId-000000000001', '43', '$index', convert_to('$record2', 'UTF8'),
      'bad_document', 'refused', now(), now())"
out=$("$ddb2os" dlq replay --dry-run --shard shardId-000000000001)
echo "$out" | grep -q '"_id":"b-2","version":1732500000999000,"version_type":"external"'
check "a row without a version replays with the record's own" $? "$out"

"$ddb2os" dlq discard >/dev/null 2>&1
check "discard without a filter exits 2" $(( $? == 2 ? 0 : 1 )) ""
"$ddb2os" dlq list --limit -3 >/dev/null 2>&1
check "a bad --limit exits 2" $(( $? == 2 ? 0 : 1 )) ""

err=$("$ddb2os" dlq list --since 'last tuesday-ish' 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 2 ] && grep -q "\-\-since 'last tuesday-ish' is not a time: give a timestamp such as" <<<"$err"
check "a bad --since is named with the accepted form" $? "exit $rc: $err"

# A record that is not text: NUL first, then bytes that are not UTF-8.
pg "INSERT INTO dlq (application, stream, shard_id, sequence_number, table_name, index_name, doc_id,
      version, raw_record, error_class, http_status, error_message, attempts, first_failed_at,
      last_failed_at)
    VALUES ('app', 's', 'shardId-000000000001', '44', '', '', '', 0, '\\x00fffe7b01', 'bad_record',
      0, 'record is not valid JSON', 1, now(), now())"
out=$("$ddb2os" dlq list --limit 1)
[ "$(sed -n 2p <<<"$out" | awk '{print $1}')" = 3 ]
check "list --limit 1 shows the newest row" $? "$out"
out=$("$ddb2os" dlq show --id 3 --json)
python3 -c '
import base64, json, sys
d = json.loads(sys.stdin.read())[0]
assert d["raw_record_encoding"] == "base64", d
assert base64.b64decode(d["raw_record"]) == bytes.fromhex("00fffe7b01"), d
assert d["shard"] == "shardId-000000000001", d
' <<<"$out"
check "show --json of a binary record: valid JSON, base64 with its encoding" $? "$out"
out=$("$ddb2os" dlq show --id 1 --json)
python3 -c 'import json,sys; assert json.loads(sys.stdin.read())[0]["raw_record_encoding"] == "utf-8"' <<<"$out"
check "show --json of a text record says utf-8" $? "$out"
out=$("$ddb2os" dlq show --id 3)
grep -q "^raw_record:      (5 bytes, not UTF-8 text; base64) AP/+ewE=$" <<<"$out"
check "show prints a binary record as base64, not as an empty line" $? "$out"
! grep -nE " +$" <<<"$out" && grep -q "^shard:           shardId-000000000001$" <<<"$out" &&
    grep -q "^partition_key:   -$" <<<"$out"
check "show: the shard as 'shard', empty fields as '-', no line ends in blanks" $? "$out"

echo "$fails failed"
[ "$fails" -eq 0 ]
