"""The standard library's floor for `opshift alert WEBHOOK --title TITLE --quiet`.

What a cron job would write by hand with argparse, json, hmac and http.client: the same
signed alert (OPSHIFT_SECRET, OPSHIFT_BASE_URL), the same bytes. The cold-start
benchmark runs it as a whole process next to the real command.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("webhook")
parser.add_argument("--title", required=True)
parser.add_argument("--quiet", action="store_true")
args = parser.parse_args()
body = json.dumps({"title": args.title}, separators=(",", ":"), ensure_ascii=False).encode()
signature = hmac.new(os.environ["OPSHIFT_SECRET"].encode(), body, hashlib.sha256).hexdigest()
base = urllib.parse.urlsplit(os.environ["OPSHIFT_BASE_URL"])
conn = http.client.HTTPConnection(base.hostname or "", base.port, timeout=30)
headers = {"Content-Type": "application/json", "X-Webhook-Signature": signature}
conn.request("POST", f"/api/alerts/trigger/{args.webhook}", body, headers)
response = conn.getresponse()
answer = json.loads(response.read())
if response.status != 200:
    raise SystemExit(f"{response.status}: {answer}")
