"""The command line keeps its word: exit statuses, messages naming their source, help epilogs,
the demo behind a proxy, and docs/cli.md's own claims."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from opshift.cli._help import for_the_shell
from opshift.testing import OpShiftServer

from .helpers import ROOT, SECRET, InProcess, opshift, refused_url, server_env

CLI_DOC = ROOT / "docs" / "cli.md"
COMMANDS = ["ping", "alert", "run", "outbox", "demo", "serve", "doctor", "plan"]
VARIABLES = ["OPSHIFT_SECRET", "OPSHIFT_BASE_URL", "OPSHIFT_DISABLED"]
PROXIES = ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"]
# Every exit status each --help documents, each on a line of its own under "exit status:".
EXIT_STATUSES = {
    None: ["0", "1", "2", "141"],
    "ping": ["0", "1", "2"],
    "alert": ["0", "1", "2"],
    "run": ["126", "127", "128+N", "2"],
    "outbox": ["0", "1", "2"],
    "demo": ["0", "1", "2"],
    "serve": ["0", "2"],
    "doctor": ["0", "1", "2"],
    "plan": ["0", "2"],
}
# The library's names the CLI maps (OPSHIFT_DISABLED is enabled=False; its retries are
# the default retry_policy), named in configuration.md, cli.md and `opshift --help`.
LIBRARY_NAMES = ["OPSHIFT_DISABLED", "enabled", "retry_policy"]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> InProcess:
    """The CLI, run in-process with the environment restored after the test."""
    return InProcess(monkeypatch)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["alert", "deploy-failures", "--title", ""], "title is required", id="title"),
        pytest.param(["alert", "h", "--title", "x" * 201], "title must be at most", id="long"),
        pytest.param(["ping", "w", "--metadata", '{"d": NaN}'], "metadata", id="nan"),
        pytest.param(["ping", "w", "--reason", "r" * 201], "reason must be at most", id="reason"),
        pytest.param(["ping", " "], "ping_token must be a non-empty", id="token"),
        pytest.param(
            ["alert", "h", "--title", "t", "--group-key", "k" * 201], "group_key", id="group-key"
        ),
    ],
)
def test_every_error_found_before_sending_exits_2(
    cli: InProcess, server: OpShiftServer, args: list[str], message: str
) -> None:
    """A field that breaks a documented limit is a usage error (2), and nothing is sent."""
    done = cli(*args, env=server_env(server))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stderr.startswith("opshift: error: ")
    assert server.requests == []


def test_bad_fields_exit_2_even_when_opshift_is_disabled(cli: InProcess) -> None:
    """OPSHIFT_DISABLED checks the call all the same: a bad title is still a 2."""
    done = cli("alert", "h", "--title", " ", env={"OPSHIFT_DISABLED": "1"})
    assert done.returncode == 2
    assert "title is required" in done.stderr


def test_opshift_refusing_the_call_still_exits_1(cli: InProcess, server: OpShiftServer) -> None:
    """A 400 from OpShift itself (not found before sending) stays an exit 1."""
    server.fail_next(400, {"error": "Validation failed"})
    done = cli("ping", "payments-worker", env=server_env(server))
    assert done.returncode == 1
    assert "Validation failed" in done.stderr


def test_a_bad_run_flag_exits_2_without_running_the_command(
    server: OpShiftServer, tmp_path: Path
) -> None:
    """`opshift run` checks --group-key before starting the command: exit 2, nothing ran."""
    marker = tmp_path / "ran"
    done = opshift(
        "run", "payments-worker", "--group-key", "k" * 201, "--",
        sys.executable, "-c", f"open({str(marker)!r}, 'w')", env=server_env(server),
    )  # fmt: skip
    assert done.returncode == 2
    assert "group_key must be at most 200 characters" in done.stderr
    assert not marker.exists()
    assert server.requests == []


def test_run_says_when_the_command_is_not_found(server: OpShiftServer) -> None:
    """127 comes with `opshift: command not found: NAME` on stderr, and the ping says down."""
    done = opshift("run", "payments-worker", "--", "nosuchcmd-opshift", env=server_env(server))
    assert done.returncode == 127
    assert done.stderr == "opshift: command not found: nosuchcmd-opshift\n"
    body = server.requests[-1].json
    assert body["status"] == "down"
    assert body["reason"] == "command not found: nosuchcmd-opshift"


def test_run_says_when_the_file_is_not_executable(server: OpShiftServer, tmp_path: Path) -> None:
    """126 comes with `opshift: permission denied: PATH (not executable ...)` on stderr."""
    script = tmp_path / "backup.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    done = opshift("run", "payments-worker", "--", str(script), env=server_env(server))
    assert done.returncode == 126
    assert done.stderr.startswith(f"opshift: permission denied: {script} (not executable")
    assert server.requests[-1].json["reason"] == f"permission denied: {script}"


def test_run_names_a_missing_interpreter(server: OpShiftServer, tmp_path: Path) -> None:
    """A script whose #! program is missing is not reported as the script being missing."""
    script = tmp_path / "job.sh"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    done = opshift("run", "payments-worker", "--", str(script), env=server_env(server))
    assert done.returncode == 127
    assert done.stderr.startswith(f"opshift: bad interpreter: {script}: its #! line")


def test_run_without_a_command_shows_runs_usage(cli: InProcess) -> None:
    """`opshift run TOKEN` with no command prints `run`'s own usage and exits 2."""
    done = cli("run", "nightly", env={"OPSHIFT_SECRET": SECRET})
    assert done.returncode == 2
    assert done.stderr.startswith("usage: opshift run ")
    assert "opshift run: error: run needs a command" in done.stderr


def test_a_bad_base_url_flag_is_named(cli: InProcess) -> None:
    """A bad --base-url is reported as --base-url, not as the library's base_url argument."""
    done = cli("ping", "w", "--base-url", "www.opshift.io", env={"OPSHIFT_SECRET": SECRET})
    assert done.returncode == 2
    assert "--base-url" in done.stderr
    assert "www.opshift.io" in done.stderr


def test_configuration_errors_carry_no_python_advice(cli: InProcess) -> None:
    """A secret with a trailing newline exits 2 naming OPSHIFT_SECRET, with no OpShift(...)."""
    done = cli("ping", "w", env={"OPSHIFT_SECRET": SECRET + "\n"})
    assert done.returncode == 2
    assert "OPSHIFT_SECRET" in done.stderr
    assert "OpShift(" not in done.stderr
    assert SECRET not in done.stderr


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        pytest.param(
            "No OpShift secret: pass OpShift(secret=...) or set OPSHIFT_SECRET to the secret.",
            "No OpShift secret: set OPSHIFT_SECRET to the secret.",
            id="pass-or",
        ),
        pytest.param(
            "It has whitespace; strip it, e.g. OpShift(secret=value.strip()).",
            "It has whitespace; strip it.",
            id="eg-nested",
        ),
        pytest.param(
            "OPSHIFT_SECRET ends with a newline; strip it: OpShift(secret=s.strip())",
            "OPSHIFT_SECRET ends with a newline; strip it",
            id="colon",
        ),
        pytest.param("title is required.", "title is required.", id="untouched"),
    ],
)
def test_python_advice_is_dropped_on_the_command_line(message: str, shown: str) -> None:
    """The library's `OpShift(...)` advice is cut from messages the CLI prints."""
    assert for_the_shell(message) == shown


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_lists_the_environment_and_exit_status(cli: InProcess, command: str | None) -> None:
    """Every --help (the top level's too) names the variables it reads and its exit codes."""
    done = cli(*([command] if command else []), "--help")
    assert done.returncode == 0
    for name in [*VARIABLES, *PROXIES, "environment:", "exit status:"]:
        assert name in done.stdout, name
    statuses = done.stdout.split("exit status:", 1)[1]
    for status in EXIT_STATUSES[command]:
        assert re.search(rf"^  {re.escape(status)} +\S", statuses, re.MULTILINE), status
    assert re.search(r"^  2 +usage", statuses, re.MULTILINE)


def test_help_docs_and_configuration_name_enabled_and_retry_policy(cli: InProcess) -> None:
    """OPSHIFT_DISABLED, enabled and retry_policy are in configuration.md, cli.md and --help."""
    done = cli("--help")
    texts = {
        "opshift --help": done.stdout,
        "cli.md": CLI_DOC.read_text(encoding="utf-8"),
        "configuration.md": (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8"),
    }
    for where, text in texts.items():
        for name in LIBRARY_NAMES:
            assert re.search(rf"\b{name}\b", text), f"{name} not in {where}"
    for command in ("ping", "alert", "run"):  # the commands that send with the client's retries
        helped = cli(command, "--help").stdout
        assert "enabled=False" in helped and "retry_policy" in helped, command


def test_the_demo_ignores_proxies(cli: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set and no NO_PROXY, the demo still reaches its own loopback server."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", refused_url())
    done = cli("demo")
    assert done.returncode == 0, done.stderr
    assert "The server checked 5 signatures: 4 valid." in done.stdout


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"OPSHIFT_BASE_URL": "bogus"}, id="base-url"),
        pytest.param({"OPSHIFT_SECRET": "not-a-secret"}, id="secret"),
        pytest.param({"HTTPS_PROXY": "bogus://"}, id="https-proxy"),
    ],
)
def test_the_demo_reads_only_opshift_disabled(cli: InProcess, env: dict[str, str]) -> None:
    """The demo's own server needs no OPSHIFT_BASE_URL or OPSHIFT_SECRET: bad ones are ignored."""
    done = cli("demo", env=env)
    assert done.returncode == 0, done.stderr
    assert "The server checked 5 signatures: 4 valid." in done.stdout


def test_the_demo_says_when_opshift_is_disabled(cli: InProcess) -> None:
    """With OPSHIFT_DISABLED (and a bad OPSHIFT_BASE_URL) the demo says so and exits 0."""
    done = cli("demo", env={"OPSHIFT_DISABLED": "1", "OPSHIFT_BASE_URL": "bogus"})
    assert done.returncode == 0, done.stderr
    assert "unset OPSHIFT_DISABLED" in done.stderr
    assert done.stdout == ""


def test_a_failing_demo_step_says_why(cli: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """When no request reaches the demo's server, each step says what failed and it exits 1."""
    from opshift.cli import _demo

    class Refusing:
        def __call__(self, url: str, body: bytes, headers: object, timeout: float) -> object:
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(_demo, "LoopbackTransport", Refusing)
    done = cli("demo")
    assert done.returncode == 1
    assert done.stdout.count("raised NetworkError") == 5
    assert "no request reached the demo's own server" in done.stderr


def _doc_blocks() -> list[str]:
    text = CLI_DOC.read_text(encoding="utf-8")
    return re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_docs_failure_example_prints_the_real_status(server: OpShiftServer) -> None:
    """docs/cli.md's shell example, run against a monitor that does not exist, prints 1."""
    example = next(block for block in _doc_blocks() if "failed with status" in block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}
    env.update(server_env(server), PATH=str(Path(sys.executable).parent) + os.pathsep + env["PATH"])
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", example],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "failed with status 1" in done.stdout


def test_the_docs_list_every_command_variable_and_status() -> None:
    """docs/cli.md's table has a row per command; it names each variable and exit status."""
    text = CLI_DOC.read_text(encoding="utf-8")
    for command in COMMANDS:
        assert re.search(rf"^\| `opshift {command}\b", text, re.MULTILINE), command
    for name in [*VARIABLES, *PROXIES]:
        assert name in text, name
    for status in ("| 0 |", "| 1 |", "| 2 |", "| 141 |"):
        assert status in text


def test_run_flags_after_the_token_are_used(server: OpShiftServer) -> None:
    """`opshift run TOKEN --group-key K --metadata J -- CMD` (as documented) sends K and J."""
    done = opshift(
        "run", "payments-worker", "--group-key", "backups", "--metadata", '{"host": "db1"}',
        "--", sys.executable, "-c", "pass", env=server_env(server),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = server.requests[-1].json
    assert body["group_key"] == "backups"
    assert body["metadata"]["host"] == "db1"


def test_run_rejects_stray_arguments_before_the_separator(cli: InProcess) -> None:
    """A stray word between TOKEN and `--` is a usage error, not silently dropped."""
    done = cli("run", "nightly", "oops", "--", "true", env={"OPSHIFT_SECRET": SECRET})
    assert done.returncode == 2
    assert "unexpected arguments before --: oops" in done.stderr


@pytest.mark.parametrize("where", ["flag", "environment"])
def test_an_id_given_as_a_url_is_checked_against_the_configured_server(
    cli: InProcess, server: OpShiftServer, where: str
) -> None:
    """`opshift ping <base_url>/api/ping/x` works with --base-url or OPSHIFT_BASE_URL."""
    env = {"OPSHIFT_SECRET": SECRET}
    flag: list[str] = []
    if where == "flag":
        flag = ["--base-url", server.url]
    else:
        env["OPSHIFT_BASE_URL"] = server.url
    done = cli("ping", f"{server.url}/api/ping/payments-worker", "--quiet", *flag, env=env)
    assert done.returncode == 0, done.stderr
    assert [r.path for r in server.requests] == ["/api/ping/payments-worker"]


@pytest.mark.parametrize(
    "args",
    [["doctor"], ["--version"], ["--help"], ["ping", "--help"]],
    ids=["doctor", "version", "help", "ping-help"],
)
def test_a_reader_that_stops_early_ends_the_output_quietly(args: list[str]) -> None:
    """`opshift doctor | head -1`: with stdout's reader gone, 141 as SIGPIPE, no traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}
    env.pop("PYTHONUNBUFFERED", None)  # buffered, as usual: the last flush meets the pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "opshift", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")
