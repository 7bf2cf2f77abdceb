#!/usr/bin/env bash
# scripts/services on a second set of ports: an OpenSearch HTTP port of 9300 or above (which the
# embedded runner used to refuse) starts and answers, next to the set the suite runs on.
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=$(mktemp -d /tmp/d2o-services-XXXXXX)
fails=0
check() { if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi; }
free_port() { # the first port from $1 up that nothing listens on
    local p=$1
    while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
    echo "$p"
}
http=$(free_port 9350)
transport=$(free_port $((http + 100)))
export D2O_SERVICES_DIR=$state D2O_OS_PORT=$http D2O_OS_TRANSPORT_PORT=$transport
cleanup() {
    "$root/scripts/services" stop opensearch >/dev/null 2>&1
    rm -rf "$state"
}
trap cleanup EXIT

out=$("$root/scripts/services" start opensearch 2>&1)
check "opensearch starts on HTTP port $http" $? "$(tail -5 <<<"$out")"
body=$(curl -sS -m 10 "http://127.0.0.1:$http/")
grep -q '"number" : "2.19' <<<"$body"
check "it answers on $http" $? "$body"

echo "$fails failed"
[ "$fails" -eq 0 ]
