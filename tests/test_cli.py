"""The `opshift` command against the local server: in-process, and as a real subprocess."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from opshift.cli import build_parser, main
from opshift.cli._outbox import format_age
from opshift.cli._parser import Choices
from opshift.testing import OpShiftServer

from .helpers import SECRET, InProcess, last_body, opshift, refused_url, server_env


def test_ping_prints_the_response(cli: InProcess, server: OpShiftServer) -> None:
    """`opshift ping` sends every flag as a field and prints OpShift's JSON answer."""
    done = cli("ping", "payments-worker", "--status", "down", "--reason", "disk full",
                   "--group-key", "disks", "--metadata", '{"free": 0}', env=server_env(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pingStatus"] == "down"
    assert json.loads(done.stdout)["message"] == "First ping received \u2014 monitoring started"
    assert done.stderr == ""
    assert (
        server.requests[-1].body
        == b'{"status":"down","reason":"disk full","group_key":"disks","metadata":{"free":0}}'
    )


def test_console_script_and_quiet(server: OpShiftServer) -> None:
    """The installed `opshift` script works and --quiet prints nothing on success."""
    done = opshift("ping", "payments-worker", "--quiet", env=server_env(server), script=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert server.requests[-1].body == b""


def test_alert(cli: InProcess, server: OpShiftServer) -> None:
    """`opshift alert` sends title, description and severity and prints the answer."""
    done = cli("alert", "deploy-failures", "--title", "Deploy failed", "--severity", "sev1",
                   "--description", "exit 137", env=server_env(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "created"
    assert last_body(server) == {
        "title": "Deploy failed",
        "description": "exit 137",
        "severity": "sev1",
    }


def test_base_url_flag_overrides_the_environment(cli: InProcess, server: OpShiftServer) -> None:
    """--base-url wins over OPSHIFT_BASE_URL."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": refused_url()}
    done = cli("ping", "payments-worker", "--base-url", server.url, "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == 1


def test_api_error_exits_1_with_one_line(cli: InProcess, server: OpShiftServer) -> None:
    """An API error exits 1 with one line on stderr naming the status and OpShift's text."""
    done = cli("ping", "no-such-monitor", env=server_env(server))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("opshift: error: 404 Not Found: Ping token not found.")
    assert done.stderr.count("\n") == 1
    assert SECRET not in done.stderr


def test_network_error_exits_1(cli: InProcess) -> None:
    """An unreachable OpShift exits 1 and says the connection was refused."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": refused_url()}
    done = cli("ping", "w", "--timeout", "5", env=env)
    assert done.returncode == 1
    assert "connection refused" in done.stderr


def test_missing_secret_exits_2(cli: InProcess) -> None:
    """Without OPSHIFT_SECRET the CLI exits 2 and names the variable."""
    done = cli("ping", "w")
    assert done.returncode == 2
    assert "OPSHIFT_SECRET" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["ping", "w", "--metadata", "{oops"], "argument --metadata: invalid JSON", id="bad-json"
        ),
        pytest.param(
            ["ping", "w", "--metadata", "[1]"],
            "argument --metadata: must be a JSON object",
            id="not-object",
        ),
        pytest.param(
            ["ping", "w", "--status", "sideways"], "argument --status: invalid choice", id="status"
        ),
        pytest.param(
            ["alert", "h", "--title", "t", "--severity", "sev9"],
            "argument --severity",
            id="severity",
        ),
        pytest.param(["alert", "h"], "--title", id="no-title"),
        pytest.param(["ping", "w", "--timeout", "0"], "argument --timeout", id="timeout"),
        pytest.param(["run", "w"], "run needs a command", id="run-no-command"),
        pytest.param([], "COMMAND", id="no-command"),
    ],
)
def test_usage_errors_exit_2(cli: InProcess, args: list[str], message: str) -> None:
    """Each usage mistake exits 2 with argparse's message naming the argument."""
    done = cli(*args, env={"OPSHIFT_SECRET": SECRET})
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize("command", ["ping", "alert", "run", "demo"])
def test_help_has_an_example(cli: InProcess, command: str) -> None:
    """Every subcommand's --help ends with runnable examples."""
    done = cli(command, "--help")
    assert done.returncode == 0
    assert "examples:" in done.stdout
    assert f"opshift {command}" in done.stdout


def test_run_success_pings_up_and_streams_output(server: OpShiftServer) -> None:
    """`opshift run` streams the command's output through and pings up with its stderr tail."""
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    done = opshift(
        "run", "payments-worker", "--", sys.executable, "-c", code, env=server_env(server)
    )
    assert done.returncode == 0
    assert done.stdout == "to stdout\n"
    assert done.stderr == "to stderr\n"
    body = last_body(server)
    assert body["status"] == "up"
    assert "reason" not in body
    assert body["metadata"]["exitCode"] == 0
    assert body["metadata"]["stderrTail"] == "to stderr"
    assert isinstance(body["metadata"]["durationMs"], int)


def test_run_failure_pings_down_and_keeps_the_exit_code(server: OpShiftServer) -> None:
    """A failing command pings down with its last 20 stderr lines; opshift exits with its code."""
    code = "import sys; [print(f'line {n}', file=sys.stderr) for n in range(100)]; sys.exit(3)"
    done = opshift("run", "payments-worker", sys.executable, "-c", code, env=server_env(server))
    assert done.returncode == 3
    assert done.stderr.count("\n") == 100
    body = last_body(server)
    assert body["status"] == "down"
    assert body["reason"] == "exit code 3"
    assert body["metadata"]["exitCode"] == 3
    assert body["metadata"]["stderrTail"].splitlines() == [f"line {n}" for n in range(80, 100)]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_signal_death(server: OpShiftServer) -> None:
    """A command killed by a signal exits 128+N and pings down naming the signal."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    done = opshift(
        "run", "payments-worker", "--", sys.executable, "-c", code, env=server_env(server)
    )
    assert done.returncode == 128 + signal.SIGTERM
    assert last_body(server)["reason"] == "killed by signal SIGTERM"


def test_run_exit_status_survives_an_unreachable_opshift() -> None:
    """With OpShift unreachable, `opshift run` still exits with the command's status."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": refused_url()}
    done = opshift(
        "run", "w", "--timeout", "5", "--", sys.executable, "-c", "raise SystemExit(3)", env=env
    )
    assert done.returncode == 3
    assert "could not report the run to OpShift" in done.stderr


def test_run_exit_status_survives_a_missing_secret() -> None:
    """With no secret, `opshift run` still runs the command and says why nothing was sent."""
    done = opshift("run", "w", "--", sys.executable, "-c", "print('ran')")
    assert done.returncode == 0
    assert done.stdout == "ran\n"
    assert "OPSHIFT_SECRET" in done.stderr


def test_run_command_not_found(server: OpShiftServer) -> None:
    """A missing program exits 127 and pings down saying so."""
    done = opshift("run", "payments-worker", "--", "/no/such/program", env=server_env(server))
    assert done.returncode == 127
    assert last_body(server)["reason"] == "command not found: /no/such/program"


def test_demo_runs_without_an_account(cli: InProcess) -> None:
    """`opshift demo` pings and alerts an embedded OpShift and shows the signatures it checked."""
    done = cli("demo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "X-Webhook-Signature:" in out
    assert '<- 200 {"message": "First ping received \u2014 monitoring started"' in out
    assert '"status": "occurrence_added"' in out
    assert "raised AuthenticationError: 401 Unauthorized" in out
    assert "The server checked 5 signatures: 4 valid." in out
    assert "openssl dgst -sha256 -hmac" in out


def _queue(path: Path, count: int) -> None:
    """Put ``count`` alerts and one down ping in an outbox file without delivering them."""
    from opshift import OpShift, Outbox

    outbox = Outbox(OpShift(SECRET, base_url=refused_url()), path, background=False)
    for n in range(count):
        outbox.alert("deploy-failures", title=f"t{n}")
    outbox.ping("payments-worker", status="down")
    outbox.close(0)


def test_outbox_lists_what_waits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`opshift outbox PATH` shows counts per kind and destination and the oldest age."""
    path = tmp_path / "o.sqlite3"
    _queue(path, 3)
    assert main(["outbox", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 4 item(s) waiting"
    assert out[1].split() == ["kind", "destination", "count", "oldest"]
    assert out[2].split()[:3] == ["alert", "/api/alerts/trigger/deploy-failures", "3"]
    assert out[3].split()[:3] == ["ping", "/api/ping/payments-worker", "1"]
    assert out[2].split()[3].endswith("s")


def test_outbox_flush_delivers_and_exits_0_when_empty(
    server: OpShiftServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """--flush sends everything, prints what happened, and exits 0 with nothing left."""
    path = tmp_path / "o.sqlite3"
    _queue(path, 2)
    for name, value in server_env(server).items():
        monkeypatch.setenv(name, value)
    assert main(["outbox", str(path), "--flush", "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert "delivered 3; dropped 0 rejected by OpShift and 0 expired" in out
    assert f"{path}: 0 item(s) waiting" in out
    assert len(server.requests) == 3
    assert all(r.signature_valid for r in server.requests)


def test_outbox_flush_exits_1_when_items_are_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpShift unreachable: exit 1, and with -q only what is left is printed, on stderr."""
    path = tmp_path / "o.sqlite3"
    _queue(path, 1)
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    monkeypatch.setenv("OPSHIFT_BASE_URL", refused_url())
    assert main(["outbox", str(path), "--flush", "-q", "--timeout", "0.5"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}: 2 item(s) waiting" in captured.err


def test_outbox_without_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped path is a usage error, and no file is created for it."""
    path = tmp_path / "nope.sqlite3"
    assert main(["outbox", str(path)]) == 2
    assert "no outbox file" in capsys.readouterr().err
    assert not path.exists()


def test_outbox_flush_says_when_opshift_is_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OPSHIFT_DISABLED the flush sends nothing, says why, and exits 1."""
    path = tmp_path / "o.sqlite3"
    _queue(path, 1)
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    assert main(["outbox", str(path), "--flush"]) == 1
    assert "OpShift is disabled" in capsys.readouterr().err


def test_ping_with_opshift_disabled_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI honours OPSHIFT_DISABLED: no secret needed, a note on stderr, exit 0."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "yes")
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)
    assert main(["ping", "payments-worker", "--status", "down"]) == 0
    captured = capsys.readouterr()
    assert "OpShift is disabled" in captured.err
    assert json.loads(captured.out)["message"] == "OpShift disabled"


def test_outbox_listing_only_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Listing works on a read-only file and changes nothing in it."""
    path = tmp_path / "o.sqlite3"
    _queue(path, 2)
    for name in os.listdir(tmp_path):
        os.chmod(tmp_path / name, 0o400)
    before = path.read_bytes()
    try:
        assert main(["outbox", str(path)]) == 0
    finally:
        for name in os.listdir(tmp_path):
            os.chmod(tmp_path / name, 0o600)
    assert f"{path}: 3 item(s) waiting" in capsys.readouterr().out
    assert path.read_bytes() == before
    empty = tmp_path / "new.sqlite3"
    empty.touch()
    assert main(["outbox", str(empty)]) == 0  # a read-write open would have made tables
    assert f"{empty}: 0 item(s) waiting" in capsys.readouterr().out
    assert empty.stat().st_size == 0


def test_outbox_listing_refuses_a_file_that_is_not_an_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pointing `opshift outbox` at another file is a usage error, not a traceback."""
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert main(["outbox", str(path)]) == 2
    assert "Cannot use" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(42.9, "42s"), (312, "5m12s"), (3 * 3600 + 240, "3h04m"), (2 * 86400 + 3 * 3600, "2d03h")],
)
def test_outbox_ages_read_at_a_glance(seconds: float, shown: str) -> None:
    """The oldest item's age is shown in the largest units that fit."""
    assert format_age(seconds) == shown


def test_run_permission_denied(server: OpShiftServer, tmp_path: Path) -> None:
    """A file that is not executable exits 126 and pings down saying so."""
    script = tmp_path / "backup.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    done = opshift("run", "payments-worker", "--", str(script), env=server_env(server))
    assert done.returncode == 126
    assert last_body(server)["reason"] == f"permission denied: {script}"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_passes_sigterm_on_to_the_command(server: OpShiftServer) -> None:
    """SIGTERM to `opshift run` reaches the command, whose death is reported and returned."""
    code = "import sys, time; print('ready', flush=True); time.sleep(30)"
    command = [sys.executable, "-m", "opshift", "run", "payments-worker", "--", sys.executable]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}}
    env.update(server_env(server))
    with subprocess.Popen(
        [*command, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 128 + signal.SIGTERM
    assert last_body(server)["reason"] == "killed by signal SIGTERM"


def test_demo_says_when_opshift_is_disabled(cli: InProcess) -> None:
    """With OPSHIFT_DISABLED the demo would send nothing, so it says so instead."""
    done = cli("demo", env={"OPSHIFT_DISABLED": "1"})
    assert done.returncode == 0
    assert "OpShift is disabled" in done.stderr
    assert done.stdout == ""


def test_the_cli_metavars_list_the_enum_values_it_accepts() -> None:
    """The CLI names --status and --severity values in its metavars; they match types.py."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for command in commands.choices.values():
        for action in command._actions:
            if isinstance(action.choices, Choices):
                assert action.metavar == "{" + ",".join(action.choices) + "}"
                checked += 1
    assert checked == 2
