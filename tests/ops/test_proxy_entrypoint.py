"""The front door's entrypoint, run natively with this host's sh and openssl against folders
of its own: which certificate it picks, what it refuses, and the configuration it writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from settings import PROJECT_ROOT

ENTRYPOINT = PROJECT_ROOT / "ops" / "packaging" / "docker" / "proxy" / "entrypoint.sh"
TEMPLATE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "proxy" / "nginx.conf.template"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def run_entrypoint(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint with `true` as its command, so it stops after writing the config."""
    env = {
        "PATH": os.environ["PATH"],
        "PROXY_TLS_DIR": str(tmp_path / "tls"),
        "PROXY_STATE_DIR": str(tmp_path / "state"),
        "PROXY_TEMPLATE": str(TEMPLATE),
        "PROXY_CONFIG": str(tmp_path / "nginx.conf"),
        **environment,
    }
    (tmp_path / "tls").mkdir(exist_ok=True)
    (tmp_path / "state").mkdir(exist_ok=True)
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "true"], capture_output=True, text=True, env=env, timeout=60
    )


def logged(result: subprocess.CompletedProcess[str], event: str) -> dict[str, str]:
    for line in result.stderr.splitlines():
        if line.startswith("{") and json.loads(line)["event"] == event:
            return dict(json.loads(line))
    raise AssertionError(f"no {event} line in {result.stderr!r}")


def fingerprint(certificate: Path) -> str:
    shown = subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shown.stdout.strip().split("=", 1)[1]


def make_certificate(folder: Path, name: str) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "30", "-subj", f"/CN={name}",
         "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
        capture_output=True, check=True,
    )  # fmt: skip


def test_without_a_certificate_it_makes_one_logs_its_fingerprint_and_keeps_it(
    tmp_path: Path,
) -> None:
    first = run_entrypoint(tmp_path, SERVER_NAME="rag.example.internal")
    assert first.returncode == 0, first.stderr
    certificate = tmp_path / "state" / "self-signed.crt"
    shown = logged(first, "tls_certificate")
    assert shown["source"] == "self-signed"
    assert shown["sha256"] == fingerprint(certificate)
    assert logged(first, "tls_certificate_created")["name"] == "rag.example.internal"
    assert (tmp_path / "state" / "self-signed.key").stat().st_mode & 0o077 == 0

    again = run_entrypoint(tmp_path, SERVER_NAME="rag.example.internal")
    assert "tls_certificate_created" not in again.stderr
    assert logged(again, "tls_certificate")["sha256"] == shown["sha256"]

    renamed = run_entrypoint(tmp_path, SERVER_NAME="docs.example.internal")
    assert logged(renamed, "tls_certificate")["sha256"] != shown["sha256"]


def test_the_operators_certificate_is_used_when_both_files_are_there(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    make_certificate(tmp_path / "tls", "rag.example.internal")
    result = run_entrypoint(tmp_path)
    assert result.returncode == 0, result.stderr
    shown = logged(result, "tls_certificate")
    assert shown["source"] == "supplied"
    assert shown["sha256"] == fingerprint(tmp_path / "tls" / "tls.crt")
    config = (tmp_path / "nginx.conf").read_text()
    assert f"ssl_certificate     {tmp_path}/tls/tls.crt;" in config
    assert not (tmp_path / "state" / "self-signed.crt").exists()


def test_half_a_certificate_or_a_key_of_another_is_refused_with_what_to_do(
    tmp_path: Path,
) -> None:
    (tmp_path / "tls").mkdir()
    make_certificate(tmp_path / "tls", "one")
    (tmp_path / "tls" / "tls.key").unlink()
    half = run_entrypoint(tmp_path)
    assert half.returncode == 1 and "tls.key is missing" in half.stderr

    other = tmp_path / "other"
    other.mkdir()
    make_certificate(other, "two")
    shutil.copy(other / "tls.key", tmp_path / "tls" / "tls.key")
    mismatched = run_entrypoint(tmp_path)
    assert mismatched.returncode == 1 and "is not the private key of" in mismatched.stderr


def test_the_written_config_fills_every_placeholder_from_the_environment(
    tmp_path: Path,
) -> None:
    result = run_entrypoint(
        tmp_path, PUBLIC_HTTPS_PORT="8443", MAX_BODY_BYTES="2000000",
        UI_UPSTREAM="ui-test:9501", API_UPSTREAM="api-test:9600",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "nginx.conf").read_text()
    assert not re.search(r"@[A-Z_]+@", config)
    assert "return 301 https://$host:8443$request_uri;" in config
    assert "client_max_body_size 2000000;" in config
    assert "set $ui_upstream ui-test:9501;" in config
    assert "set $api_upstream api-test:9600;" in config


def test_the_redirect_names_no_port_when_https_is_on_443(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, PUBLIC_HTTPS_PORT="443")
    assert result.returncode == 0, result.stderr
    assert "return 301 https://$host$request_uri;" in (tmp_path / "nginx.conf").read_text()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("UI_UPSTREAM", "ui; evil"), ("MAX_BODY_BYTES", "1m"), ("SERVER_NAME", "a b"),
     ("PUBLIC_HTTPS_PORT", "443;")],
)  # fmt: skip
def test_a_value_that_could_bend_the_config_is_refused(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = run_entrypoint(tmp_path, **{variable: value})
    assert result.returncode == 1 and variable in result.stderr
    assert not (tmp_path / "nginx.conf").exists()
