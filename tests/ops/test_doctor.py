"""`rag doctor`: one check per offline switch, model folder, service, the egress rules and the
modes of the state files; each failure mode as an operator meets it, through the real command."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops.health import host_locality
from settings import OFFLINE_ENVIRONMENT
from tests.airgap.egress import STRACE_OPTIONS, judge_log
from tests.conftest import RAG, free_port, make_settings
from tests.ops.test_cli import rag

PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No RAG_ settings, no proxies, a private data dir, an LLM port nothing listens on."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k.upper() not in PROXIES
    }
    env["RAG_DATA_DIR"] = str(tmp_path / "data")
    env["RAG_LLM__PORT"] = str(free_port())
    env["RAG_UI__PORT"] = str(free_port())
    return env


def doctor(env: dict[str, str], prefix: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [*prefix, str(RAG), "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert set(report) == {"ok", "checks"}
    for check in report["checks"]:
        assert set(check) == {"name", "ok", "detail"}, check
    return {check["name"]: check for check in report["checks"]}


def hostile(value: str) -> str:
    return {"1": "0", "true": "false", "false": "true"}.get(value, "debug")


@pytest.mark.parametrize("environment", ["unset", "contrary"])
def test_every_offline_switch_is_forced_whatever_the_environment_says(
    env: dict[str, str], environment: str
) -> None:
    for name, value in OFFLINE_ENVIRONMENT.items():
        env.pop(name, None)
        if environment == "contrary":
            env[name] = hostile(value)
    _, report = doctor(env)
    checks = by_name(report)
    switches = {name.removeprefix("offline:") for name in checks if name.startswith("offline:")}
    assert switches == set(OFFLINE_ENVIRONMENT)
    for name, value in OFFLINE_ENVIRONMENT.items():
        check = checks[f"offline:{name}"]
        assert check["ok"] and f"{name}={value}" in check["detail"], check
    assert checks["offline_switches"]["ok"], checks["offline_switches"]
    assert checks["egress"]["ok"], checks["egress"]
    assert "ui" not in checks  # not running: not reported


def test_a_public_address_in_the_llm_url_fails_and_is_never_contacted(
    env: dict[str, str], tmp_path: Path
) -> None:
    if shutil.which("unshare") is None or shutil.which("strace") is None:
        pytest.fail("this test needs unshare and strace; run `make setup`")
    store_port = free_port()  # nothing listens: doctor's store check must try it, locally
    env["RAG_LLM__BASE_URL"] = "http://1.1.1.1:8000/v1"
    env["RAG_QDRANT__URL"] = f"http://127.0.0.1:{store_port}"
    log = tmp_path / "doctor.strace"
    prefix = ("unshare", "--net", "--", "strace", *STRACE_OPTIONS, "-o", str(log))
    code, report = doctor(env, prefix)
    checks = by_name(report)
    assert code == 1 and report["ok"] is False
    egress = checks["egress"]
    assert not egress["ok"]
    assert "RAG_LLM__BASE_URL: 1.1.1.1 is a public address" in egress["detail"]
    assert "RAG_QDRANT__URL" not in egress["detail"]  # the loopback store is fine
    assert not checks["llm_server"]["ok"] and "not contacted" in checks["llm_server"]["detail"]
    verdict = judge_log(log)
    assert not verdict.offending, verdict.report()
    assert store_port in verdict.loopback_ports()  # the trace does see what doctor contacts


def test_a_dotted_host_name_cannot_be_proved_local_and_fails(env: dict[str, str]) -> None:
    env["RAG_QDRANT__URL"] = "http://qdrant.example.com:6333"
    code, report = doctor(env)
    checks = by_name(report)
    assert code == 1
    detail = checks["egress"]["detail"]
    assert "RAG_QDRANT__URL: qdrant.example.com cannot be proved local" in detail
    assert ".internal" in detail  # says what to use instead
    assert not checks["store"]["ok"] and "not contacted" in checks["store"]["detail"]


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.20.30.40", True),
        ("192.168.1.5", True),
        ("fd12:3456::1", True),
        ("169.254.10.1", True),
        ("localhost", True),
        ("qdrant", True),
        ("vllm", True),
        ("llm.internal", True),
        ("files.corp", True),
        ("nas.home.arpa", True),
        ("printer.local", True),
        ("8.8.8.8", False),
        ("::ffff:8.8.8.8", False),
        ("2a00:1450:4001::1", False),
        ("100.64.0.1", False),
        ("api.openai.com", False),
        ("vllm.mycompany.eu", False),
        ("", False),
    ],
)
def test_hosts_are_judged_local_without_a_name_lookup(host: str, local: bool) -> None:
    assert host_locality(host)[0] is local, host_locality(host)


def test_a_proxy_variable_fails_egress_without_showing_its_credentials(
    env: dict[str, str],
) -> None:
    env["https_proxy"] = "http://alice:s3cret@proxy.corp:3128"
    code, report = doctor(env)
    egress = by_name(report)["egress"]
    assert code == 1 and not egress["ok"]
    assert "https_proxy is set (proxy proxy.corp)" in egress["detail"]
    assert "s3cret" not in json.dumps(report) and "alice" not in json.dumps(report)


def test_missing_model_folders_fail_each_with_its_path(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "reranker"
    empty.mkdir()
    env["RAG_EMBEDDER__MODEL_DIR"] = str(tmp_path / "no-embedder")
    env["RAG_LLM__MODEL_DIR"] = str(tmp_path / "no-llm")
    env["RAG_RETRIEVAL__RERANKER_DIR"] = str(empty)
    code, report = doctor(env)
    checks = by_name(report)
    assert code == 1
    for name, folder in (("embedder_model", "no-embedder"), ("llm_model", "no-llm"),
                         ("reranker_model", "reranker")):  # fmt: skip
        assert not checks[name]["ok"], checks[name]
        assert str(tmp_path / folder) in checks[name]["detail"]
        assert "make setup" in checks[name]["detail"]


def test_a_missing_ocr_language_fails_naming_it(env: dict[str, str]) -> None:
    env["RAG_OCR__LANGUAGES"] = "eng+tlh"
    code, report = doctor(env)
    check = by_name(report)["ocr_languages"]
    assert code == 1 and not check["ok"]
    assert "tlh" in check["detail"] and "eng" not in check["detail"].split(":")[1]


def test_a_ui_that_runs_but_does_not_answer_fails(env: dict[str, str], tmp_path: Path) -> None:
    run_dir = tmp_path / "data" / "run"
    run_dir.mkdir(parents=True)
    silent = subprocess.Popen(["sleep", "120"])  # a live process where the UI should be
    try:
        (run_dir / "ui.pid").write_text(f"{silent.pid}\n")
        code, report = doctor(env)
    finally:
        silent.kill()
        silent.wait()
    check = by_name(report)["ui"]
    assert code == 1 and not check["ok"]
    assert f"127.0.0.1:{env['RAG_UI__PORT']}" in check["detail"] and "rag up" in check["detail"]


def test_a_state_file_open_to_other_accounts_fails_and_the_command_it_names_closes_it(
    env: dict[str, str],
) -> None:
    data = Path(env["RAG_DATA_DIR"])
    added = rag(env, "users", "add", "alice", "--json", stdin="alice-password\n")
    assert added.returncode == 0, added.stderr
    users = data / "users.sqlite3"
    users.chmod(0o644)  # as an older version left it: any local account reads the hashes

    code, report = doctor(env)

    check = by_name(report)["file_modes"]
    assert code == 1 and not check["ok"]
    assert f"{users} (0644)" in check["detail"] and "1 of " in check["detail"]
    fix = re.search(r"`(chmod [^`]+)`", check["detail"])
    assert fix is not None and fix.group(1) == f"chmod -R go-rwx {data}"
    subprocess.run(shlex.split(fix.group(1)), check=True)
    _, after = doctor(env)
    assert by_name(after)["file_modes"]["ok"], by_name(after)["file_modes"]


def test_a_backup_key_other_accounts_can_read_fails_naming_the_command_that_closes_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    key = tmp_path / "backup.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    env["RAG_BACKUP__KEY_FILE"] = str(key)

    _, report = doctor(env)

    check = by_name(report)["backup_key"]
    assert not check["ok"] and f"`chmod 0400 {key}`" in check["detail"]
    key.chmod(0o400)
    _, after = doctor(env)
    assert by_name(after)["backup_key"]["ok"], by_name(after)["backup_key"]


def test_the_directory_check_never_contacts_a_server_it_cannot_prove_inside(
    tmp_path: Path,
) -> None:
    from ops.health import check_identity

    ldap = {"url": "ldaps://10.1.2.3:636 ldaps://dc1.example.com:636"}
    settings = make_settings(tmp_path, identity={"provider": "ldap", "ldap": ldap})
    check = check_identity(settings)  # a connection would raise NetworkBlocked here
    assert check["name"] == "identity_ldap" and not check["ok"]
    assert check["detail"].startswith("not contacted: dc1.example.com cannot be proved local")
