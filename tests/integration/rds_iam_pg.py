#!/usr/bin/python3
"""pg_iam_auth end to end on the wire: ddb2os connects to a listener that speaks the start of the
PostgreSQL protocol (SSL refused, then AuthenticationCleartextPassword, as RDS asks for IAM
users), and the password it sends must be the RDS IAM token botocore's generate_db_auth_token makes
for the same host, port, user, region, credentials and second. Two connections a second apart get
two fresh tokens. A pg_conninfo that cannot carry IAM authentication is refused at start (exit 78)
naming the key.

usage: rds_iam_pg.py DDB2OS
"""
import datetime as real_datetime
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import types
import urllib.parse

import botocore.auth
import botocore.session

REGION = "eu-west-1"
USER = "ddb2os_iam"
CREDS = {"AWS_ACCESS_KEY_ID": "AKIDIAMTEST", "AWS_SECRET_ACCESS_KEY": "iam/secret+KEY",
         "AWS_SESSION_TOKEN": "FwoGZXIvYXdzE+/token=="}


class Listener:
    """Accepts one connection at a time and records the password of each."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.passwords, self.users = [], []
        threading.Thread(target=self.serve, daemon=True).start()

    def recv_exact(self, conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def serve(self):
        while True:
            conn, _ = self.sock.accept()
            try:
                self.one(conn)
            except (EOFError, OSError):
                pass
            finally:
                conn.close()

    def one(self, conn):
        while True:
            length, code = struct.unpack("!II", self.recv_exact(conn, 8))
            body = self.recv_exact(conn, length - 8)
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                conn.sendall(b"N")
                continue
            break
        fields = body.split(b"\0")
        params = dict(zip(fields[0::2], fields[1::2]))
        self.users.append(params.get(b"user", b"").decode())
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # cleartext password, please
        kind = self.recv_exact(conn, 1)
        (length,) = struct.unpack("!I", self.recv_exact(conn, 4))
        payload = self.recv_exact(conn, length - 4)
        if kind == b"p":
            self.passwords.append(payload.rstrip(b"\0").decode())
        msg = b"SFATAL\0C28P01\0Mthe test listener accepts nobody\0\0"
        conn.sendall(b"E" + struct.pack("!I", len(msg) + 4) + msg)


def botocore_token(host, port, at):
    class FixedClock(real_datetime.datetime):
        @classmethod
        def utcnow(cls):
            return at.replace(tzinfo=None)

        @classmethod
        def now(cls, tz=None):
            return at.replace(tzinfo=tz)
    saved = botocore.auth.datetime
    botocore.auth.datetime = types.SimpleNamespace(datetime=FixedClock)
    try:
        client = botocore.session.get_session().create_client(
            "rds", region_name=REGION, aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=CREDS["AWS_SESSION_TOKEN"])
        return client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=USER,
                                             Region=REGION)
    finally:
        botocore.auth.datetime = saved


def run(binary, conninfo):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "DDB2OS_"))}
    env.update(CREDS)
    env.update({"DDB2OS_PG_IAM_AUTH": "true", "DDB2OS_AWS_REGION": REGION,
                "DDB2OS_PG_CONNINFO": conninfo, "AWS_EC2_METADATA_DISABLED": "true"})
    return subprocess.run([binary, "migrate"], env=env, capture_output=True, text=True, timeout=60)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    binary = sys.argv[1]
    listener = Listener()
    conninfo = "host=127.0.0.1 port=%d user=%s dbname=ddb2os sslmode=disable" % (listener.port,
                                                                                 USER)
    for attempt in range(2):
        if attempt:
            time.sleep(1.1)
        before = time.time()
        res = run(binary, conninfo)
        if res.returncode == 0:
            fail("migrate succeeded against a listener that refuses everyone")
        if len(listener.passwords) != attempt + 1:
            fail("connection %d sent no password (exit %d): %s"
                 % (attempt + 1, res.returncode, res.stderr))
        token = listener.passwords[-1]
        if listener.users[-1] != USER:
            fail("logged in as %r, not %r" % (listener.users[-1], USER))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit("https://" + token).query)
        stamp = query.get("X-Amz-Date", [""])[0]
        try:
            at = real_datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=real_datetime.timezone.utc)
        except ValueError:
            fail("the password is not an RDS IAM token: %r" % token)
        if not before - 2 <= at.timestamp() <= time.time() + 1:
            fail("token signed at %s, not now" % stamp)
        want = botocore_token("127.0.0.1", listener.port, at)
        if token != want:
            fail("token differs from botocore's:\n  ddb2os:   %s\n  botocore: %s" % (token, want))
        if res.stderr.count(CREDS["AWS_SECRET_ACCESS_KEY"]) or res.stderr.count(token):
            fail("a secret or the token is in the error output: %s" % res.stderr)
    if listener.passwords[0] == listener.passwords[1]:
        fail("two connections a second apart sent the same token")

    refused = [("host=/var/run/postgresql user=%s dbname=x" % USER, "host"),
               ("host=db.example.com dbname=x", "no user"),
               ("host=db.example.com port=99999 user=u", "port")]
    for bad, why in refused:
        res = run(binary, bad)
        if res.returncode != 78 or "pg_conninfo" not in res.stderr or why not in res.stderr:
            fail("pg_conninfo %r: want exit 78 naming pg_conninfo and %r, got %d: %s"
                 % (bad, why, res.returncode, res.stderr))
    print("pg_iam_auth: 2 connections sent fresh tokens equal to botocore's; 3 bad pg_conninfo "
          "refused with exit 78")


if __name__ == "__main__":
    main()
