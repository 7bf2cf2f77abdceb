"""The books API's OpenAPI template (terraform/books_api.yaml) against real input.

1. The file is rendered the way terraform's templatefile() renders it, with test values; every
   interpolation must be one of the variables api.tf passes, and the result must be valid YAML.
2. Every mapping template is rendered with Apache Velocity (VtlRender.java: $input, $util and
   $context as API Gateway documents them) for hard input: quotes, backslashes, newlines, control
   characters, unicode beyond the BMP, template syntax in values, bad `limit`s, missing items and
   every kind of DynamoDB error.
3. Each output is parsed strictly as JSON (no duplicate keys, no NaN, no invalid escapes) and must
   equal the DynamoDB request, or the status and body, that the API means.
Each case is rendered twice: null references written as "" (API Gateway) and as their own text
(plain Velocity); both must give the same answer.

usage: check_books_api.py SOURCE_ROOT [OPENAPI_FILE]
       check_books_api.py --render SOURCE_ROOT   (print the file as templatefile() renders it)
"""
import json
import os
import re
import subprocess
import sys

import yaml

TEMPLATE_VARS = {"api_name": "ddb2os-test-books", "region": "eu-west-1", "table": "ddb2os-test-books",
                 "role_arn": "arn:aws:iam::123456789012:role/ddb2os-test-books-api"}
TABLE = TEMPLATE_VARS["table"]
REQUEST_ID = "c0ffee00-0000-4000-8000-000000000001"

# values that broke or could break a template: the JSON escape of ' above all
HARD = ["O'Reilly", "'", "\\'", 'say "hi"', "C:\\path\\to\\", "\\", '"', "line1\nline2\r\n\tend",
        "\u0001\u001f\u007f", "Ünïcödé – 日本語 \U0001F600", "</script>&amp;", "a/b", "${table}",
        "#set($x = 1)$x", "$input.body", "$context.requestId", "\u2028\u2029", "plain"]


PROBLEMS = []


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def problem(msg):
    """A wrong output: collected, so one run shows every case that fails."""
    PROBLEMS.append(msg)


def templatefile(text, variables):
    """terraform's templatefile(): ${name} interpolations, $${ and %%{ escapes, no directives."""
    out, i = [], 0
    for m in re.finditer(r"\$\$\{|%%\{|\$\{([^}]*)\}|%\{", text):
        out.append(text[i:m.start()])
        token = m.group(0)
        if token == "$${":
            out.append("${")
        elif token == "%%{":
            out.append("%{")
        elif token == "%{":
            fail("templatefile directive %%{ at offset %d: books_api.yaml uses none" % m.start())
        else:
            name = m.group(1).strip()
            if name not in variables:
                fail("templatefile: ${%s} is not one of the variables api.tf passes (%s)"
                     % (name, ", ".join(sorted(variables))))
            out.append(variables[name])
        i = m.end()
    out.append(text[i:])
    return "".join(out)


def strict_json(text, where):
    def pairs(items):
        keys = [k for k, _ in items]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError("duplicate keys %s" % sorted(dup))
        return dict(items)

    def constant(c):
        raise ValueError("%s is not JSON" % c)
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except ValueError as e:
        problem("%s: not strict JSON (%s):\n%s" % (where, e, text))
        return ValueError


class Api:
    def __init__(self, doc):
        self.doc = doc

    def integration(self, path, method):
        try:
            return self.doc["paths"][path][method]["x-amazon-apigateway-integration"]
        except KeyError:
            fail("no integration for %s %s" % (method.upper(), path))


class Renderer:
    """Collects cases, renders them in one JVM, checks the results."""

    def __init__(self, root):
        self.vtl = os.path.join(root, "tests", "lint", "vtl")
        self.cases = []
        self.checks = []

    def add(self, label, template, check, body=None, params=None):
        for nulls in ("empty", "literal"):
            self.cases.append({"id": "%s [%s]" % (label, nulls), "template": template, "body": body,
                               "params": params or {}, "context": {"requestId": REQUEST_ID},
                               "nulls": nulls})
            self.checks.append(check)

    def run(self):
        classes = os.path.join(self.vtl, "target", "classes")
        if not os.path.exists(os.path.join(classes, "VtlRender.class")):
            fail("%s/VtlRender.class is missing: run scripts/lint-tools" % classes)
        cp = "%s:%s/*" % (classes, os.path.join(self.vtl, "target", "lib"))
        res = subprocess.run(["java", "-cp", cp, "VtlRender"], input=json.dumps({"cases": self.cases}),
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            fail("VtlRender: %s" % res.stderr)
        results = json.loads(res.stdout)
        for case, result, check in zip(self.cases, results, self.checks):
            if result["error"]:
                problem("%s: Velocity failed: %s" % (case["id"], result["error"]))
                continue
            check(case["id"], result)
        return len(results)


def expect_request(want):
    def check(where, result):
        got = strict_json(result["output"], where)
        if got is not ValueError and got != want:
            problem("%s: DynamoDB request\n  got  %r\n  want %r\nrendered:\n%s"
                 % (where, got, want, result["output"]))
    return check


def response(integration, status, body):
    """API Gateway's choice of integration response for a DynamoDB status, rendered later."""
    chosen = None
    for pattern, resp in integration["responses"].items():
        if pattern != "default" and re.fullmatch(pattern, str(status)):
            chosen = resp
            break
    if chosen is None:
        chosen = integration["responses"].get("default")
    if chosen is None:
        fail("no integration response for DynamoDB status %d" % status)
    template = chosen.get("responseTemplates", {}).get("application/json")
    return chosen, template


def add_response(r, label, integration, ddb_status, ddb_body, want_status, want_body):
    chosen, template = response(integration, ddb_status, ddb_body)
    raw = json.dumps(ddb_body, ensure_ascii=False)

    def check(where, result):
        status = result["status"] if result["status"] is not None else int(chosen["statusCode"])
        if status != want_status:
            return problem("%s: status %d, want %d (DynamoDB %d %s); rendered:\n%s"
                 % (where, status, want_status, ddb_status, raw, result["output"]))
        if want_body is None:
            if result["output"].strip():
                problem("%s: want no body, got %r" % (where, result["output"]))
            return
        got = strict_json(result["output"], where)
        if got is not ValueError and got != want_body:
            problem("%s: body\n  got  %r\n  want %r" % (where, got, want_body))
    if template is None:
        problem("%s: DynamoDB %d has no response template (the raw DynamoDB answer would pass through)"
                % (label, ddb_status))
        return
    r.add(label, template, check, body=raw)


def error(kind, message="x"):
    return {"__type": "com.amazonaws.dynamodb.v20120810#" + kind, "message": message}


def main():
    render_only = len(sys.argv) > 1 and sys.argv[1] == "--render"
    if render_only:
        sys.argv.pop(1)
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    root = sys.argv[1]
    path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "terraform", "books_api.yaml")
    with open(path, encoding="utf-8") as f:
        rendered = templatefile(f.read(), TEMPLATE_VARS)
    try:
        doc = yaml.safe_load(rendered)
    except yaml.YAMLError as e:
        fail("the rendered OpenAPI file is not valid YAML: %s" % e)
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.0"):
        fail("the rendered OpenAPI file has no openapi: 3.0.x")
    if render_only:
        sys.stdout.write(rendered)
        return
    api = Api(doc)
    r = Renderer(root)

    post = api.integration("/books", "post")
    lst = api.integration("/books", "get")
    get = api.integration("/books/{bookId}", "get")
    put = api.integration("/books/{bookId}", "put")
    delete = api.integration("/books/{bookId}", "delete")

    def item(book_id, title, author):
        return {"book_id": {"S": book_id}, "title": {"S": title}, "author": {"S": author}}

    # ---- requests
    for n, s in enumerate(HARD):
        other = HARD[(n + 1) % len(HARD)]
        body = json.dumps({"title": s, "author": other}, ensure_ascii=n % 2 == 0)
        r.add("POST /books title %r" % s, post["requestTemplates"]["application/json"],
              expect_request({"TableName": TABLE, "Item": item(REQUEST_ID, s, other),
                              "ConditionExpression": "attribute_not_exists(book_id)"}), body=body)
        r.add("PUT /books/{id} %r" % s, put["requestTemplates"]["application/json"],
              expect_request({"TableName": TABLE, "Key": {"book_id": {"S": other}},
                              "UpdateExpression": "SET title = :t, author = :a",
                              "ConditionExpression": "attribute_exists(book_id)",
                              "ExpressionAttributeValues": {":t": {"S": s}, ":a": {"S": other}},
                              "ReturnValues": "ALL_NEW"}),
              body=body, params={"path": {"bookId": other}})
        r.add("GET /books/{id} %r" % s, get["requestTemplates"]["application/json"],
              expect_request({"TableName": TABLE, "Key": {"book_id": {"S": s}}}),
              params={"path": {"bookId": s}})
        r.add("DELETE /books/{id} %r" % s, delete["requestTemplates"]["application/json"],
              expect_request({"TableName": TABLE, "Key": {"book_id": {"S": s}},
                              "ConditionExpression": "attribute_exists(book_id)"}),
              params={"path": {"bookId": s}})
        r.add("GET /books next=%r" % s, lst["requestTemplates"]["application/json"],
              expect_request({"TableName": TABLE, "Limit": 50,
                              "ExclusiveStartKey": {"book_id": {"S": s}}}),
              params={"querystring": {"next": s}})
    # limit: absent -> 50, 1..1000 as given, anything else -> 0, which DynamoDB refuses (400 below)
    limits = [(None, 50), ("1", 1), ("50", 50), ("999", 999), ("1000", 1000), ("0", 0), ("1001", 0),
              ("-5", 0), ("abc", 0), ("1e3", 0), ("10 ", 0), ("007", 0), ("", 50),
              ("99999999999999999999", 0), ("1,2", 0), ("5\"}", 0), ("O'Reilly", 0)]
    for given, want in limits:
        params = {"querystring": {"limit": given}} if given is not None else {}
        r.add("GET /books limit=%r" % given, lst["requestTemplates"]["application/json"],
              expect_request({"TableName": TABLE, "Limit": want}), params=params)

    # ---- responses
    for n, s in enumerate(HARD):
        other = HARD[(n + 3) % len(HARD)]
        add_response(r, "GetItem found %r" % s, get, 200, {"Item": item(s, other, s)}, 200,
                     {"book_id": s, "title": other, "author": s})
        add_response(r, "UpdateItem ALL_NEW %r" % s, put, 200, {"Attributes": item(s, s, other)},
                     200, {"book_id": s, "title": s, "author": other})
        add_response(r, "Scan page %r" % s, lst, 200,
                     {"Items": [item(s, other, s), item(other, s, other)], "Count": 2,
                      "ScannedCount": 2, "LastEvaluatedKey": {"book_id": {"S": s}}}, 200,
                     {"books": [{"book_id": s, "title": other, "author": s},
                                {"book_id": other, "title": s, "author": other}], "next": s})
        add_response(r, "ValidationException %r" % s, put, 400,
                     error("ValidationException", "One or more parameter values were invalid: " + s),
                     400, {"message": "One or more parameter values were invalid: " + s})
    add_response(r, "POST created", post, 200, {}, 201, {"book_id": REQUEST_ID})
    add_response(r, "GetItem missing", get, 200, {}, 404, {"message": "no such book"})
    add_response(r, "Scan last page", lst, 200, {"Items": [], "Count": 0, "ScannedCount": 0}, 200,
                 {"books": [], "next": None})
    add_response(r, "Scan bad limit", lst, 400,
                 error("ValidationException", "1 validation error detected: Value '0' at 'limit' "
                       "failed to satisfy constraint: Member must have value greater than or equal to 1"),
                 400, {"message": "limit must be a whole number from 1 to 1000"})
    add_response(r, "DeleteItem done", delete, 200, {}, 204, None)
    # a failed condition means "no such book" on PUT and DELETE, "already exists" on POST
    failed = error("ConditionalCheckFailedException", "The conditional request failed")
    add_response(r, "PutItem condition", post, 400, failed, 409, {"message": "book already exists"})
    add_response(r, "UpdateItem condition", put, 400, failed, 404, {"message": "no such book"})
    add_response(r, "DeleteItem condition", delete, 400, failed, 404, {"message": "no such book"})
    busy = ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"]
    internal = ["ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException",
                "MissingAuthenticationTokenException", "SerializationException",
                "ItemCollectionSizeLimitExceededException"]
    for name, integ in (("POST", post), ("GET list", lst), ("GET", get), ("PUT", put),
                        ("DELETE", delete)):
        for kind in busy:
            add_response(r, "%s %s" % (name, kind), integ, 400, error(kind), 503,
                         {"message": "busy, retry later"})
        # none of these means "created", "no such book" or "already exists"
        for kind in internal:
            add_response(r, "%s %s" % (name, kind), integ, 400, error(kind), 500,
                         {"message": "internal error"})
        for status in (500, 503):
            add_response(r, "%s DynamoDB %d" % (name, status), integ, status,
                         {"__type": "com.amazon.coral.availability#ThrottlingException"
                          if status == 503 else "com.amazonaws.dynamodb.v20120810#InternalServerError",
                          "message": "x"}, 500, {"message": "internal error"})
    n = r.run()
    if PROBLEMS:
        for p in PROBLEMS[:25]:
            print("FAIL: " + p, file=sys.stderr)
        fail("%d of %d renders are wrong (first 25 above)" % (len(PROBLEMS), n))
    print("%d renders of %d templates: every output strict JSON and as intended" % (n, 5 + 5 + 2))


if __name__ == "__main__":
    main()
