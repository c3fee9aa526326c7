"""Benchmarks: requests/second against a local server, import time, per-call overhead.

Run with ``benchmarks/run`` (it makes a venv with requests, httpx and matplotlib). Writes
``docs/benchmarks.md`` (tables) and ``docs/benchmarks.png`` (bar chart).

Method: a small keep-alive HTTP/1.1 server runs in its own process, pinned to another
core where the machine has one. Every client does what real code must per request:
serialise the ping, sign it with HMAC-SHA256, POST it, parse the JSON answer (the SDK
also validates). Clients are measured in interleaved rounds, in a shuffled order each
round, and the median is reported, since one sequential run per client swings by +-20%
on a noisy machine. Ratios are against raw ``http.client`` on one kept-alive
connection, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
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


# -- the clients --------------------------------------------------------------------------


def _signed() -> tuple[bytes, dict[str, str]]:
    """Build and sign one ping by hand, as code without the SDK would, every request."""
    import hashlib
    import hmac

    body = json.dumps({"status": "up", "metadata": METADATA}, separators=(",", ":")).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Webhook-Signature": signature}


def make_clients(base: str, context: ssl.SSLContext) -> dict[str, Callable[[], Any]]:
    """name -> a function doing one signed POST ping and reading the answer."""
    import http.client
    import urllib.request

    import opshift

    url = base + "/api/ping/payments-worker"
    clients: dict[str, Callable[[], Any]] = {}

    default = opshift.OpShift(
        SECRET, base_url=base, transport=opshift.UrllibTransport(ssl_context=context)
    )
    keepalive = opshift.OpShift(
        SECRET, base_url=base, transport=opshift.KeepAliveTransport(ssl_context=context)
    )
    clients["opshift default (UrllibTransport)"] = lambda: default.ping(
        "payments-worker", status="up", metadata=METADATA
    )
    clients["opshift KeepAliveTransport"] = lambda: keepalive.ping(
        "payments-worker", status="up", metadata=METADATA
    )

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def bare_urllib() -> object:
        body, headers = _signed()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    clients["bare urllib (opener built once)"] = bare_urllib

    host, port = base.split("://")[1].split(":")
    conn: http.client.HTTPConnection
    if base.startswith("https"):
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def raw_http_client() -> object:
        body, headers = _signed()
        conn.request("POST", "/api/ping/payments-worker", body, headers)
        return json.loads(conn.getresponse().read())

    clients["http.client keep-alive (the limit)"] = raw_http_client

    try:
        import requests

        session = requests.Session()
        # verify per request: REQUESTS_CA_BUNDLE in the environment would override the session's

        def with_requests() -> object:
            body, headers = _signed()
            return session.post(
                url, data=body, headers=headers, timeout=30, verify=CERT_PATH
            ).json()

        clients["requests.Session"] = with_requests
    except ImportError:
        pass
    try:
        import httpx

        hclient = httpx.Client(verify=context, timeout=30)

        def with_httpx() -> object:
            body, headers = _signed()
            return hclient.post(url, content=body, headers=headers).json()

        clients["httpx.Client"] = with_httpx
    except ImportError:
        pass
    return clients


LIMIT = "http.client keep-alive (the limit)"
CERT_PATH = ""


def measure_throughput(
    base: str, context: ssl.SSLContext, rounds: int, requests_per_round: int
) -> dict[str, float]:
    clients = make_clients(base, context)
    for call in clients.values():  # warm up: connections, caches, imports
        for _ in range(20):
            call()
    samples: dict[str, list[float]] = {name: [] for name in clients}
    order = list(clients.items())
    for _ in range(rounds):
        random.shuffle(order)
        for name, call in order:
            started = time.perf_counter()
            for _ in range(requests_per_round):
                call()
            samples[name].append(requests_per_round / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in samples.items()}


# -- import time and per-call overhead ----------------------------------------------------


def measure_imports(rounds: int) -> dict[str, float]:
    """Median ms over a bare interpreter, interleaved across modules."""
    statements = {
        "pass (bare interpreter)": "pass",
        "json, hmac, hashlib": "import json, hmac, hashlib",
        "opshift": "import opshift",
        "urllib.request": "import urllib.request",
        "requests": "import requests",
        "httpx": "import httpx",
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # An installed wheel has compiled bytecode; PYTHONDONTWRITEBYTECODE would otherwise
    # make every run recompile the sources and measure the compiler.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    usable = {}
    for name, code in statements.items():
        if (
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode
            == 0
        ):
            usable[name] = code
    samples: dict[str, list[float]] = {name: [] for name in usable}
    for _ in range(rounds):
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


def measure_overhead(rounds: int, calls: int) -> dict[str, float]:
    """Microseconds per call: the SDK with a no-op transport vs dumps + hmac + loads."""
    import hmac

    import opshift

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
    for _ in range(rounds):
        for name, call in zip(samples, (sdk, bare)):
            started = time.perf_counter()
            for _ in range(calls):
                call()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


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
        "network latency.",
        "",
    ]
    for scheme in ("http", "https"):
        rps = results["throughput"][scheme]
        limit = rps[LIMIT]
        lines += [
            f"## Requests per second over {scheme.upper()}",
            "",
            "| client | requests/s | ratio to http.client keep-alive |",
            "|---|---:|---:|",
        ]
        for name, value in sorted(rps.items(), key=lambda item: -item[1]):
            lines.append(f"| {name} | {value:,.0f} | {value / limit:.2f} |")
        lines.append("")
    imports = results["imports"]
    base = imports["json, hmac, hashlib"]
    lines += [
        "## Import time (ms over a bare interpreter, median)",
        "",
        "| import | ms | ratio to json+hmac+hashlib |",
        "|---|---:|---:|",
    ]
    for name, value in sorted(imports.items(), key=lambda item: item[1]):
        lines.append(f"| `{name}` | {value:.1f} | {value / base:.2f} |")
    overhead = results["overhead"]
    names = list(overhead)
    lines += [
        "",
        "## Per-call overhead (microseconds, median, no network)",
        "",
        "| path | us per call |",
        "|---|---:|",
        *[f"| {name} | {overhead[name]:.2f} |" for name in names],
        "",
        f"Ratio: {overhead[names[0]] / overhead[names[1]]:.2f}x the bare minimum.",
        "",
        "![Requests per second by client](benchmarks.png)",
        "",
    ]
    (out_dir / "benchmarks.md").write_text("\n".join(lines))
    (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart written", file=sys.stderr)
        return
    names = sorted(results["throughput"]["http"], key=lambda n: results["throughput"]["http"][n])
    fig, ax = plt.subplots(figsize=(9, 4.8))
    height = 0.38
    for offset, scheme in ((-height / 2, "http"), (height / 2, "https")):
        values = [results["throughput"][scheme].get(n, 0) for n in names]
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
    fig.savefig(out_dir / "benchmarks.png", dpi=110)


def main() -> None:
    global CERT_PATH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))

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
    CERT_PATH = cert
    context = ssl.create_default_context(cafile=cert)
    throughput = {}
    for tls in (False, True):
        server = Server(tls, cert, key, cores[1] if pinned else None)
        try:
            scheme = "https" if tls else "http"
            print(f"measuring {scheme} ...", file=sys.stderr)
            throughput[scheme] = measure_throughput(server.url, context, args.rounds, args.requests)
        finally:
            server.stop()
    print("measuring imports and overhead ...", file=sys.stderr)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "rounds": args.rounds,
        "requests": args.requests,
        "pinned": pinned,
        "throughput": throughput,
        "imports": measure_imports(rounds=max(args.rounds, 15)),
        "overhead": measure_overhead(rounds=args.rounds, calls=20000),
    }
    write_report(results, args.out)
    print((args.out / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
