#!/usr/bin/env python3
"""Captures the _bulk responses behind tests/unit/test_bulk.c from a real OpenSearch node.

usage: capture.py [OPENSEARCH_URL]   (default $D2O_TEST_OPENSEARCH or http://127.0.0.1:9200)

Writes <case>.ndjson (the request body) and <case>.json (the response, byte for byte) next to
this script, in a throwaway index that is deleted afterwards. Rerun it when OpenSearch changes
its answers; test_bulk.c asserts on the statuses and error types, not on the byte layout.
"""
import json
import os
import sys
import urllib.error
import urllib.request

BASE = (sys.argv[1] if len(sys.argv) > 1 else
        os.environ.get("D2O_TEST_OPENSEARCH", "http://127.0.0.1:9200")).rstrip("/")
HERE = os.path.dirname(os.path.abspath(__file__))
INDEX = "bulk-capture-%d" % os.getpid()
FILTER = "filter_path=errors,items.*.status,items.*.error,items.*._id"


def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(BASE + path, data=body, method=method,
                                 headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def action(verb, doc_id, version, doc=None, index=INDEX):
    meta = {"_index": index, "_id": doc_id, "version": version, "version_type": "external"}
    lines = [json.dumps({verb: meta})]
    if doc is not None:
        lines.append(json.dumps(doc))
    return "\n".join(lines) + "\n"


def bulk(case, items, filtered=True):
    body = "".join(items).encode()
    status, data = call("POST", "/_bulk" + ("?" + FILTER if filtered else ""), body,
                        "application/x-ndjson")
    with open(os.path.join(HERE, case + ".ndjson"), "wb") as f:
        f.write(body)
    with open(os.path.join(HERE, case + ".json"), "wb") as f:
        f.write(data)
    print(f"{case}: HTTP {status}, {len(data)} bytes")


def main():
    mapping = {"settings": {"number_of_replicas": 0},
               "mappings": {"dynamic": "strict",
                            "properties": {"title": {"type": "text"}, "pages": {"type": "long"}}}}
    status, data = call("PUT", "/" + INDEX, json.dumps(mapping).encode())
    if status != 200:
        sys.exit(f"cannot create {INDEX}: {status} {data!r}")
    try:
        bulk("all_created", [action("index", f"a{i}", 10 + i, {"title": "t", "pages": i})
                             for i in range(3)])
        bulk("mixed", [
            action("index", "a0", 100, {"title": "newer", "pages": 1}),    # 200 updated
            action("index", "a1", 5, {"title": "older", "pages": 1}),      # 409 stale
            action("delete", "missing", 7),                                # 404 not_found
            action("index", "bad", 8, {"title": "t", "pages": "many"}),    # 400 mapping
            action("index", "extra", 9, {"title": "t", "colour": "red"}),  # 400 strict
            action("delete", "a2", 50),                                    # 200 deleted
            action("index", "a1", 11, {"title": "t", "pages": 2}),         # 409 duplicate
        ])
        bulk("mixed_unfiltered", [
            action("index", "u0", 1, {"title": "t", "pages": 1}),
            action("index", "a1", 5, {"title": "older", "pages": 1}),
            action("delete", "missing2", 7),
        ], filtered=False)
        bulk("no_index", [action("index", "x", 1, {"title": "t"}, index="Bad Index")])
        status, data = call("POST", "/_bulk?" + FILTER, b'{"index":{"_index":"x"}\n{"a":1',
                            "application/x-ndjson")
        with open(os.path.join(HERE, "request_refused.json"), "wb") as f:
            f.write(data)
        print(f"request_refused: HTTP {status}, {len(data)} bytes")
    finally:
        call("DELETE", "/" + INDEX)


if __name__ == "__main__":
    main()
