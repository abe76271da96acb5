"""manifest.json: what a bundle carries, and what the installer needs to know about it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

# The compose files each profile runs, relative to the install folder, in `-f` order.
# gpu: production, vLLM on the GPUs with a Qdrant server. cpu: vLLM's CPU build with the
# packaged small model and the embedded store (a proof-of-concept host, a laptop, CI).
PROFILES: dict[str, tuple[str, ...]] = {
    "gpu": ("docker-compose.yml",),
    "cpu": ("docker-compose.yml", "ops/packaging/docker/compose.cpu.yml"),
}


class ManifestError(Exception):
    """manifest.json is missing, unreadable or of another format."""


@dataclass
class Artifact:
    name: str
    kind: str  # image, model, tessdata, config, sample, installer, sbom
    version: str
    sha256: str  # of the file, or for a folder of the sorted `sum  path` lines of its files
    size: int
    licence: str
    path: str  # relative to the bundle
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageRef:
    """An image a compose service runs; `image_id` is the content digest of its config."""

    reference: str  # repository:tag, as docker-compose.yml names it
    services: list[str]
    image_id: str = ""
    repo_digests: list[str] = field(default_factory=list)
    archive: str = ""  # images/<file>.tar in the bundle; empty when images were skipped

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1] if ":" in self.reference else "latest"


@dataclass
class Manifest:
    appliance_version: str
    built_at: str
    compose_project: str
    services: list[str]
    images: list[ImageRef]
    images_skipped: bool
    models_skipped: bool
    llm_max_model_len: int
    # The compose file's default (.env may set another); 0 when the profile uses no GPU.
    llm_gpu_memory_utilization: float
    tessdata_present: list[str]
    tessdata_missing: list[str]
    artifacts: list[Artifact] = field(default_factory=list)
    profile: str = "gpu"
    format_version: int = FORMAT_VERSION

    @property
    def compose_files(self) -> tuple[str, ...]:
        return PROFILES[self.profile]

    def of_kind(self, kind: str) -> list[Artifact]:
        return [artifact for artifact in self.artifacts if artifact.kind == kind]

    def size(self) -> int:
        return sum(artifact.size for artifact in self.artifacts)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "appliance": {"name": "rag-appliance", "version": self.appliance_version},
            "built_at": self.built_at,
            "compose": {
                "project": self.compose_project,
                "profile": self.profile,
                "files": list(self.compose_files),
                "services": self.services,
                "llm_max_model_len": self.llm_max_model_len,
                "llm_gpu_memory_utilization": self.llm_gpu_memory_utilization,
            },
            "images": {
                "skipped": self.images_skipped,
                "references": [asdict(image) for image in self.images],
            },
            "models": {"skipped": self.models_skipped},
            "tessdata": {"present": self.tessdata_present, "missing": self.tessdata_missing},
            "artifacts": [asdict(artifact) for artifact in self.artifacts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"manifest format {data.get('format_version')!r} is not {FORMAT_VERSION}: "
                "use the install.sh that came with this bundle"
            )
        compose, images = data["compose"], data["images"]
        profile = str(compose.get("profile", "gpu"))
        if profile not in PROFILES:
            raise ManifestError(
                f"profile {profile!r} is not one of {', '.join(PROFILES)}: "
                "use the install.sh that came with this bundle"
            )
        return cls(
            appliance_version=data["appliance"]["version"],
            built_at=data["built_at"],
            compose_project=compose["project"],
            services=list(compose["services"]),
            images=[ImageRef(**image) for image in images["references"]],
            images_skipped=bool(images["skipped"]),
            models_skipped=bool(data["models"]["skipped"]),
            llm_max_model_len=int(compose["llm_max_model_len"]),
            llm_gpu_memory_utilization=float(compose["llm_gpu_memory_utilization"]),
            tessdata_present=list(data["tessdata"]["present"]),
            tessdata_missing=list(data["tessdata"]["missing"]),
            artifacts=[Artifact(**artifact) for artifact in data["artifacts"]],
            profile=profile,
        )


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    path = bundle / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(bundle: Path) -> Manifest:
    path = bundle / MANIFEST_FILE
    try:
        return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as error:
        raise ManifestError(f"{MANIFEST_FILE} missing: build the bundle again") from error
    except (ValueError, KeyError, TypeError) as error:
        raise ManifestError(
            f"{MANIFEST_FILE} unreadable ({error}): build the bundle again"
        ) from error
