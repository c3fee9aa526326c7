"""`opshift doctor`: one line per check, ok or the fix, against loopback servers only."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from opshift.cli._doctor import Check
from opshift.testing import OpShiftServer

from . import faultserver as fs
from .helpers import (
    SECRET,
    Certificate,
    InProcess,
    refused_url,
)
from .proxyserver import ProxyServer

PROXY_VARIABLES = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> InProcess:
    """The CLI in-process, with no proxy in the environment unless a test sets one."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return InProcess(monkeypatch)


@pytest.fixture
def tls_server(certificate: Certificate) -> Iterator[OpShiftServer]:
    """A local OpShift over https with a self-signed certificate no system CA trusts."""
    with OpShiftServer(SECRET, ssl_context=certificate.server_context()) as server:
        yield server


def checks(cli: InProcess, *args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run `opshift doctor --json`; return the exit status and the checks by name."""
    done = cli("doctor", "--json", *args, env=env)
    listed = json.loads(done.stdout)
    assert all(set(item) == {"check", "ok", "detail", "fix"} for item in listed)
    return done.returncode, {item["check"]: item for item in listed}


def test_doctor_passes_against_the_local_server(cli: InProcess, server: OpShiftServer) -> None:
    """Every check passes over http; one line each; no ping or alert is sent."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url}
    done = cli("doctor", env=env)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    names = [line.split()[1].rstrip(":") for line in lines]
    assert names == ["disabled", "secret", "base_url", "proxy", "dns", "tcp", "tls", "http",
                     "clock"]  # fmt: skip
    assert all(line.startswith("ok    ") for line in lines)
    assert f"{server.url} (from OPSHIFT_BASE_URL)" in done.stdout
    assert "from OPSHIFT_SECRET (not shown)" in done.stdout
    assert [(r.method, r.path) for r in server.requests] == [("HEAD", "/")]  # no ping or alert
    assert SECRET not in done.stdout


def test_doctor_names_a_base_url_flag(cli: InProcess, server: OpShiftServer) -> None:
    """--base-url wins and the check says so."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": refused_url()}
    code, found = checks(cli, "--base-url", server.url, env=env)
    assert code == 0
    assert found["base_url"]["detail"] == f"{server.url} (from --base-url)"


def test_doctor_reports_a_bad_secret_without_showing_it(
    cli: InProcess, server: OpShiftServer
) -> None:
    """A malformed secret fails its check with a fix, names OPSHIFT_SECRET, and stays hidden."""
    bad = SECRET[:40] + "zz"
    code, found = checks(cli, env={"OPSHIFT_SECRET": bad, "OPSHIFT_BASE_URL": server.url})
    assert code == 1
    assert found["secret"]["ok"] is False
    assert "OPSHIFT_SECRET" in found["secret"]["detail"]
    assert found["secret"]["fix"]
    assert found["clock"]["ok"] is True  # the rest still ran
    assert bad not in json.dumps(found) and bad[:8] not in json.dumps(found)


@pytest.mark.parametrize("quote", ['"', "'"])
def test_doctor_says_a_quoted_secret_is_quoted(
    cli: InProcess, server: OpShiftServer, quote: str
) -> None:
    """A secret pasted with its quotes is named as quoted, with the fix to remove them."""
    env = {"OPSHIFT_SECRET": f"{quote}{SECRET}{quote}", "OPSHIFT_BASE_URL": server.url}
    done = cli("doctor", env=env)
    assert done.returncode == 1
    line = next(line for line in done.stdout.splitlines() if " secret: " in line)
    assert line.startswith("FAIL  secret: OPSHIFT_SECRET is wrapped in quotes"), line
    assert "remove the quotes" in line
    assert ".;" not in line and SECRET not in done.stdout and SECRET[:8] not in done.stdout
    code, found = checks(cli, env=env)
    assert code == 1
    assert "quotes" in found["secret"]["detail"]
    assert "remove the quotes" in found["secret"]["fix"]


def test_a_failed_check_line_has_no_stray_punctuation() -> None:
    """A detail ending in a full stop is joined to its fix without ".;"."""
    check = Check("secret", False, "this one has 66 characters.", "set it")
    assert check.line() == "FAIL  secret: this one has 66 characters; fix: set it"


def test_doctor_reports_a_missing_secret_and_disabled(
    cli: InProcess, server: OpShiftServer
) -> None:
    """No secret and OPSHIFT_DISABLED each fail with what to do."""
    env = {"OPSHIFT_DISABLED": "1", "OPSHIFT_BASE_URL": server.url}
    code, found = checks(cli, env=env)
    assert code == 1
    assert found["secret"]["detail"] == "OPSHIFT_SECRET is not set"
    assert "unset OPSHIFT_DISABLED" in found["disabled"]["fix"]


def test_doctor_reports_a_refused_port(cli: InProcess) -> None:
    """A refused connection fails the tcp check, and the steps after it are not run."""
    url = refused_url()
    done = cli("doctor", env={"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": url})
    assert done.returncode == 1
    assert f"FAIL  tcp: {url[7:]} refused the connection" in done.stdout
    assert "fix: check the port" in done.stdout
    assert done.stdout.splitlines()[-1].endswith("tls, http, clock")


def test_doctor_reports_a_bad_base_url(cli: InProcess) -> None:
    """A base_url that is not a URL fails its check, naming where it came from."""
    code, found = checks(cli, env={"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": "www.x.io"})
    assert code == 1
    assert "(from OPSHIFT_BASE_URL)" in found["base_url"]["detail"]
    assert "dns" not in found


def test_doctor_reports_an_untrusted_certificate(cli: InProcess, tls_server: OpShiftServer) -> None:
    """A self-signed certificate fails the tls check, and the fix is to trust a private CA."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": tls_server.url}
    code, found = checks(cli, env=env)
    assert code == 1
    assert found["tcp"]["ok"] is True
    assert found["tls"]["ok"] is False
    assert "not trusted" in found["tls"]["detail"]
    assert "SSL_CERT_FILE" in found["tls"]["fix"]
    assert "private CA" in found["tls"]["fix"]


def test_doctor_trusts_a_ca_from_ssl_cert_file(
    cli: InProcess, tls_server: OpShiftServer, certificate: Certificate
) -> None:
    """With SSL_CERT_FILE naming the CA, the handshake passes and says which CAs it used."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": tls_server.url,
           "SSL_CERT_FILE": certificate.cert}  # fmt: skip
    code, found = checks(cli, env=env)
    assert code == 0, found
    assert f"verified by SSL_CERT_FILE={certificate.cert}" in found["tls"]["detail"]


def test_doctor_shows_the_proxy_without_its_password(cli: InProcess, server: OpShiftServer) -> None:
    """The proxy that applies is named with its variable, its password never shown."""
    with ProxyServer() as proxy:
        host, port = "127.0.0.1", proxy.port
        env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url,
               "HTTP_PROXY": f"http://ops:s3cr3t-pw@{host}:{port}"}  # fmt: skip
        code, found = checks(cli, env=env)
    assert code == 0, found
    assert found["proxy"]["detail"] == f"http://ops:***@{host}:{port} (from HTTP_PROXY)"
    assert found["dns"]["detail"].startswith(f"the proxy's host {host} resolves")
    assert found["tcp"]["detail"].startswith(f"connected to the proxy {host}:{port} in ")
    assert "s3cr3t-pw" not in json.dumps(found)
    line, authorization = proxy.seen[0]
    assert line.startswith(f"HEAD {server.url}/ ")
    assert authorization == "Basic " + base64.b64encode(b"ops:s3cr3t-pw").decode()


def test_doctor_tunnels_tls_through_the_proxy(
    cli: InProcess, tls_server: OpShiftServer, certificate: Certificate
) -> None:
    """For https, the handshake runs through the proxy's CONNECT tunnel, with the CA given."""
    with ProxyServer() as proxy:
        env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": tls_server.url,
               "HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": certificate.cert}  # fmt: skip
        code, found = checks(cli, env=env)
    assert code == 0, found
    assert found["proxy"]["detail"] == f"{proxy.url} (from HTTPS_PROXY)"
    assert proxy.seen[0][0].startswith(f"CONNECT {tls_server.url[8:]} ")


def test_doctor_honours_no_proxy(cli: InProcess, server: OpShiftServer) -> None:
    """NO_PROXY covering base_url's host means direct, and the check says so."""
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url,
           "HTTP_PROXY": refused_url(), "NO_PROXY": "127.0.0.1"}  # fmt: skip
    code, found = checks(cli, env=env)
    assert code == 0, found
    assert found["proxy"]["detail"].startswith("none: NO_PROXY covers")


def test_doctor_reports_a_name_that_does_not_resolve(
    cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DNS failure fails the dns check with the fix (the lookup is faked: no network)."""

    def no_such_host(*args: object, **kwargs: object) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": "https://opshift.invalid"}
    code, found = checks(cli, env=env)
    assert code == 1
    assert found["dns"]["detail"].startswith("opshift.invalid does not resolve")
    assert "host name in base_url" in found["dns"]["fix"]


@pytest.mark.parametrize(
    ("date", "ok"),
    [
        pytest.param("Mon, 01 Jan 2001 00:00:00 GMT", False, id="far-behind"),
        pytest.param(None, True, id="no-date"),
        pytest.param("soon", True, id="not-a-date"),
    ],
)
def test_doctor_compares_the_clocks(date: str | None, ok: bool) -> None:
    """Past 60 s of skew the clock check fails with an NTP fix; no usable Date is not a fault."""
    from opshift.cli import _doctor

    check = _doctor.clock_check(date)
    assert isinstance(check, Check)
    assert check.ok is ok
    assert ("NTP" in (check.fix or "")) is not ok


@pytest.mark.parametrize(
    ("answer", "fix"),
    [
        pytest.param(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", "proxy's user and password", id="407"),
        pytest.param(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "try again later", id="503"),
        pytest.param(b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\nContent-Length: 0\r\n\r\n", "set base_url to https://elsewhere.example", id="redirect"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_opshifts_is_a_failed_http_check_with_its_fix(
    cli: InProcess, answer: bytes, fix: str
) -> None:
    """A 407, a 503 or a redirect elsewhere fails the http check, saying what to do."""
    with fs.FaultServer([fs.respond(answer)]) as server:
        status, found = checks(cli, env={"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url})
    assert status == 1
    assert found["http"]["ok"] is False
    assert fix in found["http"]["fix"]


def test_a_server_that_hangs_up_is_a_failed_http_check(cli: InProcess) -> None:
    """No answer at all to HEAD: the http check fails and says so."""
    with fs.FaultServer([fs.respond(b"")]) as server:
        status, found = checks(cli, env={"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url})
    assert status == 1
    assert "got no answer" in found["http"]["detail"]


def test_https_to_a_port_that_speaks_http_fails_the_tls_check(cli: InProcess) -> None:
    """base_url says https but the port answers plain HTTP: the handshake fails, with a fix."""
    with fs.FaultServer([fs.respond(b"HTTP/1.1 400 Bad Request\r\n\r\n")]) as server:
        url = server.url.replace("http://", "https://")
        status, found = checks(cli, env={"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": url})
    assert status == 1
    assert found["tls"]["ok"] is False
    assert "serves https" in found["tls"]["fix"]


def test_a_certificate_for_another_name_is_named_as_such(
    cli: InProcess, tls_server: OpShiftServer, certificate: Certificate
) -> None:
    """Trusted CA, wrong host name (localhost vs 127.0.0.1): the fix says use the cert's name."""
    url = tls_server.url.replace("127.0.0.1", "localhost")
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": url, "SSL_CERT_FILE": certificate.cert}
    status, found = checks(cli, env=env)
    assert status == 1
    assert found["tls"]["ok"] is False
    assert "host name the certificate names" in found["tls"]["fix"]


def test_a_bad_opshift_disabled_and_a_socks_proxy_are_reported(
    cli: InProcess, server: OpShiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPSHIFT_DISABLED=ture and HTTP_PROXY=socks5://... each fail their check with a fix."""
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    env = {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url, "OPSHIFT_DISABLED": "ture"}
    status, found = checks(cli, env=env)
    assert status == 1
    assert found["disabled"]["fix"] == "unset OPSHIFT_DISABLED"
    assert found["proxy"]["ok"] is False
    assert "socks5:// proxy" in found["proxy"]["detail"]
