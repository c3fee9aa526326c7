"""Every command's help epilog: examples, the environment variables it reads, its exit status.

Plain strings, so ``opshift --help`` costs nothing more than building them.
"""

from __future__ import annotations

__all__ = ["EPILOGS", "for_the_shell"]

_SENDING_ENVIRONMENT = """environment:
  OPSHIFT_SECRET    the team's webhook secret (64 hex characters); required to send
  OPSHIFT_BASE_URL  OpShift's address (default https://www.opshift.io); --base-url wins
  OPSHIFT_DISABLED  1, true or yes: check the call but send nothing (the CLI's form of
                    the library's enabled=False; there is no flag for it)
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY
                    the proxy to reach OpShift through, and the hosts reached directly
"""
_RETRIES = """retries:
  a network error or a 500/502/503/504 is retried up to 2 times, with exponential backoff,
  all within --timeout: the library's default retry_policy (max_retries=2,
  retry_backoff=0.5); no flag changes it. 4xx answers are never retried.
"""
_SENDING_EXITS = """exit status:
  0  sent (or OPSHIFT_DISABLED: checked, nothing sent)
  1  OpShift refused the call, or could not be reached
  2  usage or configuration error, found before sending: nothing was sent
"""

_TOP = f"""{_SENDING_ENVIRONMENT}
{_RETRIES}  `outbox --flush` sends each item once per try instead, backing off as the Outbox does.

exit status:
  0    success
  1    OpShift refused the call or could not be reached; `doctor` found a problem;
       `outbox --flush` left items waiting
  2    usage or configuration error, found before sending: nothing was sent
  141  stdout's reader stopped early (`opshift doctor | head -1`), as SIGPIPE would
  `opshift run` exits with its command's own status instead.

`opshift COMMAND --help` shows each command's options and examples.
"""

_PING = f"""examples:
  opshift ping payments-worker
  opshift ping payments-worker --status down --reason "stripe timeout"
  opshift ping nightly-etl --metadata '{{"rows": 1247}}' --quiet
  opshift ping nightly-etl -q || echo "ping failed with status $?"

{_SENDING_ENVIRONMENT}
{_RETRIES}
{_SENDING_EXITS}"""

_ALERT = f"""examples:
  opshift alert deploy-failures --title "Deploy failed: api-gateway" --severity sev1
  opshift alert deploy-failures --title "Migration failed" \\
      --description "exited with code 137" --group-key deploy:api-gateway \\
      --metadata '{{"commit": "a1b2c3"}}'

{_SENDING_ENVIRONMENT}
{_RETRIES}
{_SENDING_EXITS}"""

_RUN = f"""examples:
  opshift run nightly-backup -- /usr/local/bin/backup.sh --full
  0 3 * * *  OPSHIFT_SECRET=... opshift run nightly-backup -- pg_dump -f /backups/db.sql

Pings up when the command exits 0, otherwise down with "exit code N" (or the signal),
with the duration and the last lines of stderr. Output streams through unchanged, and
opshift exits with the command's own status whatever happens to the ping.

{_SENDING_ENVIRONMENT}
{_RETRIES}
exit status:
  the command's own, whatever happens to the ping (0 when it succeeded), and:
  126    the command is not executable (said on stderr)
  127    the command was not found (said on stderr)
  128+N  the command was killed by signal N
  2      usage error (a bad flag, --metadata or --group-key): the command did not run
"""

_OUTBOX = f"""examples:
  opshift outbox /var/lib/app/opshift-outbox.sqlite3
  opshift outbox /var/lib/app/opshift-outbox.sqlite3 --flush --timeout 60
  */10 * * * *  OPSHIFT_SECRET=... opshift outbox /var/lib/app/opshift-outbox.sqlite3 --flush -q

Lists what waits (per kind and destination, with the oldest item's age). With --flush,
delivers it and exits 0 when the outbox is empty, 1 when items are left (OpShift
unreachable, backing off, or being sent by another process).

{_SENDING_ENVIRONMENT}(all read by --flush only)

--flush sends each item once per try, backing off between tries as the Outbox does (not
the client's retry_policy), until everything is delivered or --timeout is up.

exit status:
  0  listed; with --flush, everything delivered
  1  --flush left items waiting
  2  usage or configuration error: no such file, not an outbox file
"""

_DEMO = """examples:
  opshift demo

Starts a local OpShift-compatible server with a throwaway secret, sends signed pings
and alerts through the real client, and prints each request and response.

environment:
  OPSHIFT_DISABLED  1, true or yes: the demo would send nothing, so it only says so
  OPSHIFT_SECRET, OPSHIFT_BASE_URL, HTTPS_PROXY, HTTP_PROXY, NO_PROXY
                    ignored: the demo makes its own secret and talks straight to its own
                    server on 127.0.0.1

exit status:
  0  shown
  1  a request did not reach the demo's own server
  2  usage error
"""

_SERVE = """examples:
  opshift serve
  opshift serve --port 8080

Serves a local OpShift-compatible API in the foreground: monitors and webhooks are
created on first use, every signature is checked, and one line per request, whatever its
method, is printed (method, path, signature valid or not, the status answered) until
Ctrl-C or SIGTERM.
Paste the printed `export` line in another shell, then run opshift ping or alert there.

environment:
  OPSHIFT_SECRET    the secret to check signatures with when --secret is not given
                    (never printed); with neither, a throwaway secret is made and printed
  OPSHIFT_BASE_URL, OPSHIFT_DISABLED, HTTPS_PROXY, HTTP_PROXY, NO_PROXY
                    not read: the server only listens

exit status:
  0  stopped by Ctrl-C (SIGINT) or SIGTERM
  2  usage or configuration error: a bad secret, or the address cannot be listened on
"""

_DOCTOR = f"""examples:
  opshift doctor
  opshift doctor --base-url https://opshift.internal.example --json

Checks, without sending a ping or an alert: the secret's form and where it came from,
base_url, the proxy that applies, DNS, TCP connect, the TLS handshake with the CAs in
use, and one HEAD request to base_url (reachability and the server's clock). Prints one
line per check: ok, or what to fix. The secret is never printed.

{_SENDING_ENVIRONMENT}  SSL_CERT_FILE     a CA bundle to trust instead of the system's CAs

exit status:
  0  every check passed
  1  a check failed (the line says how to fix it)
  2  usage error
"""

_PLAN = """examples:
  opshift plan proj.celery:app
  opshift plan proj.celery:app --json

OpShift has no cron schedules: a monitor expects a ping every interval, plus a grace
period, both set in the dashboard. MODULE:ATTR names a Celery app or an APScheduler
scheduler. For each beat entry or job, this prints its ping token (or "not
monitored"), the longest gap between two runs (computed with the schedule objects
themselves, in their timezone) and the interval and grace to set.
It warns about schedules faster than OpShift's ping limit, irregular gaps, and tokens
shared by two entries. Nothing is sent.

environment:
  OPSHIFT_SECRET, OPSHIFT_BASE_URL, OPSHIFT_DISABLED, HTTPS_PROXY, HTTP_PROXY, NO_PROXY
                    not read: nothing is sent (the app it loads may read its own)

exit status:
  0  printed
  2  usage error, or MODULE:ATTR cannot be loaded
"""

EPILOGS = {
    "opshift": _TOP,
    "ping": _PING,
    "alert": _ALERT,
    "run": _RUN,
    "outbox": _OUTBOX,
    "demo": _DEMO,
    "serve": _SERVE,
    "doctor": _DOCTOR,
    "plan": _PLAN,
}


def for_the_shell(message: str) -> str:
    """``message`` without the library's Python advice (``pass OpShift(secret=...) or``,
    ``e.g. OpShift(secret=value.strip())``), which means nothing on a command line."""
    import re

    call = r"OpShift\((?:[^()]|\([^()]*\))*\)"  # one level of nested parentheses
    text = re.sub(rf"\bpass {call} or ", "", message)
    text = re.sub(rf"[,;:]?\s*(?:e\.g\.|for example|like|with|use)?\s*{call}", "", text)
    text = re.sub(r"\s+([.;,)])", r"\1", text)
    return re.sub(r"([,;:])\.", ".", text)
