"""What `rag doctor` and `rag status` check: offline switches, models, store, LLM, OCR."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx

from settings import OFFLINE_ENVIRONMENT, Settings


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


def check_offline() -> dict[str, Any]:
    from huggingface_hub import constants

    missing = [k for k, v in OFFLINE_ENVIRONMENT.items() if os.environ.get(k) != v]
    ok = not missing and constants.HF_HUB_OFFLINE
    detail = "model hub offline, telemetry off" if ok else f"not set: {', '.join(missing)}"
    return _check("offline_switches", ok, detail)


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


def check_store(settings: Settings) -> dict[str, Any]:
    from retrieval.build import build_store

    try:
        store = build_store(settings)
        chunks = store.count()
        where = store.describe()["location"]
        store.close()
    except Exception as exc:
        return _check("store", False, f"{exc}")
    return _check("store", True, f"{where}: {chunks} chunks")


def check_llm(settings: Settings) -> dict[str, Any]:
    status = llm_status(settings)
    if not status["reachable"]:
        return _check("llm_server", False, f"{status['url']} unreachable; start it with `rag up`")
    if not status.get("serves_model"):
        return _check("llm_server", False, f"{status['url']} does not serve {settings.llm.model}")
    return _check("llm_server", True, f"{status['url']} serves {settings.llm.model}")


def check_ocr(settings: Settings) -> dict[str, Any]:
    from ingest.ocr import installed_languages

    if shutil.which("tesseract") is None:
        return _check("ocr_languages", False, "tesseract not installed; run `make setup`")
    wanted = set(settings.ocr.languages.split("+"))
    missing = wanted - installed_languages()
    if missing:
        return _check("ocr_languages", False, f"missing traineddata: {', '.join(sorted(missing))}")
    return _check("ocr_languages", True, f"tesseract with {settings.ocr.languages}")


def check_pdf_renderer() -> dict[str, Any]:
    ok = shutil.which("pdftoppm") is not None
    return _check(
        "pdf_renderer", ok, "pdftoppm" if ok else "poppler-utils missing; run `make setup`"
    )


def run_checks(settings: Settings) -> list[dict[str, Any]]:
    checks = [
        check_offline(),
        check_model_folder("embedder_model", settings.embedder_dir),
    ]
    if settings.llm.base_url is None:
        checks.append(check_model_folder("llm_model", settings.llm_model_dir))
        server_ok = settings.llm.server_python.exists()
        checks.append(_check("llm_server_env", server_ok, str(settings.llm.server_python)))
    checks += [
        check_spacy_model(),
        check_ocr(settings),
        check_pdf_renderer(),
        check_store(settings),
        check_llm(settings),
    ]
    return checks
