"""What `rag doctor` and `rag status` check: offline switches, models, services, OCR, egress,
and the modes of the state files (the data folder and all in it, the backup key: none open to
group or others).

Every check is `{"name", "ok", "detail"}`; a failing detail says what to do next. Doctor never
contacts a configured URL it cannot prove is inside the network, and never looks a name up.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ops.processes import ManagedProcess, is_healthy
from settings import OFFLINE_ENVIRONMENT, OPEN_TO_OTHERS, SecretFileError, Settings, read_secret

# Host names that are internal by convention (RFC 6762, RFC 8375, and the usual private ones).
LOCAL_NAME_SUFFIXES = (".local", ".internal", ".lan", ".corp", ".home.arpa")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
OPEN_PATHS_SHOWN = 3


def llm_status(settings: Settings) -> dict[str, Any]:
    base_url = settings.llm.resolved_base_url()
    status: dict[str, Any] = {"url": base_url, "model": settings.llm.model, "reachable": False}
    headers = {}
    if settings.llm.api_key:
        headers["Authorization"] = f"Bearer {settings.llm.api_key.get_secret_value()}"
    try:
        with httpx.Client(trust_env=False, timeout=3.0, headers=headers) as client:
            response = client.get(base_url.rstrip("/") + "/models")
        served = [m.get("id") for m in response.json().get("data", [])]
        status["reachable"] = response.is_success
        status["serves_model"] = settings.llm.model in served
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return status


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


# -- offline switches ---------------------------------------------------------------------------


def check_offline_switches() -> list[dict[str, Any]]:
    """One check per switch in `settings.OFFLINE_ENVIRONMENT`, as this process holds it."""
    checks = []
    for name, wanted in OFFLINE_ENVIRONMENT.items():
        value = os.environ.get(name)
        if value == wanted:
            checks.append(_check(f"offline:{name}", True, f"{name}={wanted} (forced)"))
        else:
            shown = "unset" if value is None else f"{value!r}"
            detail = f"{name} is {shown}, must be {wanted!r}; run it through `rag`, which sets it"
            checks.append(_check(f"offline:{name}", False, detail))
    return checks


def check_hub_offline() -> dict[str, Any]:
    """The model hub library read its switch: nothing it loads goes looking for a download."""
    from huggingface_hub import constants

    ok = bool(constants.HF_HUB_OFFLINE)
    detail = "huggingface_hub runs offline" if ok else "huggingface_hub is online; see offline:*"
    return _check("offline_switches", ok, detail)


def missing_switches(pid: int) -> list[str] | None:
    """Offline switches missing from a running process's environment; None when unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    environ = dict(
        entry.split("=", 1) for entry in raw.decode(errors="replace").split("\0") if "=" in entry
    )
    return [name for name, value in OFFLINE_ENVIRONMENT.items() if environ.get(name) != value]


# -- egress -------------------------------------------------------------------------------------


def host_locality(host: str) -> tuple[bool, str]:
    """Whether `host` is inside the network, decided without a name lookup, and why."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return False, "no host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _name_locality(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True, f"{host} is this machine"
    if address.is_private or address.is_link_local:
        return True, f"{host} is a private address"
    return False, f"{host} is a public address"


def _name_locality(host: str) -> tuple[bool, str]:
    if host == "localhost":
        return True, "localhost is this machine"
    if "." not in host:
        return True, f"{host} is a service name on the internal network"
    if host.endswith(LOCAL_NAME_SUFFIXES):
        return True, f"{host} is an internal name"
    suffixes = "/".join(LOCAL_NAME_SUFFIXES)
    return False, (
        f"{host} cannot be proved local without a DNS lookup; use an IP address, a service "
        f"name without dots, or a name under {suffixes}"
    )


def url_locality(url: str) -> tuple[bool, str]:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False, "not a URL"
    if host is None:
        return False, "not a URL with a host"
    return host_locality(host)


def configured_urls(settings: Settings) -> list[tuple[str, str]]:
    """Every URL in the settings, with the variable that sets it; the local LLM server too."""
    urls = list(_urls_in(settings.model_dump(), "RAG_"))
    if settings.llm.base_url is None:
        urls.append(("RAG_LLM__HOST", settings.llm.resolved_base_url()))
    return urls


def _urls_in(values: dict[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for key, value in values.items():
        variable = f"{prefix}{key.upper()}"
        if isinstance(value, dict):
            yield from _urls_in(value, variable + "__")
        elif isinstance(value, str) and "://" in value:
            for url in value.split():  # the directory's servers are a space-separated list
                yield variable, url


def check_egress(settings: Settings) -> dict[str, Any]:
    problems: list[str] = []
    fine = [] if settings.qdrant.url else ["store embedded under RAG_DATA_DIR"]
    for variable, url in configured_urls(settings):
        local, why = url_locality(url)
        (fine if local else problems).append(f"{variable}: {why}")
    for variable in PROXY_VARIABLES:
        for name in (variable, variable.lower()):
            if os.environ.get(name):
                proxy_host = _host_of(os.environ[name])
                problems.append(
                    f"{name} is set (proxy {proxy_host}): the Qdrant client and other libraries "
                    f"would send requests through it; unset it for the appliance"
                )
    if problems:
        return _check("egress", False, "; ".join(problems))
    return _check("egress", True, "; ".join(fine) + "; no proxy variables")


def _host_of(url: str) -> str:
    """A proxy's host for a message: never its user name or password."""
    try:
        return urlsplit(url if "://" in url else f"http://{url}").hostname or "?"
    except ValueError:
        return "?"


# -- models, tools ------------------------------------------------------------------------------


def check_model_folder(name: str, folder: Path) -> dict[str, Any]:
    has_config = (folder / "config.json").is_file()
    has_weights = any(folder.glob("**/*.safetensors"))
    ok = has_config and has_weights
    detail = str(folder) if ok else f"{folder} missing or incomplete; run `make setup`"
    return _check(name, ok, detail)


def check_spacy_model() -> dict[str, Any]:
    import spacy.util

    ok = spacy.util.is_package("en_core_web_sm")
    detail = (
        "en_core_web_sm installed locally" if ok else "en_core_web_sm missing; run `make setup`"
    )
    return _check("spacy_model", ok, detail)


def check_ocr(settings: Settings) -> dict[str, Any]:
    from ingest.ocr import installed_languages

    if shutil.which("tesseract") is None:
        return _check("ocr_languages", False, "tesseract not installed; run `make setup`")
    wanted = set(settings.ocr.languages.split("+"))
    missing = wanted - installed_languages()
    if missing:
        names = ", ".join(sorted(missing))
        return _check(
            "ocr_languages",
            False,
            f"missing traineddata: {names}; install tesseract-ocr-<lang> or change "
            "RAG_OCR__LANGUAGES",
        )
    return _check("ocr_languages", True, f"tesseract with {settings.ocr.languages}")


def check_pdf_renderer() -> dict[str, Any]:
    ok = shutil.which("pdftoppm") is not None
    return _check(
        "pdf_renderer", ok, "pdftoppm" if ok else "poppler-utils missing; run `make setup`"
    )


# -- file modes ---------------------------------------------------------------------------------


def check_file_modes(settings: Settings) -> dict[str, Any]:
    """The data folder and everything in it closed to group and others: any local account reads
    a state file open to them (password hashes, conversations, restricted passages)."""
    root = settings.data_dir.absolute()
    if not root.exists():
        return _check("file_modes", True, f"no data folder yet at {root}; it is created 0700")
    entries, opened = 0, 0
    shown: list[str] = []
    for path, mode in _entries_with_modes(root):
        entries += 1
        if mode & OPEN_TO_OTHERS:
            opened += 1
            if len(shown) < OPEN_PATHS_SHOWN:
                shown.append(f"{path} ({stat.S_IMODE(mode):04o})")
    if not opened:
        detail = f"{root}: {entries} files and folders, none open to group or others"
        return _check("file_modes", True, detail)
    more = f" and {opened - len(shown)} more" if opened > len(shown) else ""
    return _check(
        "file_modes",
        False,
        f"{opened} of {entries} files and folders in the data folder are open to group or "
        f"others, who could read password hashes, conversations and restricted passages: "
        f"{', '.join(shown)}{more}; close them: `chmod -R go-rwx {shlex.quote(str(root))}`",
    )


def _entries_with_modes(root: Path) -> Iterator[tuple[str, int]]:
    """`root` and everything under it, with their modes; symbolic links are neither followed
    nor reported (a link's own mode grants nothing)."""
    yield str(root), root.stat().st_mode
    pending = [str(root)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue  # gone meanwhile, or not ours to read: its own mode was reported
        with entries:
            for entry in entries:
                if entry.is_symlink():
                    continue
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue  # removed while we looked
                yield entry.path, mode
                if stat.S_ISDIR(mode):
                    pending.append(entry.path)


def check_backup_key(settings: Settings) -> dict[str, Any]:
    """RAG_BACKUP__KEY_FILE (when set) can be read, is long enough, and is its owner's alone."""
    from ops.backup import BackupError, manifest_key

    path = settings.backup.key_file
    assert path is not None
    try:
        manifest_key(settings)
    except BackupError as exc:
        return _check("backup_key", False, str(exc))
    mode = path.stat().st_mode
    if mode & OPEN_TO_OTHERS:
        return _check(
            "backup_key",
            False,
            f"{path} ({stat.S_IMODE(mode):04o}) is open to group or others, who could sign a "
            f"rewritten backup with it; close it: `chmod 0400 {shlex.quote(str(path))}`",
        )
    if path.resolve().is_relative_to(settings.data_dir.resolve()):
        return _check(
            "backup_key",
            False,
            f"{path} lies in the data folder: whoever gets the data volume gets the key too; "
            "move it elsewhere (e.g. /etc/rag) and set RAG_BACKUP__KEY_FILE to it",
        )
    return _check("backup_key", True, f"{path}: manifests are signed and checked")


# -- the organisation's directory, single sign-on and file servers ----------------------------

# A name no account has: looking it up proves the directory answers the service account.
_PROBE_NAME = "rag-doctor-probe-no-such-user"


def check_identity(settings: Settings) -> dict[str, Any]:
    """The configured directory answers the service account, or the OpenID provider serves
    its discovery document from the issuer."""
    from appliance.errors import ApplianceError
    from appliance.identity import build_identity
    from appliance.users import build_user_directory

    provider = settings.identity.provider
    servers = settings.identity.ldap.url if provider == "ldap" else settings.identity.oidc.issuer
    for url in servers.split():
        local, why = url_locality(url)
        if not local:
            return _check(f"identity_{provider}", False, f"not contacted: {why}")
    directory = build_user_directory(settings)
    try:
        identity = build_identity(settings, directory)
        if provider == "ldap":
            identity.lookup(_PROBE_NAME)
            detail = f"the directory answers the service account ({settings.identity.ldap.url})"
        else:
            from appliance.sso import OidcIdentity

            assert isinstance(identity, OidcIdentity)
            try:
                endpoint = identity.client.discovery()["authorization_endpoint"]
            finally:
                identity.client.close()
            detail = f"the OpenID provider's discovery document names {endpoint}"
    except (ApplianceError, SecretFileError, OSError) as exc:
        return _check(f"identity_{provider}", False, str(exc))
    finally:
        directory.close()
    return _check(f"identity_{provider}", True, detail)


def check_smb_account(settings: Settings) -> dict[str, Any]:
    """The account smb:// shares are read as has a password file it alone may read."""
    try:
        read_secret(settings.smb.password_file, "RAG_SMB__PASSWORD_FILE")
    except SecretFileError as exc:
        return _check("smb_account", False, str(exc))
    account = f"{settings.smb.domain}\\{settings.smb.username}".lstrip("\\")
    return _check("smb_account", True, f"{account}, password from {settings.smb.password_file}")


# -- services -----------------------------------------------------------------------------------


def embedder_models(settings: Settings) -> dict[str, str | None]:
    """The embedding model the index was built with and the configured one."""
    from ingest.catalog import Catalog
    from retrieval.embedder import model_identity

    configured = model_identity(settings.embedder_dir) if settings.embedder_dir.is_dir() else None
    return {"index": Catalog(settings.ledger_path).index_model(), "configured": configured}


def check_index_model(settings: Settings) -> dict[str, Any]:
    models = embedder_models(settings)
    index, configured = models["index"], models["configured"]
    if index is None:
        return _check("index_model", True, f"no index yet; it will be built with {configured}")
    if index == configured:
        return _check("index_model", True, f"index built with the configured {configured}")
    return _check(
        "index_model",
        False,
        f"index built with {index}, configured {configured}; rebuild it with "
        "`rag ingest --rebuild PATH...`",
    )


def check_store(settings: Settings) -> dict[str, Any]:
    from retrieval.build import build_store

    if settings.qdrant.url and not url_locality(settings.qdrant.url)[0]:
        return _check("store", False, "not contacted: RAG_QDRANT__URL may be outside (see egress)")
    try:
        store = build_store(settings)
        chunks = store.count()
        where = store.describe()["location"]
        store.close()
    except Exception as exc:
        return _check("store", False, f"{exc}")
    return _check("store", True, f"{where}: {chunks} chunks")


def check_llm(settings: Settings) -> dict[str, Any]:
    from ops.stack import llm_process

    url = settings.llm.resolved_base_url()
    if not url_locality(url)[0]:
        return _check("llm_server", False, f"not contacted: {url} may be outside (see egress)")
    status = llm_status(settings)
    if not status["reachable"]:
        return _check("llm_server", False, f"{url} unreachable; start it with `rag up`")
    if not status.get("serves_model"):
        return _check("llm_server", False, f"{url} does not serve {settings.llm.model}")
    detail = f"{url} serves {settings.llm.model}"
    if settings.llm.base_url is None:
        return _with_process_switches("llm_server", llm_process(settings), detail)
    return _check("llm_server", True, detail)


def check_ui(settings: Settings) -> dict[str, Any] | None:
    """The UI's health when `rag up` started it; None when it is not running."""
    from ops.stack import ui_process, ui_url

    process = ui_process(settings)
    if process.pid() is None:
        return None
    url = ui_url(settings)
    if not is_healthy(f"{url}_stcore/health"):
        return _check(
            "ui", False, f"running but {url} does not answer; restart it: `rag down && rag up`"
        )
    return _with_process_switches("ui", process, f"{url} healthy")


def _with_process_switches(name: str, process: ManagedProcess, detail: str) -> dict[str, Any]:
    pid = process.pid()
    missing = missing_switches(pid) if pid is not None else None
    if missing:
        return _check(
            name,
            False,
            f"running without {', '.join(missing)}; restart it: `rag down && rag up`",
        )
    return _check(name, True, detail if missing is None else f"{detail}, offline switches set")


def run_checks(settings: Settings) -> list[dict[str, Any]]:
    checks = [*check_offline_switches(), check_hub_offline(), check_egress(settings)]
    checks.append(check_model_folder("embedder_model", settings.embedder_dir))
    if settings.llm.base_url is None:
        checks.append(check_model_folder("llm_model", settings.llm_model_dir))
        server_ok = settings.llm.server_python.exists()
        checks.append(_check("llm_server_env", server_ok, str(settings.llm.server_python)))
    if settings.retrieval.reranker_dir is not None:
        checks.append(check_model_folder("reranker_model", settings.retrieval.reranker_dir))
    checks += [
        check_spacy_model(),
        check_ocr(settings),
        check_pdf_renderer(),
        check_file_modes(settings),
        check_store(settings),
        check_index_model(settings),
        check_llm(settings),
    ]
    if settings.backup.key_file is not None:
        checks.append(check_backup_key(settings))
    if settings.identity.provider != "local":
        checks.append(check_identity(settings))
    if settings.smb.username:
        checks.append(check_smb_account(settings))
    ui = check_ui(settings)
    if ui is not None:
        checks.append(ui)
    return checks
