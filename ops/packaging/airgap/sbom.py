"""The bundle's software bill of materials, in CycloneDX 1.5 JSON.

Components: every Python distribution installed in the environment that builds the bundle
(the application's, which the app image installs from the same lock), the container images,
the models and the OCR language packs, each with its version, licence and digest.
"""

from __future__ import annotations

import importlib.metadata
import json
import uuid
from pathlib import Path
from typing import Any

from ops.packaging.airgap.manifest import Artifact, Manifest

SBOM_FILE = "sbom.cdx.json"
_COMPONENT_TYPES = {
    "image": "container",
    "model": "machine-learning-model",
    "tessdata": "data",
}
_LICENCE_CLASSIFIER = "License :: OSI Approved :: "


def python_licence(metadata: Any) -> str:
    """The licence a distribution declares: its SPDX expression, else the License field's
    first line, else its OSI classifier; empty when it declares none."""
    expression = metadata.get("License-Expression")
    if expression:
        return str(expression).strip()
    declared = (metadata.get("License") or "").strip()
    if declared and declared.upper() != "UNKNOWN":
        return declared.splitlines()[0][:200]
    for classifier in metadata.get_all("Classifier") or []:
        if classifier.startswith(_LICENCE_CLASSIFIER):
            return str(classifier[len(_LICENCE_CLASSIFIER) :])
    return ""


def python_components() -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if not name or name.lower() in seen:
            continue
        version = distribution.version
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{name.lower()}@{version}",
            "name": name,
            "version": version,
            "purl": f"pkg:pypi/{name.lower()}@{version}",
        }
        licence = python_licence(distribution.metadata)
        if licence:
            component["licenses"] = [_licence_entry(licence)]
        seen[name.lower()] = component
    return sorted(seen.values(), key=lambda component: str(component["name"]).lower())


def artifact_component(artifact: Artifact) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": _COMPONENT_TYPES[artifact.kind],
        "bom-ref": f"{artifact.kind}:{artifact.name}@{artifact.version}",
        "name": artifact.name,
        "version": artifact.version,
        "hashes": [{"alg": "SHA-256", "content": artifact.sha256}],
        "licenses": [_licence_entry(artifact.licence)],
    }
    if artifact.kind == "image" and artifact.details.get("image_id"):
        component["properties"] = [
            {"name": "docker:image_id", "value": artifact.details["image_id"]}
        ]
    return component


def build_sbom(manifest: Manifest, timestamp: str) -> dict[str, Any]:
    components = python_components()
    components += [
        artifact_component(artifact)
        for artifact in manifest.artifacts
        if artifact.kind in _COMPONENT_TYPES
    ]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "component": {
                "type": "application",
                "bom-ref": f"rag-appliance@{manifest.appliance_version}",
                "name": "rag-appliance",
                "version": manifest.appliance_version,
                "licenses": [{"license": {"id": "Apache-2.0"}}],
            },
        },
        "components": components,
    }


def write_sbom(bundle: Path, manifest: Manifest, timestamp: str) -> Path:
    path = bundle / SBOM_FILE
    sbom = build_sbom(manifest, timestamp)
    path.write_text(json.dumps(sbom, indent=2) + "\n", encoding="utf-8")
    return path


def _licence_entry(licence: str) -> dict[str, Any]:
    if _looks_like_spdx(licence):
        return {"expression": licence}
    return {"license": {"name": licence}}


def _looks_like_spdx(licence: str) -> bool:
    words = licence.replace("(", " ").replace(")", " ").split()
    return (
        bool(words)
        and all(
            word in ("AND", "OR", "WITH") or all(c.isalnum() or c in "-.+" for c in word)
            for word in words
        )
        and not any(word.lower() in ("license", "licence") for word in words)
    )
