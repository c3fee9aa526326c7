"""Benchmarks: requests/second against a local server, threads, cold start, imports, overhead.

Run with ``benchmarks/run`` (it makes a venv with requests, httpx and matplotlib and
installs the SDK, so the ``opshift`` command exists). Writes ``docs/benchmarks.md``
(tables), ``docs/benchmarks.json`` (the numbers) and ``docs/benchmarks.png`` (a chart).

Method: a small keep-alive HTTP/1.1 server runs in its own process, pinned to another
core where the machine has one. Every client does what real code must per request:
serialise the ping, sign it with HMAC-SHA256, POST it, parse the JSON answer (the SDK
also validates). Clients are measured in interleaved rounds, in a shuffled order each
round, and the median is reported, since one sequential run per client swings by +-20%
on a noisy machine. Every ratio compares two rows of the same run.

The report is a list of sections (``SECTIONS``): each measures into a JSON-able value
and renders its own Markdown. To add one (say, the outbox), write a ``measure_*`` and a
``render_*`` function and append them to ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ab" * 32  # throwaway
RESPONSE = json.dumps(
    {
        "message": "Ping received",
        "monitor": {"name": "Payments worker", "status": "up", "monitoringActive": True},
        "pingStatus": "up",
    }
).encode()
METADATA = {"batch": 1247, "durationMs": 832}

# Names of the rows the targets compare.
KEEPALIVE = "opshift KeepAliveTransport"
KEEPALIVE_32 = "opshift KeepAliveTransport(max_idle_connections=32)"
PER_THREAD = "http.client, one connection per thread (no sharing: the stdlib's ceiling)"
DEFAULT = "opshift default (UrllibTransport)"
LIMIT = "http.client keep-alive (the limit)"
BARE_URLLIB = "bare urllib (opener built once)"
HTTPX = "httpx.Client"
REQUESTS = "requests.Session"
CLI = "`opshift alert deploy-failures --title ... --quiet`"
STDLIB_SCRIPT = "stdlib script: argparse, json, hmac, http.client (`benchmarks/stdlib_alert.py`)"
CURL = "curl + openssl (reference, see below)"
# Sign with openssl, send with curl: the shell recipe from OpShift's docs.
CURL_RECIPE = (
    'body=\'{"title":"Deploy failed"}\'; '
    'sig=$(printf \'%s\' "$body" | openssl dgst -sha256 -hmac "$OPSHIFT_SECRET" -hex '
    "| sed 's/^.* //'); "
    "curl -sS --fail -o /dev/null -X POST -H 'Content-Type: application/json' "
    '-H "X-Webhook-Signature: $sig" --data "$body" '
    '"$OPSHIFT_BASE_URL/api/alerts/trigger/deploy-failures"'
)


# -- the server ---------------------------------------------------------------------------


def _serve(port_queue: Any, cert: str | None, key: str | None, core: int | None) -> None:
    """Answer every request with RESPONSE, keeping connections alive; thread per client."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    context = None
    if cert and key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    port_queue.put(listener.getsockname()[1])
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(RESPONSE), RESPONSE)
    )

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                close = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    elif name.strip().lower() == b"connection" and b"close" in value.lower():
                        close = True
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]
                conn.sendall(answer)
                if close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


class Server:
    def __init__(self, tls: bool, cert: str, key: str, core: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        args = (queue, cert if tls else None, key if tls else None, core)
        self.process = ctx.Process(target=_serve, args=args, daemon=True)
        self.process.start()
        self.port = queue.get(timeout=30)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()


@dataclass
class Setup:
    """What every section may use: the settings, a certificate and the running servers."""

    rounds: int
    requests: int
    cert: str
    context: ssl.SSLContext
    urls: dict[str, str]  # "http" / "https" -> base URL of a running server


# -- the clients --------------------------------------------------------------------------


def _signed() -> tuple[bytes, dict[str, str]]:
    """Build and sign one ping by hand, as code without the SDK would, every request."""
    import hashlib
    import hmac

    body = json.dumps({"status": "up", "metadata": METADATA}, separators=(",", ":")).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Webhook-Signature": signature}


def make_clients(base: str, setup: Setup) -> dict[str, Callable[[], Any]]:
    """name -> a function doing one signed POST ping and reading the answer."""
    import urllib.request

    import opshift

    context = setup.context
    url = base + "/api/ping/payments-worker"
    clients: dict[str, Callable[[], Any]] = {}

    default = opshift.OpShift(
        SECRET, base_url=base, transport=opshift.UrllibTransport(ssl_context=context)
    )
    keepalive = opshift.OpShift(
        SECRET, base_url=base, transport=opshift.KeepAliveTransport(ssl_context=context)
    )
    clients[DEFAULT] = lambda: default.ping("payments-worker", status="up", metadata=METADATA)
    clients[KEEPALIVE] = lambda: keepalive.ping("payments-worker", status="up", metadata=METADATA)

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def bare_urllib() -> object:
        body, headers = _signed()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    clients[BARE_URLLIB] = bare_urllib

    clients[LIMIT] = functools.partial(_raw_post, _raw_connection(base, setup))
    clients.update(_shared_clients(base, setup, include_sdk=False))
    return clients


def _shared_clients(
    base: str, setup: Setup, include_sdk: bool = True
) -> dict[str, Callable[[], Any]]:
    """Clients one object of which many threads may share: the SDK's, httpx's, requests'."""
    url = base + "/api/ping/payments-worker"
    clients: dict[str, Callable[[], Any]] = {}
    if include_sdk:
        import opshift

        transport = opshift.KeepAliveTransport(ssl_context=setup.context)
        keepalive = opshift.OpShift(SECRET, base_url=base, transport=transport)
        clients[KEEPALIVE] = lambda: keepalive.ping(
            "payments-worker", status="up", metadata=METADATA
        )
    try:
        import httpx

        hclient = httpx.Client(verify=setup.context, timeout=30)

        def with_httpx() -> object:
            body, headers = _signed()
            return hclient.post(url, content=body, headers=headers).json()

        clients[HTTPX] = with_httpx
    except ImportError:
        pass
    try:
        import requests

        session = requests.Session()

        def with_requests() -> object:
            body, headers = _signed()
            # verify per request: REQUESTS_CA_BUNDLE would override the session's setting
            response = session.post(url, data=body, headers=headers, timeout=30, verify=setup.cert)
            return response.json()

        clients[REQUESTS] = with_requests
    except ImportError:
        pass
    return clients


# -- sections: measure ----------------------------------------------------------------------


# The target ratios: (label, client, its baseline, at least). Measured in paired blocks.
# benchmarks/transport_overhead.py re-measures the second alone, and takes its cost apart
# (instructions per call, step by step from bare urllib to OpShift.ping).
TARGETS = (
    ("`KeepAliveTransport` vs raw `http.client` keep-alive", KEEPALIVE, LIMIT, 0.85),
    ("default `UrllibTransport` vs bare `urllib`", DEFAULT, BARE_URLLIB, 0.9),
)
BLOCK = 25  # calls per block in a paired comparison


def measure_throughput(setup: Setup) -> dict[str, Any]:
    """Requests/second of each client, one request at a time, over HTTP and HTTPS.

    The table comes from interleaved rounds (medians). Each target ratio comes from paired
    blocks instead: BLOCK calls of the client, BLOCK of its baseline, back to back, many
    times; the ratio is the median of the pairs' ratios. Two blocks milliseconds apart
    see the same machine, so a noisy neighbour moves both, not the ratio.
    """
    result: dict[str, Any] = {"paired": {}}
    for scheme, base in setup.urls.items():
        print(f"  throughput over {scheme} ...", file=sys.stderr)
        clients = make_clients(base, setup)
        for call in clients.values():  # warm up: connections, caches, imports
            for _ in range(20):
                call()
        samples: dict[str, list[float]] = {name: [] for name in clients}
        order = list(clients.items())
        for _ in range(setup.rounds):
            random.shuffle(order)
            for name, call in order:
                started = time.perf_counter()
                for _ in range(setup.requests):
                    call()
                samples[name].append(setup.requests / (time.perf_counter() - started))
        result[scheme] = {name: statistics.median(values) for name, values in samples.items()}
        result["paired"][scheme] = {
            row: _paired(clients[row], clients[baseline], pairs=20 * setup.rounds)
            for _, row, baseline, _ in TARGETS
        }
    return result


def _paired(call: Callable[[], Any], baseline: Callable[[], Any], pairs: int) -> float:
    """Median over ``pairs`` of (rate of ``call``) / (rate of ``baseline``), in BLOCK-call
    blocks run back to back, which of the two goes first alternating."""
    ratios = []
    for i in range(pairs):
        elapsed = {}
        for which in (call, baseline) if i % 2 else (baseline, call):
            started = time.perf_counter()
            for _ in range(BLOCK):
                which()
            elapsed[which] = time.perf_counter() - started
        ratios.append(elapsed[baseline] / elapsed[call])
    return statistics.median(ratios)


THREAD_COUNTS = (8, 32)


def measure_threads(setup: Setup) -> dict[str, Any]:
    """Requests/second when N threads share one client (pool defaults, as users get them).

    Rounds are interleaved in a shuffled order; rates are medians. The ratio to httpx is
    the median of each round's own ratio, so both rates of a ratio come from one round.
    """
    result: dict[str, Any] = {"paired": {}}
    for scheme, base in setup.urls.items():
        result[scheme] = {}
        result["paired"][scheme] = {}
        for count in THREAD_COUNTS:
            print(f"  {count} threads over {scheme} ...", file=sys.stderr)
            clients = _shared_clients(base, setup)
            # For comparison only (the targets use the default): a pool as big as the
            # thread count, so no connection is closed and reopened between calls.
            import opshift

            transport = opshift.KeepAliveTransport(
                ssl_context=setup.context, max_idle_connections=32
            )
            sized = opshift.OpShift(SECRET, base_url=base, transport=transport)
            clients[KEEPALIVE_32] = lambda sized=sized: sized.ping(
                "payments-worker", status="up", metadata=METADATA
            )
            clients[PER_THREAD] = _per_thread_http_client(base, setup)
            # Long enough runs that opening the connections the pool does not keep (all
            # threads start at once) is a small part of each.
            per_thread = max(40, math.ceil(4 * setup.requests / count))
            for call in clients.values():
                _run_threads(call, count, 5)  # warm up: fill the pools
            samples: dict[str, list[float]] = {name: [] for name in clients}
            order = list(clients.items())
            for _ in range(setup.rounds):
                random.shuffle(order)
                for name, call in order:
                    elapsed = _run_threads(call, count, per_thread)
                    samples[name].append(count * per_thread / elapsed)
            result[scheme][str(count)] = {
                name: statistics.median(values) for name, values in samples.items()
            }
            if HTTPX in samples:
                result["paired"][scheme][str(count)] = statistics.median(
                    ours / theirs for ours, theirs in zip(samples[KEEPALIVE], samples[HTTPX])
                )
    return result


def _per_thread_http_client(base: str, setup: Setup) -> Callable[[], Any]:
    """Raw http.client with a connection of its own in every thread: nothing shared, no
    pool, no lock. What stock http.client parsing allows, as a reference."""
    local = threading.local()

    def call() -> object:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = _raw_connection(base, setup)
        return _raw_post(conn)

    return call


def _raw_connection(base: str, setup: Setup) -> http.client.HTTPConnection:
    """An http.client connection to the benchmark server, as code without the SDK makes it."""
    host, port = base.split("://")[1].split(":")
    if base.startswith("https"):
        return http.client.HTTPSConnection(host, int(port), context=setup.context, timeout=30)
    return http.client.HTTPConnection(host, int(port), timeout=30)


def _raw_post(conn: http.client.HTTPConnection) -> object:
    """One signed ping on a raw http.client connection, its answer parsed."""
    body, headers = _signed()
    conn.request("POST", "/api/ping/payments-worker", body, headers)
    return json.loads(conn.getresponse().read())


def _run_threads(call: Callable[[], Any], count: int, each: int) -> float:
    """Seconds for ``count`` threads, started together, to make ``each`` calls apiece."""
    barrier = threading.Barrier(count + 1)
    failures: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            for _ in range(each):
                call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed


def measure_cold_start(setup: Setup) -> dict[str, float]:
    """Milliseconds for a whole process sending one signed alert over HTTP (median)."""
    print("  cold start ...", file=sys.stderr)
    _compile_bytecode()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OPSHIFT_SECRET": SECRET,
        "OPSHIFT_BASE_URL": setup.urls["http"],
    }
    title = ["deploy-failures", "--title", "Deploy failed", "--quiet"]
    script = shutil.which("opshift", path=str(Path(sys.executable).parent))
    cli = (
        [script, "alert", *title] if script else [sys.executable, "-m", "opshift", "alert", *title]
    )
    commands = {
        CLI: cli,
        STDLIB_SCRIPT: [sys.executable, str(ROOT / "benchmarks" / "stdlib_alert.py"), *title],
        "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    }
    if shutil.which("curl") and shutil.which("openssl"):
        commands[CURL] = ["sh", "-c", CURL_RECIPE]
    samples: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands.items())
    for _ in range(3):  # warm up: page cache
        for _, command in order:
            subprocess.run(command, env=env, check=True)
    for _ in range(max(30, 4 * setup.rounds)):
        random.shuffle(order)
        for name, command in order:
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def _compile_bytecode() -> None:
    # An installed wheel has compiled bytecode; PYTHONDONTWRITEBYTECODE would otherwise
    # make every run recompile the sources and measure the compiler.
    for folder in (ROOT / "src", ROOT / "benchmarks"):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder)], check=True)


def measure_imports(setup: Setup) -> dict[str, float]:
    """Median ms over a bare interpreter, interleaved across modules."""
    print("  imports ...", file=sys.stderr)
    statements = {
        "pass (bare interpreter)": "pass",
        "json, hmac, hashlib": "import json, hmac, hashlib",
        "opshift": "import opshift",
        "urllib.request": "import urllib.request",
        "requests": "import requests",
        "httpx": "import httpx",
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    _compile_bytecode()
    usable = {}
    for name, code in statements.items():
        if (
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode
            == 0
        ):
            usable[name] = code
    samples: dict[str, list[float]] = {name: [] for name in usable}
    for _ in range(max(setup.rounds, 15)):
        for name, code in usable.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            samples[name].append((time.perf_counter() - started) * 1000)
    bare = statistics.median(samples["pass (bare interpreter)"])
    return {
        name: statistics.median(v) - bare
        for name, v in samples.items()
        if name != "pass (bare interpreter)"
    }


def measure_overhead(setup: Setup) -> dict[str, float]:
    """Microseconds per call: the SDK with a no-op transport vs dumps + hmac + loads."""
    import hmac

    import opshift

    print("  per-call overhead ...", file=sys.stderr)

    def noop(url: str, body: bytes, headers: Any, timeout: float) -> tuple[int, bytes]:
        return 200, RESPONSE

    client = opshift.OpShift(SECRET, transport=noop)
    key = SECRET.encode()

    def sdk() -> object:
        return client.ping("payments-worker", status="up", metadata=METADATA)

    def bare() -> object:
        body = json.dumps({"status": "up", "metadata": METADATA}, separators=(",", ":")).encode()
        hmac.new(key, body, "sha256").hexdigest()
        return json.loads(RESPONSE)

    samples: dict[str, list[float]] = {
        "opshift ping (no-op transport)": [],
        "bare: json.dumps + hmac + json.loads": [],
    }
    calls = 20000
    for _ in range(setup.rounds):
        for name, call in zip(samples, (sdk, bare)):
            started = time.perf_counter()
            for _ in range(calls):
                call()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


# -- sections: render -----------------------------------------------------------------------


def _target(value: float, limit: float, at_least: bool = True) -> str:
    met = value >= limit if at_least else value <= limit
    return "met" if met else "**missed**"


def render_throughput(data: dict[str, dict[str, float]], results: dict[str, Any]) -> list[str]:
    lines = ["## Targets", ""]
    lines += [
        "| comparison (same run) | HTTP | HTTPS | target |",
        "|---|---:|---:|---|",
    ]
    for name, row, _, limit in TARGETS:
        ratios = [data["paired"][s][row] for s in ("http", "https")]
        verdict = ", ".join(
            f"{s.upper()} {_target(r, limit)}" for s, r in zip(("http", "https"), ratios)
        )
        lines.append(f"| {name} | {ratios[0]:.2f} | {ratios[1]:.2f} | >= {limit} ({verdict}) |")
    threads = results.get("threads")
    if threads and "32" in threads["paired"]["https"]:
        ratio = threads["paired"]["https"]["32"]
        lines.append(
            f"| `KeepAliveTransport` vs `httpx.Client`, 32 threads, HTTPS | | {ratio:.1f}x | "
            f">= 5x ({_target(ratio, 5)}) |"
        )
    cold = results.get("cold_start")
    if cold:
        ratio = cold[CLI] / cold[STDLIB_SCRIPT]
        lines.append(
            f"| CLI cold start vs the stdlib script, whole process | {ratio:.2f}x the time | | "
            f"<= 1.2x ({_target(ratio, 1.2, at_least=False)}) |"
        )
    lines += [
        "",
        f"Each ratio is the median over paired blocks: {BLOCK} calls of one client, then "
        f"{BLOCK} of the other (the threads row: the median of each round's own ratio). "
        "The tables below are medians of whole rounds; their ratios swing more.",
        "",
    ]
    for scheme in ("http", "https"):
        rps = data[scheme]
        lines += [
            f"## One client, one request at a time, over {scheme.upper()}",
            "",
            "| client | requests/s | vs http.client keep-alive | vs bare urllib |",
            "|---|---:|---:|---:|",
        ]
        for name, value in sorted(rps.items(), key=lambda item: -item[1]):
            lines.append(
                f"| {name} | {value:,.0f} | {value / rps[LIMIT]:.2f} | "
                f"{value / rps[BARE_URLLIB]:.2f} |"
            )
        lines.append("")
    return lines


def render_threads(data: dict[str, Any], _: Any) -> list[str]:
    rates = {scheme: data[scheme] for scheme in ("http", "https") if scheme in data}
    lines = [
        "## Threads sharing one client",
        "",
        "N threads share one client object, each making its requests one after another; "
        "all N start at once. Pools have their defaults (`KeepAliveTransport`: 10 idle "
        "connections kept; httpx: 20; requests: 10), except in the row that says otherwise: "
        "with more threads than idle connections kept, the calls beyond the pool open new "
        "connections. The per-thread http.client row shares nothing: the ceiling of stock "
        "http.client parsing.",
        "",
        "| client | "
        + " | ".join(f"{n} threads {s.upper()}" for s in rates for n in rates[s])
        + " |",
        "|---|" + "---:|" * sum(len(v) for v in rates.values()),
    ]
    names = sorted({name for s in rates.values() for n in s.values() for name in n})
    names.sort(key=lambda name: (name != KEEPALIVE, name != KEEPALIVE_32, name != PER_THREAD))
    for name in names:
        cells = [
            f"{rates[s][n].get(name, 0):,.0f}" + _times(rates[s][n], name)
            for s in rates
            for n in rates[s]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    paired = data.get("paired", {})
    lines += [
        "",
        "(In brackets: KeepAliveTransport's rate as a multiple of that client's, from the "
        "medians above.) KeepAliveTransport vs httpx, median of each round's own ratio: "
        + ", ".join(
            f"{n} threads {s.upper()} {ratio:.1f}x"
            for s, by_count in paired.items()
            for n, ratio in by_count.items()
        )
        + ".",
        "",
    ]
    return lines


def _times(row: dict[str, float], name: str) -> str:
    if name in (KEEPALIVE, KEEPALIVE_32, PER_THREAD) or not row.get(name):
        return ""
    return f" ({row[KEEPALIVE] / row[name]:.1f}x)"


def render_cold_start(data: dict[str, float], _: Any) -> list[str]:
    base = data[STDLIB_SCRIPT]
    lines = [
        "## Cold start: one signed alert as a whole process, over HTTP",
        "",
        "What a cron job pays per run: start the interpreter, import, parse the command "
        "line, sign, send, read the answer, exit.",
        "",
        "| command | ms | vs the stdlib script |",
        "|---|---:|---:|",
    ]
    for name, value in sorted(data.items(), key=lambda item: item[1]):
        lines.append(f"| {name} | {value:.1f} | {value / base:.2f} |")
    lines += [
        "",
        "The curl + openssl recipe (a shell, openssl and curl: three processes):",
        "",
        "```sh",
        CURL_RECIPE.replace("; ", "\n"),
        "```",
        "",
    ]
    return lines


def render_imports(data: dict[str, float], _: Any) -> list[str]:
    base = data["json, hmac, hashlib"]
    lines = [
        "## Import time (ms over a bare interpreter, median)",
        "",
        "| import | ms | ratio to json+hmac+hashlib |",
        "|---|---:|---:|",
    ]
    for name, value in sorted(data.items(), key=lambda item: item[1]):
        lines.append(f"| `{name}` | {value:.1f} | {value / base:.2f} |")
    return [*lines, ""]


def render_overhead(data: dict[str, float], _: Any) -> list[str]:
    names = list(data)
    return [
        "## Per-call overhead (microseconds, median, no network)",
        "",
        "| path | us per call |",
        "|---|---:|",
        *[f"| {name} | {data[name]:.2f} |" for name in names],
        "",
        f"Ratio: {data[names[0]] / data[names[1]]:.2f}x the bare minimum.",
        "",
    ]


def measure_outbox(setup: Setup) -> dict[str, dict[str, float]]:
    """Outbox enqueue cost and drain throughput, each against its baseline (outbox_bench)."""
    import outbox_bench

    return {
        "enqueue": outbox_bench.measure_enqueue(max(setup.rounds, 5), 3000),
        "drain": outbox_bench.measure_drain(setup.urls["http"], min(setup.rounds, 5), 5000),
    }


def render_outbox(data: dict[str, dict[str, float]], _: Any) -> list[str]:
    import outbox_bench

    return outbox_bench.report(data["enqueue"], data["drain"])


Measure = Callable[[Setup], Any]
Render = Callable[[Any, dict[str, Any]], list[str]]
# In report order; each section's data lands in benchmarks.json under its name.
SECTIONS: list[tuple[str, Measure, Render]] = [
    ("throughput", measure_throughput, render_throughput),
    ("threads", measure_threads, render_threads),
    ("cold_start", measure_cold_start, render_cold_start),
    ("imports", measure_imports, render_imports),
    ("overhead", measure_overhead, render_overhead),
    ("outbox", measure_outbox, render_outbox),
]


# -- report -------------------------------------------------------------------------------


def write_report(results: dict[str, Any], out_dir: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} on {results['machine']}, Python {results['python']}, "
        f"with `benchmarks/run` ({results['rounds']} interleaved rounds of "
        f"{results['requests']} sequential requests per client; medians). Server and client "
        f"{'pinned to separate cores' if results['pinned'] else 'not pinned'}. "
        "Every client serialises, signs (HMAC-SHA256) and parses per request, as real code "
        "must; the SDK also validates. Loopback numbers show each client's own cost, not "
        "network latency. Every ratio compares rows of the same run.",
        "",
    ]
    for name, _, render in SECTIONS:
        if name in results["sections"]:
            lines += render(results["sections"][name], results["sections"])
    if "throughput" in results["sections"]:
        lines += ["![Requests per second by client](benchmarks.png)", ""]
    (out_dir / "benchmarks.md").write_text("\n".join(lines))
    (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    if "throughput" in results["sections"]:
        _chart(results, out_dir / "benchmarks.png")


def _chart(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart written", file=sys.stderr)
        return
    throughput = results["sections"]["throughput"]
    names = sorted(throughput["http"], key=lambda n: throughput["http"][n])
    fig, ax = plt.subplots(figsize=(9, 4.8))
    height = 0.38
    for offset, scheme in ((-height / 2, "http"), (height / 2, "https")):
        values = [throughput[scheme].get(n, 0) for n in names]
        bars = ax.barh(
            [i + offset for i in range(len(names))], values, height, label=scheme.upper()
        )
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_xlabel("requests per second (loopback, higher is better)")
    ax.set_title(f"Signed OpShift pings per second, Python {results['python']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--only", nargs="*", choices=[name for name, _, _ in SECTIONS], help="sections to run"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # outbox_bench

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = len(cores) >= 2
    if pinned:
        os.sched_setaffinity(0, {cores[0]})
    folder = Path(tempfile.mkdtemp())
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    if shutil.which("openssl") is None:
        sys.exit("openssl is needed to make the throwaway certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    servers = {
        scheme: Server(scheme == "https", cert, key, cores[1] if pinned else None)
        for scheme in ("http", "https")
    }
    setup = Setup(
        rounds=args.rounds,
        requests=args.requests,
        cert=cert,
        context=ssl.create_default_context(cafile=cert),
        urls={scheme: server.url for scheme, server in servers.items()},
    )
    sections = {}
    try:
        for name, measure, _ in SECTIONS:
            if args.only is None or name in args.only:
                print(f"measuring {name} ...", file=sys.stderr)
                sections[name] = measure(setup)
    finally:
        for server in servers.values():
            server.stop()
    previous = args.out / "benchmarks.json"
    if args.only is not None and previous.exists():  # keep the sections not re-run
        sections = {**json.loads(previous.read_text())["sections"], **sections}
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "rounds": args.rounds,
        "requests": args.requests,
        "pinned": pinned,
        "sections": sections,
    }
    write_report(results, args.out)
    print((args.out / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
