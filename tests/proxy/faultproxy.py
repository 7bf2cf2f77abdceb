#!/usr/bin/env python3
"""A small fault-injecting HTTP proxy for ddb2os tests, in front of a real OpenSearch.

Listens on 127.0.0.1 only. The first line printed on stdout is the port. Faults are set at start
from flags or at run time with `POST /__fault` (a JSON object of the same names), and
`GET /__stats` returns counters:

  request_status, request_count  answer the next N requests with this status, without forwarding
  request_fraction               ... or (with request_status) this fraction of requests, at random
  item_429_every                 in _bulk requests, refuse every k-th item with a 429
                                 es_rejected_execution_exception: the item is removed from the
                                 body before forwarding, so it is really not applied, and its
                                 synthetic result is spliced into the response at its position
  item_429_fraction              ... or refuse this fraction of the items, at random
  item_429_ids                   {"<_id>": n}: refuse the items of these documents n times each
  item_429_hold                  {"<_id>": version}: refuse the items of this document at this
                                 external version every time, until the hold is replaced
                                 (e.g. {"item_429_hold": {}}): an older write held back while
                                 newer changes of its document land
  seed                           seed of the random choices (default 1), for repeatable runs
  reset_count                    close the next N connections without answering
  down_seconds                   close every connection at once for this long
  delay_ms                       wait this long before forwarding
  delay_targets                  (in front of Kinesis) only the calls whose X-Amz-Target ends
                                 with one of these operations, e.g. ["ListShards"] (default []:
                                 every request)
  max_body                       answer 413 to bodies larger than this many bytes
  null_iterator                  (in front of Kinesis) answer the next N GetRecords calls without
                                 NextShardIterator and ChildShards, as if the shard had ended

With --tcp the proxy forwards raw TCP instead (in front of PostgreSQL, say): the first line on
stdout is the proxy's port, the second the port of its control server (the same /__fault and
/__stats). It knows these faults:

  latency_ms                     add this much to every round trip: each chunk of bytes is
                                 held for half of it, in each direction, in order
  reset_count, down_seconds      as above, for new connections

/__stats also reports the Authorization and x-amz-content-sha256 headers of the last request, so
tests can check how the client authenticated. The proxy does not pass authentication on, unless
--pass-auth (an emulator that wants an Authorization header, as kinesis-mock does).

The proxy stops by itself after --max-seconds and on SIGTERM.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
FAULTS = {"request_status": 0, "request_count": 0, "request_fraction": 0.0, "item_429_every": 0,
          "item_429_fraction": 0.0, "item_429_ids": {}, "item_429_hold": {}, "reset_count": 0, "down_until": 0.0,
          "delay_ms": 0, "delay_targets": [], "max_body": 0, "null_iterator": 0,
          "latency_ms": 0}
RNG = random.Random(1)
STATS = {"requests": 0, "forwarded": 0, "injected_status": 0, "injected_items": 0,
         "held_items": 0, "resets": 0, "too_large": 0, "null_iterators": 0,
         "connections": 0, "delayed_chunks": 0, "delayed_requests": 0}
ITEM_COUNTER = [0]
UPSTREAM = ("127.0.0.1", 9200)
DROPPED_HEADERS = ("host", "content-length", "connection", "authorization")


def set_faults(spec):
    with LOCK:
        for key, value in spec.items():
            if key == "down_seconds":
                FAULTS["down_until"] = time.time() + float(value)
            elif key == "seed":
                RNG.seed(value)
            elif key in ("item_429_ids", "item_429_hold"):
                FAULTS[key] = {str(k): int(v) for k, v in dict(value).items()}
            elif key in FAULTS:
                FAULTS[key] = value
            else:
                raise ValueError(f"unknown fault {key!r}")


def split_bulk(body):
    """NDJSON -> list of (lines) per item; delete actions have no source line."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    items, i = [], 0
    while i < len(lines):
        action = json.loads(lines[i])
        verb = next(iter(action))
        if verb == "delete":
            items.append((verb, [lines[i]]))
            i += 1
        else:
            items.append((verb, lines[i:i + 2]))
            i += 2
    return items


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self):
        with LOCK:
            STATS["resets"] += 1
        try:
            # linger on, timeout 0: close() sends a TCP RST, as a crashed server would
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close_connection = True
        self.connection.close()

    def _forward(self, method, body):
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in DROPPED_HEADERS}
        conn.request(method, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        with LOCK:
            STATS["forwarded"] += 1
        return resp.status, data, resp.getheader("Content-Type", "application/json")

    def _handle(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/__fault"):
            try:
                set_faults(json.loads(body or b"{}"))
            except (ValueError, json.JSONDecodeError) as e:
                return self._reply(400, json.dumps({"error": str(e)}).encode())
            return self._reply(200, b'{"ok":true}')
        if self.path.startswith("/__stats"):
            with LOCK:
                return self._reply(200, json.dumps(STATS).encode())
        with LOCK:
            STATS["requests"] += 1
            STATS["last_authorization"] = self.headers.get("Authorization", "")
            STATS["last_content_sha256"] = self.headers.get("x-amz-content-sha256", "")
            down = time.time() < FAULTS["down_until"]
            reset = FAULTS["reset_count"] > 0
            if reset:
                FAULTS["reset_count"] -= 1
            status = 0
            if FAULTS["request_status"] and FAULTS["request_count"] > 0:
                status = FAULTS["request_status"]
                FAULTS["request_count"] -= 1
            elif FAULTS["request_status"] and RNG.random() < FAULTS["request_fraction"]:
                status = FAULTS["request_status"]
            if status:
                STATS["injected_status"] += 1
            every = (FAULTS["item_429_every"] or FAULTS["item_429_fraction"] or
                     FAULTS["item_429_ids"] or FAULTS["item_429_hold"])
            delay = FAULTS["delay_ms"]
            target = self.headers.get("X-Amz-Target", "")
            if FAULTS["delay_targets"] and not any(
                    target.endswith("." + op) for op in FAULTS["delay_targets"]):
                delay = 0
            if delay:
                STATS["delayed_requests"] += 1
            too_large = FAULTS["max_body"] and len(body) > FAULTS["max_body"]
            if too_large:
                STATS["too_large"] += 1
        if down or reset:
            return self._drop()
        if delay:
            time.sleep(delay / 1000.0)
        if status:
            return self._reply(status, json.dumps({
                "error": {"type": "injected", "reason": f"injected {status}"},
                "status": status}).encode())
        if too_large:
            return self._reply(413, b'{"error":"Request Entity Too Large"}')
        if every and method == "POST" and self.path.split("?")[0].endswith("_bulk"):
            return self._bulk_with_rejections(body, every)
        status, data, ctype = self._forward(method, body)
        if status == 200 and self.headers.get("X-Amz-Target", "").endswith(".GetRecords"):
            data = self._maybe_null_iterator(data)
        return self._reply(status, data, ctype)

    def _maybe_null_iterator(self, data):
        with LOCK:
            if FAULTS["null_iterator"] <= 0:
                return data
            FAULTS["null_iterator"] -= 1
            STATS["null_iterators"] += 1
        answer = json.loads(data)
        answer["NextShardIterator"] = None
        answer.pop("ChildShards", None)
        return json.dumps(answer).encode()

    def _bulk_with_rejections(self, body, _every):
        items = split_bulk(body)
        keep, rejected = [], set()
        with LOCK:
            for idx, (verb, lines) in enumerate(items):
                ITEM_COUNTER[0] += 1
                action = json.loads(lines[0])[verb]
                doc_id = str(action.get("_id", ""))
                held = FAULTS["item_429_hold"].get(doc_id)
                if held is not None and held == action.get("version"):
                    hit = True
                    STATS["held_items"] += 1
                elif FAULTS["item_429_ids"].get(doc_id, 0) > 0:
                    FAULTS["item_429_ids"][doc_id] -= 1
                    hit = True
                elif FAULTS["item_429_every"]:
                    hit = ITEM_COUNTER[0] % FAULTS["item_429_every"] == 0
                else:
                    hit = RNG.random() < FAULTS["item_429_fraction"]
                if hit:
                    rejected.add(idx)
                    STATS["injected_items"] += 1
        keep = [lines for idx, (_, lines) in enumerate(items) if idx not in rejected]
        upstream_items = []
        if keep:
            fwd = b"\n".join(line for lines in keep for line in lines) + b"\n"
            status, data, _ = self._forward("POST", fwd)
            if status != 200:
                return self._reply(status, data)
            upstream_items = json.loads(data).get("items", [])
        merged, it = [], iter(upstream_items)
        for idx, (verb, _) in enumerate(items):
            if idx in rejected:
                merged.append({verb: {"status": 429, "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected by the test proxy"}}})
            else:
                merged.append(next(it))
        return self._reply(200, json.dumps({"errors": True, "items": merged}).encode())

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_HEAD(self):
        self._handle("HEAD")


class ControlHandler(Handler):
    """--tcp: the control server answers /__fault and /__stats only."""

    def _handle(self, method):
        if self.path.startswith("/__fault") or self.path.startswith("/__stats"):
            return super()._handle(method)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._reply(404, b'{"error":"control server: /__fault or /__stats"}')


def tcp_pump(src, dst):
    """Copies src to dst, each chunk held for half of latency_ms (a writer thread keeps order)."""
    import queue
    chunks = queue.Queue()

    def writer():
        while True:
            due, data = chunks.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(data)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=writer, daemon=True).start()
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        with LOCK:
            half = FAULTS["latency_ms"] / 2000.0
            if half and data:
                STATS["delayed_chunks"] += 1
        chunks.put((time.monotonic() + half, data or None))
        if not data:
            return


def tcp_serve(listener, stop):
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except OSError:
            return
        with LOCK:
            STATS["connections"] += 1
            refuse = time.time() < FAULTS["down_until"] or FAULTS["reset_count"] > 0
            if FAULTS["reset_count"] > 0:
                FAULTS["reset_count"] -= 1
            if refuse:
                STATS["resets"] += 1
        if refuse:
            client.close()
            continue
        try:
            upstream = socket.create_connection(UPSTREAM, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=tcp_pump, args=(a, b), daemon=True).start()


def main_tcp(args):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)
    control = ThreadingHTTPServer(("127.0.0.1", 0), ControlHandler)
    control.daemon_threads = True
    stop = threading.Event()
    print(listener.getsockname()[1], flush=True)
    print(control.server_address[1], flush=True)

    def shutdown(*_):
        stop.set()
        listener.close()
        threading.Thread(target=control.shutdown).start()

    signal.signal(signal.SIGTERM, shutdown)
    timer = threading.Timer(args.max_seconds, shutdown)
    timer.daemon = True
    timer.start()
    threading.Thread(target=tcp_serve, args=(listener, stop), daemon=True).start()
    control.serve_forever()
    control.server_close()
    return 0


def main():
    global UPSTREAM, DROPPED_HEADERS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", default="http://127.0.0.1:9200")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--faults", default="{}", help="initial faults as JSON")
    ap.add_argument("--pass-auth", action="store_true", help="forward Authorization headers")
    ap.add_argument("--tcp", action="store_true", help="forward raw TCP (upstream host:port)")
    args = ap.parse_args()
    if args.pass_auth:
        DROPPED_HEADERS = ("host", "content-length", "connection")
    hostport = args.upstream.split("//", 1)[-1].rstrip("/")
    host, _, port = hostport.partition(":")
    UPSTREAM = (host, int(port or 80))
    set_faults(json.loads(args.faults))
    if args.tcp:
        return main_tcp(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    try:
        print(server.server_address[1], flush=True)
    except BrokenPipeError:  # the caller read the port and closed the pipe: nothing else to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    timer = threading.Timer(args.max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
