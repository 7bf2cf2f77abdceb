#!/usr/bin/python3
"""Signs every request printed by sigv4_oracle with botocore (Debian's python3-botocore) at the
same fixed time and compares the Authorization header with ddb2os's. Exits 1 on the first
mismatch, printing both canonical requests."""
import base64
import datetime as real_datetime
import json
import subprocess
import sys
import types

import botocore.auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials


class FixedClock(real_datetime.datetime):
    @classmethod
    def utcnow(cls):
        return real_datetime.datetime(2026, 11, 25, 1, 2, 3)


botocore.auth.datetime = types.SimpleNamespace(datetime=FixedClock)


def main():
    generator, count, seed = sys.argv[1], sys.argv[2], sys.argv[3]
    out = subprocess.run([generator, count, seed], check=True, capture_output=True).stdout
    checked = 0
    for line in out.decode("utf-8").splitlines():
        case = json.loads(line)
        request = AWSRequest(method=case["method"], url=case["url"],
                             data=base64.b64decode(case["body_b64"]))
        request.headers = HTTPHeaders.from_pairs([tuple(h) for h in case["headers"]])
        creds = Credentials("AKIDORACLE", "oracle/secret+KEY", case["token"])
        signer = botocore.auth.SigV4Auth(creds, case["service"], "eu-west-1")
        signer.add_auth(request)
        theirs = request.headers["Authorization"]
        if theirs != case["authorization"]:
            print(f"mismatch on request {case['i']}: {case['method']} {case['url']!r}")
            print(f"  headers: {case['headers']}")
            print(f"  ddb2os:   {case['authorization']}")
            print(f"  botocore: {theirs}")
            print("  ddb2os canonical request:\n" + case["canonical"])
            print("  botocore canonical request:\n" + signer.canonical_request(request))
            return 1
        checked += 1
    print(f"{checked} random requests: ddb2os and botocore {botocore.__version__} agree")
    return 0 if checked == int(count) else 1


if __name__ == "__main__":
    sys.exit(main())
