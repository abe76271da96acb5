"""Installing from a bundle: verification and the host checks run for real, through bash,
with the bundle's own installer and the host's python3. This machine has the docker CLI but
no engine, no Compose plugin and no GPU, so the checks must fail here and install nothing.

The GPU memory arithmetic and the image id check are unit-tested; the latter, and the Qdrant
snapshot calls, with minimal fakes that inject what no real engine or server here can give.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker.errors import ImageNotFound

from ops.packaging.airgap import placement, stack
from ops.packaging.airgap.host import (
    check_gpu_memory,
    compose_check,
    gpu_memory_check,
    required_gpu_memory_mib,
)
from ops.packaging.airgap.images import mismatched_images
from ops.packaging.airgap.manifest import ImageRef
from ops.packaging.airgap.pins import LLM_SHAPE
from settings import PROJECT_ROOT

BUNDLE_SH = PROJECT_ROOT / "ops" / "bundle.sh"
MAX_MODEL_LEN = 32768


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "bundle"
    command = ["bash", str(BUNDLE_SH), str(out), "--skip-images", "--skip-models"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    subprocess.run(["cp", "-a", str(pristine), str(copy)], check=True)
    return copy


def run_install(
    bundle: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "bash", str(bundle / "install.sh"), str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def host_without_docker(tmp_path: Path) -> dict[str, str]:
    """The environment of a host with neither the docker command nor an engine: PATH holds
    only what install.sh itself needs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    dirname = shutil.which("dirname")
    assert dirname is not None
    (bin_dir / "dirname").symlink_to(dirname)
    return {**os.environ, "PATH": str(bin_dir), "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}


def snapshot_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_verify_only_accepts_an_intact_bundle(bundle: Path) -> None:
    result = run_install(bundle, "--verify-only")
    assert result.returncode == 0, result.stderr
    assert "bundle intact" in result.stdout
    assert not list(bundle.rglob("__pycache__"))  # running the installer left no trace


def test_the_repository_copy_of_install_sh_verifies_too(bundle: Path) -> None:
    command = ["bash", str(PROJECT_ROOT / "ops" / "install.sh"), str(bundle), "--verify-only"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def _change_one_byte(bundle: Path) -> str:
    name = "sample-share/policies/information-security.md"
    data = bytearray((bundle / name).read_bytes())
    data[100] ^= 0x01
    (bundle / name).write_bytes(bytes(data))
    return f"{name}: checksum mismatch"


def _remove_a_file(bundle: Path) -> str:
    name = "tessdata/deu.traineddata"
    (bundle / name).unlink()
    return f"{name}: missing"


def _add_a_file(bundle: Path) -> str:
    (bundle / "compose" / "override.yml").write_text("services: {}\n")
    return "compose/override.yml: extra file not listed in SHA256SUMS"


def _edit_a_listed_sum(bundle: Path) -> str:
    sums = bundle / "SHA256SUMS"
    lines = sums.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith("  manifest.json"))
    wrong = "0" * 64 if not lines[index].startswith("0" * 64) else "1" * 64
    lines[index] = f"{wrong}  manifest.json"
    sums.write_text("\n".join(lines) + "\n")
    return "manifest.json: checksum mismatch"


@pytest.mark.parametrize(
    "tamper", [_change_one_byte, _remove_a_file, _add_a_file, _edit_a_listed_sum]
)
def test_verify_only_names_the_tampered_file(bundle: Path, tamper: Any) -> None:
    expected = tamper(bundle)
    result = run_install(bundle, "--verify-only")
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if "stopped at" not in line]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"install.sh: {expected}")
    assert "bundle intact" not in result.stdout


def test_a_tampered_bundle_stops_before_the_host_checks(bundle: Path, tmp_path: Path) -> None:
    _change_one_byte(bundle)
    result = run_install(bundle, "--install-dir", str(tmp_path / "srv"), "--json")
    assert result.returncode == 1
    assert '"stage": "verify"' in result.stdout
    assert "Docker engine" not in result.stdout + result.stderr
    assert not (tmp_path / "srv").exists()


def test_host_checks_report_every_failure_with_a_next_step_and_install_nothing(
    bundle: Path, tmp_path: Path
) -> None:
    install_dir = tmp_path / "srv"
    install_dir.mkdir()
    (install_dir / "appliance.env").write_text("RAG_QDRANT__COLLECTION=mine\n")
    before = snapshot_tree(install_dir)
    result = run_install(
        bundle, "--install-dir", str(install_dir), env=host_without_docker(tmp_path)
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "[install] bundle intact" in lines[0]
    failed = {line.split(":")[0] for line in lines if line.startswith("FAIL")}
    assert {
        "FAIL Docker engine",
        "FAIL Compose v2",
        "FAIL NVIDIA container runtime",
        "FAIL GPU memory",
        "FAIL models",
        "FAIL images",
    } <= failed
    docker_line = next(line for line in lines if line.startswith("FAIL Docker engine"))
    assert "systemctl start docker" in docker_line
    gpu_line = next(line for line in lines if line.startswith("FAIL GPU memory"))
    assert "nvidia-smi not found: install the NVIDIA driver" in gpu_line
    assert any(line.startswith("ok   free disk") for line in lines)
    assert "stopped at host" in result.stderr
    assert snapshot_tree(install_dir) == before
    assert sorted(p.name for p in install_dir.iterdir()) == ["appliance.env"]


def test_compose_check_fails_without_the_v2_plugin(tmp_path: Path) -> None:
    docker_v1_only = tmp_path / "docker"
    docker_v1_only.write_text(
        "#!/bin/sh\necho \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n"
    )
    docker_v1_only.chmod(0o755)
    check = compose_check(str(docker_v1_only))
    assert not check.ok
    assert "docker-compose-plugin" in check.detail


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker command on this host")
def test_compose_check_reads_the_plugins_version() -> None:
    check = compose_check()
    installed = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, check=False
    )
    assert check.ok == (installed.returncode == 0)
    if check.ok:
        assert check.detail == f"version {installed.stdout.strip().lstrip('v')}"


# -- GPU memory ----------------------------------------------------------------------------------


def test_gpu_memory_needed_per_gpu_shrinks_with_the_tensor_parallel_size() -> None:
    one = required_gpu_memory_mib(LLM_SHAPE.weights_bytes, 1, MAX_MODEL_LEN)
    two = required_gpu_memory_mib(LLM_SHAPE.weights_bytes, 2, MAX_MODEL_LEN)
    # 24.5 GB of weights + 5 GiB of KV cache (160 KiB per token) + 2 GiB, within 90 %.
    assert LLM_SHAPE.kv_cache_bytes_per_token == 160 * 1024
    assert one == 33926
    assert two == 18101
    assert check_gpu_memory([81920], one, 1).ok  # one A100 80GB
    assert check_gpu_memory([40960], one, 1).ok  # one A100 40GB
    assert not check_gpu_memory([24576], one, 1).ok
    assert check_gpu_memory([24576, 24576], two, 2).ok
    with pytest.raises(ValueError):
        required_gpu_memory_mib(LLM_SHAPE.weights_bytes, 0, MAX_MODEL_LEN)


def test_gpu_memory_failure_says_what_to_change() -> None:
    one = required_gpu_memory_mib(LLM_SHAPE.weights_bytes, 1, MAX_MODEL_LEN)
    spread = check_gpu_memory([24576, 24576], one, 1)
    assert not spread.ok and "raise --tensor-parallel-size" in spread.detail
    too_few = check_gpu_memory([81920], 100, 2)
    assert not too_few.ok and "found 81920 MiB" in too_few.detail


def test_gpu_memory_is_read_from_nvidia_smi(tmp_path: Path) -> None:
    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text(
        '#!/bin/sh\n[ "$1" = --query-gpu=memory.total ] && printf "81920\\n81920\\n"\n'
    )
    fake_smi.chmod(0o755)
    ok = gpu_memory_check(20000, 2, nvidia_smi=str(fake_smi))
    assert ok.ok and "81920 MiB, 81920 MiB" in ok.detail
    fake_smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken = gpu_memory_check(20000, 2, nvidia_smi=str(fake_smi))
    assert not broken.ok and "exit 9" in broken.detail


# -- loaded images -------------------------------------------------------------------------------


class _FakeImages:
    """Stands in for the SDK's images collection: only what the engine holds, by tag."""

    def __init__(self, held: dict[str, str]) -> None:
        self.held = held

    def get(self, reference: str) -> Any:
        if reference not in self.held:
            raise ImageNotFound(f"no such image: {reference}")
        return type("Image", (), {"id": self.held[reference]})()


class _FakeClient:
    def __init__(self, held: dict[str, str]) -> None:
        self.images = _FakeImages(held)


def test_loaded_image_ids_are_checked_against_the_manifest() -> None:
    refs = [
        ImageRef("qdrant/qdrant:v1.15.4", ["qdrant"], "sha256:" + "a" * 64, [], "images/q.tar"),
        ImageRef("rag-appliance:0.1.0", ["ui"], "sha256:" + "b" * 64, [], "images/r.tar"),
    ]
    intact = {
        "qdrant/qdrant:v1.15.4": "sha256:" + "a" * 64,
        "rag-appliance:0.1.0": "sha256:" + "b" * 64,
    }
    assert mismatched_images(_FakeClient(intact), refs) == []
    swapped = {**intact, "rag-appliance:0.1.0": "sha256:" + "c" * 64}
    problems = mismatched_images(_FakeClient(swapped), refs)
    assert len(problems) == 1
    assert problems[0].startswith("rag-appliance:0.1.0: loaded image id sha256:ccc")
    absent = mismatched_images(_FakeClient({"rag-appliance:0.1.0": "sha256:" + "b" * 64}), refs)
    assert absent == ["qdrant/qdrant:v1.15.4: not in the Docker engine after loading images/q.tar"]


# -- files put in place --------------------------------------------------------------------------


def test_models_are_installed_read_only_and_replaced_on_upgrade(tmp_path: Path) -> None:
    source = tmp_path / "bundle-model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights").write_bytes(b"v1")
    (source / "sub" / "weights").chmod(0o600)  # as `make setup` leaves model files
    target = tmp_path / "models" / "llm"
    assert placement.install_folder(source, target, "digest-1") == "installed"
    assert (target / "sub" / "weights").read_bytes() == b"v1"
    for path in [target, *target.rglob("*")]:
        assert path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0, path
        assert path.stat().st_mode & stat.S_IROTH, f"{path}: the services' users cannot read it"
    assert placement.install_folder(source, target, "digest-1") == "unchanged"
    (source / "sub" / "weights").write_bytes(b"v2")
    assert placement.install_folder(source, target, "digest-2") == "installed"
    assert (target / "sub" / "weights").read_bytes() == b"v2"
    assert sorted(p.name for p in target.parent.iterdir()) == [".llm.sha256", "llm"]


def test_env_file_and_secrets_are_written_once_and_never_overwritten(tmp_path: Path) -> None:
    template = PROJECT_ROOT / "ops" / "packaging" / "docker" / "appliance.env.example"
    assert placement.write_appliance_env(tmp_path, template) is True
    (tmp_path / "appliance.env").write_text("RAG_OCR__LANGUAGES=eng\n")
    assert placement.write_appliance_env(tmp_path, template) is False
    assert (tmp_path / "appliance.env").read_text() == "RAG_OCR__LANGUAGES=eng\n"
    assert placement.write_secrets(tmp_path) == ["qdrant_api_key", "vllm_api_key"]
    key = tmp_path / "secrets" / "qdrant_api_key"
    first = key.read_text()
    assert len(first) >= 40 and stat.S_IMODE(key.stat().st_mode) == 0o440
    assert placement.write_secrets(tmp_path) == []
    assert key.read_text() == first
    assert first != (tmp_path / "secrets" / "vllm_api_key").read_text()


def test_compose_files_land_at_their_paths_and_a_changed_one_keeps_its_previous(
    tmp_path: Path,
) -> None:
    source = tmp_path / "compose"
    (source / "ops" / "qdrant").mkdir(parents=True)
    (source / "docker-compose.yml").write_text("name: v2\n")
    (source / "ops" / "qdrant" / "config.yaml").write_text("log_level: INFO\n")
    install_dir = tmp_path / "srv"
    (install_dir).mkdir()
    (install_dir / "docker-compose.yml").write_text("name: v1\n")
    states = placement.install_compose_files(source, install_dir)
    assert states == {"docker-compose.yml": "installed", "ops/qdrant/config.yaml": "installed"}
    assert (install_dir / "ops" / "qdrant" / "config.yaml").read_text() == "log_level: INFO\n"
    assert (install_dir / "docker-compose.yml.previous").read_text() == "name: v1\n"
    again = placement.install_compose_files(source, install_dir)
    assert set(again.values()) == {"unchanged"}


def test_host_env_keeps_the_operators_values_and_follows_the_image_tag(tmp_path: Path) -> None:
    values = {"MODELS_DIR": "/srv/rag/models", "APP_IMAGE_TAG": "0.1.0"}
    assert placement.write_host_env(tmp_path, values, ("APP_IMAGE_TAG",)) == "written"
    env = tmp_path / ".env"
    env.write_text(env.read_text().replace("/srv/rag/models", "/data/models"))
    upgraded = {"MODELS_DIR": "/srv/rag/models", "APP_IMAGE_TAG": "0.2.0"}
    assert placement.write_host_env(tmp_path, upgraded, ("APP_IMAGE_TAG",)) == "updated"
    assert placement.read_env_file(env) == {"MODELS_DIR": "/data/models", "APP_IMAGE_TAG": "0.2.0"}


# -- Qdrant snapshot before an upgrade ------------------------------------------------------------


def test_every_collection_is_snapshotted_with_the_api_key() -> None:
    """A MockTransport plays Qdrant's two endpoints: no Qdrant server can run here."""
    seen: list[tuple[str, str, str | None]] = []

    def qdrant(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("api-key")))
        if request.url.path == "/collections":
            body = {"result": {"collections": [{"name": "documents"}, {"name": "feedback"}]}}
            return httpx.Response(200, json=body)
        name = request.url.path.split("/")[2]
        return httpx.Response(200, json={"result": {"name": f"{name}-1.snapshot"}})

    http = stack.qdrant_http("http://172.18.0.2:6333", "s3cret", httpx.MockTransport(qdrant))
    taken = stack.snapshot_collections(http)
    assert taken == [
        {"collection": "documents", "snapshot": "documents-1.snapshot"},
        {"collection": "feedback", "snapshot": "feedback-1.snapshot"},
    ]
    assert seen == [
        ("GET", "/collections", "s3cret"),
        ("POST", "/collections/documents/snapshots", "s3cret"),
        ("POST", "/collections/feedback/snapshots", "s3cret"),
    ]
    assert http._trust_env is False
