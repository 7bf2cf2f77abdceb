#!/usr/bin/env bash
# The `ddb2os transform` contract: for every tests/unit/data/transform/<case>.in.jsonl, stdout is
# byte for byte <case>.out.ndjson (flags from <case>.args), stderr is <case>.err when that file
# exists, and the exit status is 1 exactly when some line was bad. Wrong arguments exit 2 and
# bad settings exit 78, both with a message naming the problem.
set -u
ddb2os=${1:?usage: transform_cli.sh DDB2OS DATA_DIR}
data=${2:?usage: transform_cli.sh DDB2OS DATA_DIR}
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # name, condition result, message
    if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi
}

for in in "$data"/*.in.jsonl; do
    name=$(basename "$in" .in.jsonl)
    args=()
    [ -f "$data/$name.args" ] && mapfile -t args < "$data/$name.args"
    "$ddb2os" transform "${args[@]}" < "$in" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    cmp -s "$tmp/out" "$data/$name.out.ndjson"
    check "$name stdout" $? "$(diff "$tmp/out" "$data/$name.out.ndjson" | head -5)"
    want_rc=0
    if [ -f "$data/$name.err" ]; then
        want_rc=1
        cmp -s "$tmp/err" "$data/$name.err"
        check "$name stderr" $? "$(diff "$tmp/err" "$data/$name.err" | head -5)"
    else
        [ ! -s "$tmp/err" ]
        check "$name stderr empty" $? "$(head -3 "$tmp/err")"
    fi
    [ "$rc" -eq "$want_rc" ]
    check "$name exit $want_rc" $? "exit $rc"
done

"$ddb2os" transform --no-such-flag < /dev/null > /dev/null 2> "$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown option '--no-such-flag'" "$tmp/err"
check "unknown flag exits 2" $? "exit $rc: $(cat "$tmp/err")"

"$ddb2os" transform --delete-mode=purge < /dev/null > /dev/null 2> "$tmp/err"
rc=$?
[ "$rc" -eq 78 ] && grep -q "delete_mode = 'purge' is not valid" "$tmp/err" && grep -q "one of delete, tombstone" "$tmp/err"
check "bad setting exits 78" $? "exit $rc: $(cat "$tmp/err")"

DDB2OS_DELET_MODE=x "$ddb2os" transform < /dev/null > /dev/null 2> "$tmp/err"
rc=$?
[ "$rc" -eq 78 ] && grep -q "did you mean 'delete_mode'" "$tmp/err"
check "unknown environment key suggests" $? "exit $rc: $(cat "$tmp/err")"

"$ddb2os" transform --help > "$tmp/out" 2>&1
check "--help" $? "exit $?"

echo "$fails failed"
[ "$fails" -eq 0 ]
