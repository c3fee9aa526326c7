"""The default transport against bare urllib, one request at a time: ratios and their cost.

Usage (any Python with the SDK importable; ``benchmarks/run``'s venv or ``.venv-check``)::

    python benchmarks/transport_overhead.py              # paired ratios, HTTP and HTTPS
    python benchmarks/transport_overhead.py --count      # + instructions per call (valgrind)

Paired ratios: as bench.py's ``_paired`` (blocks of calls of each client back to back,
median of the pairs' ratios), ``opshift default`` vs ``bare urllib`` exactly as bench.py
builds them, so the number is the one ``docs/benchmarks.md`` reports as a target.

Instruction counts (``--count``): each variant runs in its own process under
``valgrind --tool=callgrind``, twice (``FEW`` and ``MANY`` calls after the same warm-up);
the difference divided by ``MANY - FEW`` is instructions per call, start-up and imports
cancelled out. Noise from other processes cannot move an instruction count, so the rows
agree run to run within about 1% (a few thousand). The server runs outside valgrind.

The variants take the seam apart step by step (the transport alone, then with what the
client adds), so a row's difference from the one above is what that step costs:

- ``urllib``: bench.py's bare urllib row: sign, POST, parse; the target's baseline;
- ``bare``: bare urllib (a default ``build_opener``), 2 headers, ``timeout=30``, no signing;
- ``a``: ``UrllibTransport`` called with the same 2 headers (plain dict) and ``timeout=30``;
- ``b``: with the client's 4 headers, plain dict;
- ``c``: with the client's 4 headers as ``SignedHeaders``;
- ``d``: as c, with a fractional timeout (what the client passes: the time left);
- ``e``: ``OpShift.ping`` (validation, JSON, HMAC, parsing): compare it with ``urllib``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE)]

import bench  # noqa: E402 - after the path: the server, the clients and _paired

FEW, MANY, WARM = 20, 120, 30
VARIANTS = ("urllib", "bare", "a", "b", "c", "d", "e")


def variants(base: str, context: ssl.SSLContext) -> dict[str, Callable[[], Any]]:
    """name -> one POST of a signed ping (see the module docstring for what each does)."""
    import urllib.request

    import opshift
    from opshift._call import USER_AGENT, SignedHeaders

    url = base + "/api/ping/payments-worker"
    body, two = bench._signed()
    four = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Signature": two["X-Webhook-Signature"],
    }
    signed = SignedHeaders(four)
    transport = opshift.UrllibTransport(ssl_context=context)
    client = opshift.OpShift(bench.SECRET, base_url=base, transport=transport)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def bare() -> object:
        request = urllib.request.Request(url, data=body, headers=two, method="POST")
        with opener.open(request, timeout=30) as response:
            return response.read()

    def signed_bare() -> object:  # as bench.make_clients' bare_urllib
        body, headers = bench._signed()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    return {
        "urllib": signed_bare,
        "bare": bare,
        "a": lambda: transport(url, body, two, 30),
        "b": lambda: transport(url, body, four, 30),
        "c": lambda: transport(url, body, signed, 30),
        "d": lambda: transport(url, body, signed, 29.987654321),
        "e": lambda: client.ping("payments-worker", status="up", metadata=bench.METADATA),
    }


class Servers:
    """The benchmark's HTTP and HTTPS servers (bench.Server), with a throwaway certificate."""

    def __init__(self) -> None:
        if shutil.which("openssl") is None:
            sys.exit("openssl is needed to make the throwaway certificate")
        folder = Path(tempfile.mkdtemp())
        self.cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", self.cert, "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.core = cores[1] if len(cores) >= 2 else None
        self.servers = {
            scheme: bench.Server(scheme == "https", self.cert, key, self.core)
            for scheme in ("http", "https")
        }
        self.urls = {scheme: server.url for scheme, server in self.servers.items()}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def paired(servers: Servers, pairs: int, rows: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Paired ratios per scheme: bench.py's target row (the SDK's default client vs bare
    urllib, both signing and parsing), then each of ``rows`` vs ``bare`` (no signing)."""
    context = ssl.create_default_context(cafile=servers.cert)
    setup = bench.Setup(1, 1, servers.cert, context, servers.urls)
    result: dict[str, dict[str, float]] = {}
    for scheme, base in servers.urls.items():
        clients = bench.make_clients(base, setup)
        mine = variants(base, context)
        comparisons = {
            "opshift default vs bare urllib (bench.py's target)": (
                clients[bench.DEFAULT],
                clients[bench.BARE_URLLIB],
            ),
            **{f"{row} vs bare": (mine[row], mine["bare"]) for row in rows},
        }
        for call in {c for pair in comparisons.values() for c in pair}:
            for _ in range(30):
                call()
        result[scheme] = {
            name: bench._paired(call, baseline, pairs)
            for name, (call, baseline) in comparisons.items()
        }
    return result


def _callgrind_total(path: str) -> int:
    text = Path(path).read_text()
    match = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {path}")
    return int(match[1])


def count(servers: Servers, rows: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Instructions per call of each variant, per scheme, by callgrind (see the docstring)."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed for --count")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for scheme, base in servers.urls.items():
            result[scheme] = {}
            for row in rows:
                totals = []
                for calls in (FEW, MANY):
                    out = os.path.join(folder, f"{scheme}-{row}-{calls}.out")
                    subprocess.run(
                        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                         sys.executable, __file__, "--inner", base, servers.cert, row,
                         str(calls)],
                        env=env, check=True, capture_output=True,
                    )  # fmt: skip
                    totals.append(_callgrind_total(out))
                result[scheme][row] = (totals[1] - totals[0]) / (MANY - FEW)
                print(f"  {scheme} {row}: {result[scheme][row]:,.0f}", file=sys.stderr)
    return result


def _inner(base: str, cert: str, row: str, calls: int) -> None:
    """The counted process: warm up, then ``calls`` calls of one variant."""
    call = variants(base, ssl.create_default_context(cafile=cert))[row]
    for _ in range(WARM + calls):
        call()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", action="store_true", help="also count instructions")
    parser.add_argument("--pairs", type=int, default=200, help="paired blocks per ratio")
    parser.add_argument(
        "--rows", nargs="*", default=["a", "d"], choices=VARIANTS, help="also paired vs bare"
    )
    parser.add_argument("--count-rows", nargs="*", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--inner", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        base, cert, row, calls = args.inner
        _inner(base, cert, row, int(calls))
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    servers = Servers()
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[0]})
    try:
        if args.count:
            counts = count(servers, tuple(args.count_rows))
            print("\n| variant | HTTP instructions/call | HTTPS instructions/call |")
            print("|---|---:|---:|")
            for row in args.count_rows:
                http, https = counts["http"][row], counts["https"][row]
                print(f"| {row} | {http:,.0f} | {https:,.0f} |")
        ratios = paired(servers, args.pairs, tuple(args.rows))
        print(f"\nPaired ratios (rate / the baseline's rate; median of {args.pairs} pairs "
              f"of {bench.BLOCK} calls), Python {sys.version.split()[0]}:")  # fmt: skip
        print("\n| comparison | HTTP | HTTPS |\n|---|---:|---:|")
        for name in ratios["http"]:
            print(f"| {name} | {ratios['http'][name]:.3f} | {ratios['https'][name]:.3f} |")
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
