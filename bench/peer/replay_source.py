#!/usr/bin/python3
"""A replay of one Kinesis stream, captured once from an emulator and served from memory
(docs/performance.md, "A source that costs almost nothing: the emulator's stream replayed").

usage: replay_source.py UPSTREAM_URL STREAM [--port P] [--timeout S]

At start it reads STREAM from UPSTREAM_URL (kinesalite) once: its ListShards,
DescribeStreamSummary and DescribeStream answers, kept byte for byte, and every shard's records
from TRIM_HORIZON to the tip (GetRecords of Limit 10 000), each record kept as the very JSON text
the emulator sent (checked: the answer rebuilt from the kept texts equals the emulator's, byte
for byte, except the iterator). Then it listens on 127.0.0.1:P (default: any free port), prints
"ready PORT RECORDS CAPTURE_SECONDS" on stdout, and answers, in the emulator's format
(application/x-amz-json-1.1, X-Amz-Target Kinesis_20131202.*; any Authorization accepted):

  ListShards, DescribeStreamSummary, DescribeStream  the captured answers
  GetShardIterator  TRIM_HORIZON, LATEST, AT_/AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP
  GetRecords        up to Limit (default 10 000) records from the iterator's position, joined
                    from the kept texts; MillisBehindLatest 0 as the emulator sends; at the tip
                    no records and the same position, as the emulator does for an open shard

Anything else gets a 400 naming the call. It is a bench tool: one stream, no writes, no
resharding, no rate limits. It stops by itself after S seconds (default 1800), on SIGTERM, or
when its stdin closes (the script that started it is gone). Every thread is a daemon.
"""
import base64
import bisect
import http.server
import json
import os
import signal
import socketserver
import sys
import threading
import time
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PREFIX = "Kinesis_20131202."
CONTENT_TYPE = "application/x-amz-json-1.1"


def call(url, target, body):
    """One signed call to the upstream emulator; the raw answer's bytes."""
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=url, data=data,
                     headers={"X-Amz-Target": PREFIX + target, "Content-Type": CONTENT_TYPE})
    SigV4Auth(Credentials("AKIDREPLAY", "replay-secret"), "kinesis", "us-east-1").add_auth(req)
    r = urllib.request.Request(url, data=data, headers=dict(req.headers.items()), method="POST")
    with urllib.request.urlopen(r, timeout=120) as res:
        return res.read()


class Shard:
    def __init__(self, shard_id):
        self.id = shard_id
        self.texts = []      # each record's JSON text, as the emulator sent it
        self.seqs = []       # its SequenceNumber, as an int
        self.times = []      # its ApproximateArrivalTimestamp


def capture(url, stream):
    """(raw answers by target, shards): the stream as the emulator serves it."""
    answers = {}
    for target in ("ListShards", "DescribeStreamSummary", "DescribeStream"):
        answers[target] = call(url, target, {"StreamName": stream})
    if "NextToken" in json.loads(answers["ListShards"]):
        sys.exit("replay_source: ListShards of %s has more than one page" % stream)
    shards = []
    for s in json.loads(answers["ListShards"])["Shards"]:
        shard = Shard(s["ShardId"])
        it = json.loads(call(url, "GetShardIterator", {
            "StreamName": stream, "ShardId": shard.id,
            "ShardIteratorType": "TRIM_HORIZON"}))["ShardIterator"]
        while True:
            raw = call(url, "GetRecords", {"ShardIterator": it, "Limit": 10000})
            ans = json.loads(raw)
            texts = [json.dumps(r, separators=(",", ":")).encode() for r in ans["Records"]]
            rebuilt = (b'{"MillisBehindLatest":%d,"NextShardIterator":"%s","Records":[%s]}'
                       % (ans["MillisBehindLatest"], ans["NextShardIterator"].encode(),
                          b",".join(texts)))
            if rebuilt != raw:
                sys.exit("replay_source: a GetRecords answer of %s is not rebuilt byte for byte "
                         "from its records' texts" % shard.id)
            if not texts:
                break
            shard.texts += texts
            shard.seqs += [int(r["SequenceNumber"]) for r in ans["Records"]]
            shard.times += [r["ApproximateArrivalTimestamp"] for r in ans["Records"]]
            it = ans["NextShardIterator"]
        shards.append(shard)
    return answers, shards


class Replay:
    def __init__(self, answers, shards):
        self.answers = answers
        self.shards = {s.id: s for s in shards}
        self.by_index = shards

    @staticmethod
    def iterator(index, pos):
        # opaque to the client, about as long as the emulator's (~220 characters)
        return base64.b64encode(b"replay %d %d " % (index, pos) + b"." * 150).decode()

    def get_shard_iterator(self, req):
        shard = self.shards.get(req.get("ShardId"))
        if shard is None:
            return 400, {"__type": "ResourceNotFoundException",
                         "message": "Shard %s not found" % req.get("ShardId")}
        kind = req.get("ShardIteratorType")
        if kind == "TRIM_HORIZON":
            pos = 0
        elif kind == "LATEST":
            pos = len(shard.texts)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            seq = int(req["StartingSequenceNumber"])
            pos = (bisect.bisect_left if kind == "AT_SEQUENCE_NUMBER" else bisect.bisect_right)(
                shard.seqs, seq)
        elif kind == "AT_TIMESTAMP":
            pos = bisect.bisect_left(shard.times, float(req["Timestamp"]))
        else:
            return 400, {"__type": "ValidationException",
                         "message": "ShardIteratorType %r not replayed" % kind}
        index = self.by_index.index(shard)
        return 200, b'{"ShardIterator":"%s"}' % self.iterator(index, pos).encode()

    def get_records(self, req):
        try:
            _, index, pos = base64.b64decode(req["ShardIterator"]).split(b" ")[:3]
            shard, pos = self.by_index[int(index)], int(pos)
        except (KeyError, ValueError, IndexError):
            return 400, {"__type": "InvalidArgumentException",
                         "message": "ShardIterator is not one of this replay's"}
        limit = int(req.get("Limit", 10000))
        end = min(len(shard.texts), pos + max(1, limit))
        return 200, (b'{"MillisBehindLatest":0,"NextShardIterator":"%s","Records":[%s]}'
                     % (self.iterator(int(index), end).encode(),
                        b",".join(shard.texts[pos:end])))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the emulator
    replay = None

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        target = (self.headers.get("X-Amz-Target") or "")[len(PREFIX):]
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = None
        if req is None:
            status, out = 400, {"__type": "SerializationException", "message": "body not JSON"}
        elif target == "GetRecords":
            status, out = self.replay.get_records(req)
        elif target == "GetShardIterator":
            status, out = self.replay.get_shard_iterator(req)
        elif target in self.replay.answers:
            status, out = 200, self.replay.answers[target]
        else:
            status, out = 400, {"__type": "UnknownOperationException",
                                "message": "%s is not replayed" % (target or "no X-Amz-Target")}
        if not isinstance(out, bytes):
            out = json.dumps(out).encode()
            sys.stderr.write("replay_source: %s: %d %s\n" % (target, status, out.decode()))
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, stream = args[0], args[1]
    port = int(args[args.index("--port") + 1]) if "--port" in args else 0
    timeout = float(args[args.index("--timeout") + 1]) if "--timeout" in args else 1800
    t = time.time()
    answers, shards = capture(url, stream)
    Handler.replay = Replay(answers, shards)
    server = Server(("127.0.0.1", port), Handler)
    print("ready %d %d %.1f" % (server.server_address[1], sum(len(s.texts) for s in shards),
                                time.time() - t), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait(timeout)
    os._exit(0)


if __name__ == "__main__":
    main()
