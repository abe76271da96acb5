"""Building the install bundle, run through bash as an operator would (no images or models:
this machine has no Docker engine and no model hub)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.packaging.airgap import images as image_ops
from ops.packaging.airgap.bundle import (
    bound_files,
    compose_images,
    expand,
    git_blob_id,
    model_file_problems,
    read_compose,
)
from ops.packaging.airgap.pins import TESSERACT_EU_LANGUAGES
from settings import PROJECT_ROOT

BUNDLE_SH = PROJECT_ROOT / "ops" / "bundle.sh"
INSTALL_SH_NAME = "install.sh"


def build(
    out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUNDLE_SH), str(out), "--skip-images", "--skip-models", *extra],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "out"
    result = build(out)
    assert result.returncode == 0, result.stderr
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sums_list_every_file_with_its_digest(bundle: Path) -> None:
    lines = (bundle / "SHA256SUMS").read_text().splitlines()
    listed = {line[66:]: line[:64] for line in lines}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {
        "SHA256SUMS"
    }
    assert set(listed) == on_disk
    assert all(line[64:66] == "  " for line in lines)
    assert all(sha256(bundle / name) == digest for name, digest in listed.items())
    # The operator's own tool agrees.
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
        cwd=bundle,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_manifest_describes_every_artifact_and_what_was_skipped(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["images"]["skipped"] is True
    assert manifest["models"]["skipped"] is True
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    named = {compose["services"][s]["image"] for s in ("qdrant", "vllm")}
    referenced = {image["reference"] for image in manifest["images"]["references"]}
    assert named <= referenced  # the tags come from the compose file, not a second copy
    assert "rag-appliance:0.1.0" in referenced
    for artifact in manifest["artifacts"]:
        assert set(artifact) >= {"name", "kind", "version", "sha256", "size", "licence"}
        assert artifact["licence"], artifact["name"]
        path = bundle / artifact["path"]
        if path.is_file():
            assert sha256(path) == artifact["sha256"], artifact["path"]
            assert path.stat().st_size == artifact["size"]
        else:
            assert path.is_dir(), artifact["path"]
    kinds = {artifact["kind"] for artifact in manifest["artifacts"]}
    assert {"config", "sample", "installer", "tessdata", "sbom"} <= kinds


def test_tesseract_packs_present_here_are_carried_and_the_others_listed_missing(
    bundle: Path,
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    installed = {p.stem for p in Path("/usr/share/tesseract-ocr").glob("*/tessdata/*.traineddata")}
    for language in ("eng", "fra", "deu"):
        assert (bundle / "tessdata" / f"{language}.traineddata").is_file()
        assert language in manifest["tessdata"]["present"]
    expected_missing = [lang for lang in TESSERACT_EU_LANGUAGES if lang not in installed]
    assert manifest["tessdata"]["missing"] == expected_missing
    source = next(Path("/usr/share/tesseract-ocr").glob("*/tessdata/fra.traineddata"))
    assert sha256(bundle / "tessdata" / "fra.traineddata") == sha256(source)


def test_compose_file_template_sample_share_and_installer_are_copied(bundle: Path) -> None:
    compose = (bundle / "compose" / "docker-compose.yml").read_bytes()
    assert compose == (PROJECT_ROOT / "docker-compose.yml").read_bytes()
    for relative in bound_files(read_compose([PROJECT_ROOT / "docker-compose.yml"])):
        # at the same path under compose/ as under the install folder the compose file binds
        assert (bundle / "compose" / relative).read_bytes() == (
            PROJECT_ROOT / relative
        ).read_bytes()
    template = PROJECT_ROOT / "ops" / "packaging" / "docker" / "appliance.env.example"
    assert (bundle / "compose" / "appliance.env.example").read_bytes() == template.read_bytes()
    sample = sorted(p.name for p in (PROJECT_ROOT / "ops" / "sample-share").rglob("*"))
    assert sorted(p.name for p in (bundle / "sample-share").rglob("*")) == sample
    assert (bundle / INSTALL_SH_NAME).read_bytes() == (
        PROJECT_ROOT / "ops" / "install.sh"
    ).read_bytes()
    assert (bundle / "installer" / "ops" / "packaging" / "airgap" / "install.py").is_file()
    assert (bundle / "installer" / "vendor" / "docker" / "__init__.py").is_file()
    assert not list(bundle.rglob("*.so")) and not list(bundle.rglob("__pycache__"))


def test_sbom_is_cyclonedx_with_the_python_packages_and_the_ocr_packs(bundle: Path) -> None:
    sbom = json.loads((bundle / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    assert sbom["serialNumber"].startswith("urn:uuid:")
    by_name = {c["name"].lower(): c for c in sbom["components"]}
    docker_sdk = by_name["docker"]
    assert docker_sdk["version"] == "7.2.0"
    assert docker_sdk["purl"] == "pkg:pypi/docker@7.2.0"
    assert docker_sdk["licenses"] == [{"expression": "Apache-2.0"}]
    assert by_name["pydantic"]["type"] == "library"
    fra = by_name["fra"]
    assert fra["type"] == "data"
    assert fra["hashes"] == [
        {"alg": "SHA-256", "content": sha256(bundle / "tessdata" / "fra.traineddata")}
    ]


def test_a_non_empty_output_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old").write_text("keep me")
    result = build(tmp_path)
    assert result.returncode == 2
    assert "not an empty folder" in result.stderr
    assert (tmp_path / "old").read_text() == "keep me"


def test_bound_files_are_the_relative_sources_but_not_the_secrets() -> None:
    compose = {
        "services": {
            "a": {"volumes": ["./conf/a.yaml:/etc/a.yaml:ro", "data:/data", "/srv:/srv"]},
            "b": {
                "volumes": [
                    {"type": "bind", "source": "./ops/qdrant/config.yaml", "target": "/q"},
                    {"type": "bind", "source": "./secrets/key", "target": "/k"},
                ]
            },
        }
    }
    assert bound_files(compose) == ["conf/a.yaml", "ops/qdrant/config.yaml"]


def test_the_app_image_is_built_and_the_others_are_pulled_as_compose_names_them() -> None:
    compose = read_compose([PROJECT_ROOT / "docker-compose.yml"])
    images = {ref.reference: (ref, build) for ref, build in compose_images(compose, {})}
    app, app_build = images["rag-appliance:0.1.0"]
    assert app.services == ["ingest", "ui", "api", "metrics"]
    assert (
        app_build is not None and app_build["dockerfile"] == "ops/packaging/docker/app.Dockerfile"
    )
    assert images[compose["services"]["qdrant"]["image"]][1] is None
    tagged = {ref.reference for ref, _ in compose_images(compose, {"APP_IMAGE_TAG": "0.2.0"})}
    assert "rag-appliance:0.2.0" in tagged


needs_compose_v2 = pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="merging the cpu profile's files needs Compose v2",
)


@needs_compose_v2
def test_the_cpu_profile_bundle_runs_vllms_cpu_build_with_the_embedded_store(
    tmp_path: Path,
) -> None:
    out = tmp_path / "cpu"
    result = build(out, "--profile", "cpu")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    compose = manifest["compose"]
    assert compose["profile"] == "cpu"
    assert compose["files"] == ["docker-compose.yml", "ops/packaging/docker/compose.cpu.yml"]
    assert "qdrant" not in compose["services"]
    assert {"vllm", "ingest", "ui", "api", "proxy", "metrics"} <= set(compose["services"])
    assert compose["llm_gpu_memory_utilization"] == 0.0
    images = {image["reference"]: image for image in manifest["images"]["references"]}
    assert images["rag-vllm-cpu:0.1.0"]["services"] == ["vllm"]
    assert not any(reference.startswith(("qdrant/", "vllm/")) for reference in images)
    for name in compose["files"] + ["ops/qdrant/config.yaml"]:
        assert (out / "compose" / name).read_bytes() == (PROJECT_ROOT / name).read_bytes()


def test_build_arguments_are_read_as_compose_interpolates_them() -> None:
    environment = {"EMPTY": "", "SET": "x"}
    assert expand("${EMPTY:-fallback}", environment) == "fallback"
    assert expand("${EMPTY-fallback}", environment) == ""
    assert expand("${UNSET-fallback}", environment) == "fallback"
    assert expand("${SET:-fallback}/${SET}", environment) == "x/x"
    compose = read_compose([PROJECT_ROOT / "docker-compose.yml"])
    images = compose_images(compose, {"BASE_IMAGE": "mirror/base:1"})
    app_build = next(build for ref, build in images if ref.repository == "rag-appliance")
    assert app_build is not None
    assert app_build["args"]["BASE_IMAGE"] == "mirror/base:1"
    assert app_build["args"]["PIP_INDEX_URL"] == "https://pypi.org/simple"


def test_downloaded_model_files_are_checked_against_the_hub_record(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    good = {
        "config.json": ("git", git_blob_id(tmp_path / "config.json")),
        "model.safetensors": ("sha256", hashlib.sha256(b"weights").hexdigest()),
    }
    assert model_file_problems(tmp_path, good) == []
    # git's own blob id for the same content
    git = shutil.which("git")
    if git:
        out = subprocess.run(
            [git, "hash-object", str(tmp_path / "config.json")], capture_output=True, text=True
        )
        assert out.stdout.strip() == good["config.json"][1]
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    (tmp_path / "stray.bin").write_bytes(b"")
    problems = model_file_problems(tmp_path, good)
    assert problems == [
        "model.safetensors: sha256 differs from the hub's",
        "stray.bin is not in the pinned revision",
    ]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed on this machine")
def test_a_signed_bundle_verifies_and_a_re_summed_tampering_is_caught(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "builder@example.org",
             "ed25519", "sign", "never"],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        out = tmp_path / "signed"
        result = build(out, "--sign-key", "builder@example.org", env=env)
        assert result.returncode == 0, result.stderr
        assert (out / "SHA256SUMS.sig").is_file()
        install = ["bash", str(out / "install.sh"), str(out), "--verify-only"]
        assert subprocess.run(install, env=env, capture_output=True).returncode == 0
        # Someone alters a file and rewrites SHA256SUMS to match: only the signature tells.
        target = out / "sample-share" / "policies" / "remote-work.docx"
        target.write_bytes(target.read_bytes() + b"x")
        sums = (out / "SHA256SUMS").read_text().splitlines()
        digest = sha256(target)
        sums = [
            f"{digest}  {line[66:]}" if line.endswith("remote-work.docx") else line for line in sums
        ]
        (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
        tampered = subprocess.run(install, env=env, capture_output=True, text=True)
        assert tampered.returncode == 1
        assert "SHA256SUMS.sig: bad or unknown signature" in tampered.stderr
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)


def docker_engine() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:
        pytest.skip("no Docker engine answers here")
    return client


def test_an_image_build_reports_its_steps_and_a_failed_step_names_itself(tmp_path: Path) -> None:
    client = docker_engine()
    (tmp_path / "greeting.txt").write_text("hello\n")
    (tmp_path / "good.Dockerfile").write_text("FROM scratch\nCOPY greeting.txt /greeting.txt\n")
    (tmp_path / "bad.Dockerfile").write_text("FROM scratch\nCOPY absent.txt /absent.txt\n")
    said: list[str] = []
    reference = f"rag-build-check:{os.getpid()}"
    try:
        image = image_ops.build_image(
            client, tmp_path, "good.Dockerfile", reference, {}, None, said.append
        )
        assert reference in image.tags
        assert any("Step 2/2 : COPY greeting.txt" in line for line in said), said
        with pytest.raises(image_ops.ImageError, match="absent.txt"):
            image_ops.build_image(
                client, tmp_path, "bad.Dockerfile", reference, {}, None, said.append
            )
    finally:
        client.images.remove(reference, force=True)
