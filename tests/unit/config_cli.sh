#!/usr/bin/env bash
# `ddb2os check-config` makes the checks `ddb2os run` makes, reads the config file syntax that
# docs/configuration.md describes, and prints --json as JSON values of each key's type. No
# servers: every case is refused or accepted before anything connects.
set -u
ddb2os=${1:?usage: config_cli.sh DDB2OS}
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Settings from the environment would change the answers.
while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(DDB2OS_[A-Z_]*\)=.*/\1/p')

check() { # name, condition result, message
    if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi
}

# name, expected status, text stderr must hold, check-config arguments...
refused() {
    local name=$1 want=$2 text=$3 rc
    shift 3
    "$ddb2os" check-config "$@" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    check "$name: exit $want" $((rc != want)) "exit $rc, stderr: $(head -c 300 "$tmp/err")"
    grep -qF -- "$text" "$tmp/err"
    check "$name: says '$text'" $? "stderr: $(head -c 300 "$tmp/err")"
    [ "$(grep -c 'ddb2os check-config:' "$tmp/err")" -eq 1 ] && ! grep -q 'check-config: ddb2os' "$tmp/err"
    check "$name: prefixed once" $? "stderr: $(head -c 300 "$tmp/err")"
}

refused "no stream_name" 78 "stream_name is empty"
refused "renew_ms >= lease_ms" 78 "renew_ms 10000 must be below lease_ms 10000" \
    --stream-name s --lease-ms 10s --renew-ms 10s
refused "AT_TIMESTAMP without a time" 78 "AT_TIMESTAMP needs initial_timestamp" \
    --stream-name s --initial-position AT_TIMESTAMP
refused "http_timeout_ms above half of gc_deletes" 78 \
    "http_timeout_ms 40000 must be at most half of opensearch_gc_deletes_ms 60000" \
    --stream-name s --http-timeout-ms 40s --opensearch-gc-deletes-ms 60s
refused "memory_budget below its floor" 78 \
    "memory_budget = '8MiB' is not valid: accepted: 16777216 to" --stream-name s --memory-budget 8MiB
refused "memory_budget without room for two bulk bodies" 78 \
    "memory_budget 20971520 is too small: it must hold one GetRecords answer of a 1 MiB record" \
    --stream-name s --memory-budget 20MiB --bulk-max-bytes 10MiB
refused "source not known" 78 "source" --stream-name s --source dynamodb
refused "source dynamodb-streams with a Kinesis ARN" 78 \
    "stream_name 'arn:aws:kinesis:us-east-1:1:stream/s' is not a DynamoDB stream ARN" \
    --source dynamodb-streams --stream-name arn:aws:kinesis:us-east-1:1:stream/s
refused "source dynamodb-streams from LATEST" 78 \
    "initial_position LATEST cannot be used with source = dynamodb-streams" \
    --source dynamodb-streams --stream-name books --initial-position LATEST
refused "source dynamodb-streams without a table" 78 "stream_name is empty: set the table" \
    --source dynamodb-streams
refused "streams_endpoint not a URL" 78 "streams_endpoint" \
    --source dynamodb-streams --stream-name books --streams-endpoint localhost:8000
"$ddb2os" check-config --source dynamodb-streams --stream-name books \
    --streams-endpoint http://127.0.0.1:8000 > "$tmp/out" 2> "$tmp/err"
check "source dynamodb-streams with a table: exit 0" $? "$(cat "$tmp/err")"
grep -qx 'source = dynamodb-streams' "$tmp/out"
check "source dynamodb-streams: shown" $? "$(grep source "$tmp/out")"
refused "directory as the file" 78 "is a directory" -c "$tmp"
refused "metrics_addr not an address" 78 "metrics_addr = 'localhost' is not valid" \
    --stream-name s --metrics-addr localhost

printf 'stream_name = a\nstream_name = b\n' > "$tmp/dup.conf"
refused "duplicate key" 78 "dup.conf:2: stream_name is set a second time (first on line 1)" \
    -c "$tmp/dup.conf"

printf '%s\n' '# a comment' 'stream_name = "books" # the main table' \
    "opensearch_url = 'http://127.0.0.1:9200'   # quoted" 'workers = 3 # three' > "$tmp/ok.conf"
"$ddb2os" check-config -c "$tmp/ok.conf" > "$tmp/out" 2> "$tmp/err"
check "comments and quotes: exit 0" $? "$(cat "$tmp/err")"
grep -qx 'stream_name = books' "$tmp/out"
check "comments and quotes: the value alone" $? "$(grep stream_name "$tmp/out")"

# pg_conninfo is shown, its password never: keyword form, URI form, text and --json.
for ci in 'host=127.0.0.1 user=app password=hunter2secret dbname=d' \
    'postgresql://app:hunter2secret@127.0.0.1/d'; do
    for fmt in "" --json; do
        "$ddb2os" check-config $fmt --stream-name s --pg-conninfo "$ci" > "$tmp/out" 2> "$tmp/err"
        ! grep -q hunter2secret "$tmp/out" "$tmp/err" && grep -q 'pg_conninfo' "$tmp/out"
        check "password hidden ($ci $fmt)" $? "$(grep pg_conninfo "$tmp/out")"
    done
done

"$ddb2os" check-config --json -c "$tmp/ok.conf" > "$tmp/json" 2> "$tmp/err"
check "--json: exit 0" $? "$(cat "$tmp/err")"
python3 - "$tmp/json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
assert c["stream_name"] == "books", c["stream_name"]
assert c["workers"] == 3 and isinstance(c["workers"], int), c["workers"]
assert c["tls_verify"] is True, c["tls_verify"]
assert c["lease_ms"] == 10000, c["lease_ms"]
assert isinstance(c["index_map"], dict), c["index_map"]
PY
check "--json: JSON numbers, booleans and objects" $? "$(head -c 300 "$tmp/json")"

echo "$fails failed"
[ "$fails" -eq 0 ]
