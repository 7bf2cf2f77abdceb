#!/usr/bin/python3
"""Compares the RDS IAM authentication tokens printed by rds_token_oracle (ddb2os's SigV4
presigner) with botocore's generate_db_auth_token (Debian's python3-botocore) at the same fixed
time, character for character. Exits 1 on the first mismatch, printing both tokens."""
import datetime as real_datetime
import json
import subprocess
import sys
import types

import botocore.auth
import botocore.session


class FixedClock(real_datetime.datetime):
    @classmethod
    def utcnow(cls):
        return real_datetime.datetime(2026, 11, 25, 1, 2, 3)

    @classmethod
    def now(cls, tz=None):
        return real_datetime.datetime(2026, 11, 25, 1, 2, 3, tzinfo=tz)


botocore.auth.datetime = types.SimpleNamespace(datetime=FixedClock)


def main():
    generator, count, seed = sys.argv[1], sys.argv[2], sys.argv[3]
    out = subprocess.run([generator, count, seed], check=True, capture_output=True).stdout
    session = botocore.session.get_session()
    checked = 0
    for line in out.decode("utf-8").splitlines():
        case = json.loads(line)
        client = session.create_client(
            "rds", region_name=case["region"], aws_access_key_id="AKIDORACLE",
            aws_secret_access_key="oracle/secret+KEY", aws_session_token=case["session_token"])
        theirs = client.generate_db_auth_token(DBHostname=case["host"], Port=case["port"],
                                               DBUsername=case["user"], Region=case["region"])
        if theirs != case["token"]:
            print(f"mismatch on case {case['i']}: {case['user']!r}@{case['host']}:{case['port']}"
                  f" in {case['region']}, session token {case['session_token']!r}")
            print(f"  ddb2os:   {case['token']}")
            print(f"  botocore: {theirs}")
            return 1
        checked += 1
    print(f"{checked} random RDS IAM tokens: ddb2os and botocore {botocore.__version__} agree")
    return 0 if checked == int(count) else 1


if __name__ == "__main__":
    sys.exit(main())
