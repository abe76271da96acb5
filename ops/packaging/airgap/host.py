"""Checks of the appliance host before anything is installed: each one line, ok or FAIL with
what to do next. All of them run, so the operator sees every problem at once."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.packaging.airgap.pins import LLM_SHAPE, LlmShape

MIB = 1024 * 1024
# vLLM's default --gpu-memory-utilization: the share of each GPU it may take.
GPU_MEMORY_UTILISATION = 0.9
# CUDA context, activations and CUDA graphs, per GPU.
GPU_OVERHEAD_BYTES = 2 * 1024 * MIB


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def required_gpu_memory_mib(
    weights_bytes: int,
    tensor_parallel_size: int,
    max_model_len: int,
    shape: LlmShape = LLM_SHAPE,
    utilisation: float = GPU_MEMORY_UTILISATION,
) -> int:
    """Memory each GPU needs: its shard of the weights and of one full-length sequence's KV
    cache, plus the fixed overhead, within the share of the GPU vLLM takes."""
    if tensor_parallel_size < 1:
        raise ValueError("the tensor parallel size is at least 1")
    per_gpu = (
        weights_bytes / tensor_parallel_size
        + shape.kv_cache_bytes_per_token * max_model_len / tensor_parallel_size
        + GPU_OVERHEAD_BYTES
    )
    return math.ceil(per_gpu / utilisation / MIB)


def check_gpu_memory(gpus_mib: list[int], required_mib: int, tensor_parallel_size: int) -> Check:
    """Enough GPUs with enough memory each, for the tensor parallel size."""
    name = "GPU memory"
    fitting = [memory for memory in gpus_mib if memory >= required_mib]
    found = ", ".join(f"{memory} MiB" for memory in gpus_mib) or "none"
    if len(fitting) >= tensor_parallel_size:
        return Check(
            name,
            True,
            f"{tensor_parallel_size} GPU(s) with ≥ {required_mib} MiB each needed; found {found}",
        )
    advice = (
        "raise --tensor-parallel-size to spread the model over more GPUs"
        if len(gpus_mib) > tensor_parallel_size
        else "use GPUs with more memory, or a shorter --max-model-len in docker-compose.yml"
    )
    return Check(
        name,
        False,
        f"tensor parallel size {tensor_parallel_size} needs that many GPUs with ≥ "
        f"{required_mib} MiB each; found {found}: {advice}",
    )


def parse_nvidia_smi_memory(output: str) -> list[int]:
    return [int(float(line.strip())) for line in output.splitlines() if line.strip()]


def gpu_memory_check(
    required_mib: int, tensor_parallel_size: int, nvidia_smi: str | None = None
) -> Check:
    nvidia_smi = nvidia_smi or shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return Check(
            "GPU memory",
            False,
            "nvidia-smi not found: install the NVIDIA driver (it brings nvidia-smi), then reboot",
        )
    result = subprocess.run(
        [nvidia_smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        return Check(
            "GPU memory",
            False,
            f"nvidia-smi failed (exit {result.returncode}): check the NVIDIA driver with "
            "`nvidia-smi`",
        )
    try:
        gpus = parse_nvidia_smi_memory(result.stdout)
    except ValueError:
        return Check("GPU memory", False, "nvidia-smi printed no memory sizes: run `nvidia-smi`")
    return check_gpu_memory(gpus, required_mib, tensor_parallel_size)


def docker_engine_check(connect: Callable[[], Any]) -> tuple[Check, Any]:
    """(the check, a connected Docker SDK client or None)."""
    try:
        client = connect()
        client.ping()
        version = client.version().get("Version", "?")
    except Exception as error:  # the SDK raises several unrelated types here
        reason = type(error).__name__
        return (
            Check(
                "Docker engine",
                False,
                f"unreachable ({reason}): start it (`systemctl start docker`) and run the "
                "installer as a user who may use /var/run/docker.sock (root or group docker)",
            ),
            None,
        )
    return Check("Docker engine", True, f"reachable, version {version}"), client


def compose_check(docker_cli: str | None = None) -> Check:
    docker_cli = docker_cli or shutil.which("docker")
    advice = "install the Docker Compose v2 plugin (package docker-compose-plugin)"
    if docker_cli is None:
        return Check(
            "Compose v2", False, f"the docker command is missing: install Docker; {advice}"
        )
    result = subprocess.run(
        [docker_cli, "compose", "version", "--short"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    version = result.stdout.strip().lstrip("v")
    if result.returncode != 0 or not version[:1].isdigit():
        return Check("Compose v2", False, f"`docker compose` is not available: {advice}")
    if int(version.split(".")[0]) < 2:
        return Check("Compose v2", False, f"found Compose {version}: {advice}")
    return Check("Compose v2", True, f"version {version}")


def nvidia_runtime_check(client: Any) -> Check:
    name = "NVIDIA container runtime"
    if client is None:
        return Check(name, False, "cannot check: the Docker engine is unreachable (see above)")
    runtimes = client.info().get("Runtimes") or {}
    if "nvidia" in runtimes:
        return Check(name, True, "registered with the Docker engine")
    return Check(
        name,
        False,
        "not in `docker info` runtimes: install the NVIDIA Container Toolkit, run "
        "`nvidia-ctk runtime configure --runtime=docker` and restart Docker",
    )


def existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def disk_check(install_dir: Path, needed_bytes: int) -> Check:
    where = existing_ancestor(install_dir)
    free = shutil.disk_usage(where).free
    detail = f"{free / 1e9:.1f} GB free at {where}, {needed_bytes / 1e9:.1f} GB needed"
    if free >= needed_bytes:
        return Check("free disk", True, detail)
    return Check("free disk", False, f"{detail}: free space there or pick another --install-dir")
