"""Install or upgrade the appliance from a bundle, on the air-gapped host.

    install.sh BUNDLE_DIR [--verify-only] [--install-dir DIR] [--models-dir DIR] [--json] ...

Order, each step only when the ones before it passed:
 1. verify SHA256SUMS (and SHA256SUMS.sig when present) before touching anything;
 2. check the host (Docker engine, Compose v2, NVIDIA runtime, GPU memory, free disk);
 3. snapshot Qdrant's collections when the appliance already runs (an upgrade);
 4. load the images and check their ids against the manifest;
 5. put the models in place read-only, the compose file, and the env and secret files
    that are absent (existing ones are kept), and a copy of the installer for the boot unit;
 6. seal the stack's networks in with host firewall rules (seal.py), unless --no-seal;
 7. `docker compose up -d`, wait until every service is healthy, smoke-test with the sample.

Exit status: 0 done; 1 a check or step failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from ops.packaging.airgap.checksums import SIGNATURE_FILE, verify_bundle, verify_signature
from ops.packaging.airgap.host import (
    Check,
    compose_check,
    disk_check,
    docker_engine_check,
    gpu_memory_check,
    nvidia_runtime_check,
    required_gpu_memory_mib,
)
from ops.packaging.airgap.manifest import Manifest, ManifestError, read_manifest
from ops.packaging.airgap.pins import LLM_SHAPE

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_INSTALL_DIR = Path("/srv/rag")
HEALTH_TIMEOUT_SECONDS = 1800  # vLLM loads and compiles the model for up to 15 minutes


class InstallFailed(Exception):
    def __init__(self, stage: str, lines: list[str]) -> None:
        super().__init__(f"{stage}: {len(lines)} problem(s)")
        self.stage, self.lines = stage, lines


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"install.sh: {message} (see `install.sh --help`)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="install.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="the unpacked bundle folder")
    parser.add_argument("--verify-only", action="store_true", help="check the bundle, then stop")
    parser.add_argument(
        "--install-dir",
        type=Path,
        default=DEFAULT_INSTALL_DIR,
        help="where the compose file, appliance.env and secrets/ live (default: /srv/rag)",
    )
    parser.add_argument("--models-dir", type=Path, help="default: INSTALL_DIR/models")
    parser.add_argument("--shares-dir", type=Path, help="default: INSTALL_DIR/shares")
    parser.add_argument("--tensor-parallel-size", type=int, help="GPUs vLLM spreads over")
    parser.add_argument(
        "--require-signature", action="store_true", help="refuse a bundle without SHA256SUMS.sig"
    )
    parser.add_argument("--no-snapshot", action="store_true", help="upgrade without a snapshot")
    parser.add_argument(
        "--no-seal",
        action="store_true",
        help="leave the host firewall alone (you keep the containers in by other means)",
    )
    parser.add_argument(
        "--no-smoke-test", action="store_true", help="skip ingesting and asking the sample"
    )
    parser.add_argument(
        "--health-timeout",
        type=float,
        default=HEALTH_TIMEOUT_SECONDS,
        help="seconds to wait for every service to be healthy (default: 1800)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.tensor_parallel_size is not None and args.tensor_parallel_size < 1:
        parser.error("--tensor-parallel-size must be at least 1")
    args.install_dir = args.install_dir.absolute()
    args.models_dir = (args.models_dir or args.install_dir / "models").absolute()
    args.shares_dir = (args.shares_dir or args.install_dir / "shares").absolute()
    return args


def verify(bundle: Path, require_signature: bool) -> int:
    """Problems block everything else; returns the number of files checked."""
    problems = [str(problem) for problem in verify_bundle(bundle)]
    if (bundle / SIGNATURE_FILE).is_file():
        bad_signature = verify_signature(bundle)
        if bad_signature is not None:
            problems.append(str(bad_signature))
    elif require_signature:
        problems.append(f"{SIGNATURE_FILE}: missing, and --require-signature was given")
    if problems:
        raise InstallFailed("verify", problems)
    return sum(1 for line in (bundle / "SHA256SUMS").read_text().splitlines() if line.strip())


def tensor_parallel_size(args: argparse.Namespace) -> int:
    from ops.packaging.airgap.placement import HOST_ENV_FILE, read_env_file

    if args.tensor_parallel_size:
        return int(args.tensor_parallel_size)
    existing = read_env_file(args.install_dir / HOST_ENV_FILE)
    return int(existing.get("VLLM_TENSOR_PARALLEL_SIZE", "1"))


def gpu_memory_utilisation(manifest: Manifest, args: argparse.Namespace) -> float:
    """VLLM_GPU_MEMORY_UTILIZATION from the install folder's .env, else the compose default."""
    from ops.packaging.airgap.placement import HOST_ENV_FILE, read_env_file

    existing = read_env_file(args.install_dir / HOST_ENV_FILE)
    return float(existing.get("VLLM_GPU_MEMORY_UTILIZATION", manifest.llm_gpu_memory_utilization))


def llm_weights_bytes(manifest: Manifest) -> int:
    for artifact in manifest.of_kind("model"):
        if artifact.details.get("role") == "llm":
            return artifact.size
    return LLM_SHAPE.weights_bytes


def host_checks(
    bundle: Path, manifest: Manifest, args: argparse.Namespace
) -> tuple[list[Check], Any]:
    import docker

    engine, client = docker_engine_check(lambda: docker.from_env(timeout=30))
    checks = [engine, compose_check()]
    if manifest.profile == "gpu":
        tp = tensor_parallel_size(args)
        checks.append(nvidia_runtime_check(client))
        required = required_gpu_memory_mib(
            llm_weights_bytes(manifest),
            tp,
            manifest.llm_max_model_len,
            utilisation=gpu_memory_utilisation(manifest, args),
        )
        checks.append(gpu_memory_check(required, tp))
    checks.append(disk_check(args.install_dir, 2 * _folder_size(bundle)))
    if manifest.models_skipped:
        missing = [r for r in ("llm", "embedder") if not (args.models_dir / r).is_dir()]
        checks.append(
            Check("models", not missing, f"the bundle carries none; {args.models_dir} has them")
            if not missing
            else Check(
                "models",
                False,
                f"the bundle carries no models and {args.models_dir} lacks {', '.join(missing)}: "
                "build the bundle without --skip-models",
            )
        )
    if manifest.images_skipped:
        checks.append(_images_present_check(client, manifest))
    return checks, client


def _images_present_check(client: Any, manifest: Manifest) -> Check:
    if client is None:
        return Check("images", False, "cannot check: the Docker engine is unreachable (see above)")
    present = {tag for image in client.images.list() for tag in image.tags}
    missing = [ref.reference for ref in manifest.images if ref.reference not in present]
    if missing:
        return Check(
            "images",
            False,
            f"the bundle carries none and the engine lacks {', '.join(missing)}: "
            "build the bundle without --skip-images",
        )
    return Check("images", True, "the bundle carries none; the engine has them all")


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def install(
    bundle: Path,
    manifest: Manifest,
    args: argparse.Namespace,
    client: Any,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from ops.packaging.airgap import placement, stack
    from ops.packaging.airgap.images import load_images, mismatched_images

    report: dict[str, Any] = {
        "install_dir": str(args.install_dir),
        "profile": manifest.profile,
        "compose_project": manifest.compose_project,
        "compose_files_used": list(manifest.compose_files),
        "snapshots": [],
    }
    args.install_dir.mkdir(parents=True, exist_ok=True)
    project = manifest.compose_project
    if not args.no_snapshot:
        report["snapshots"] = _snapshot_if_running(client, project, args.install_dir, say)

    if not manifest.images_skipped:
        load_images(client, bundle, manifest.images, say)
        problems = mismatched_images(client, manifest.images)
        if problems:
            raise InstallFailed("images", problems)
    report["images"] = [{"reference": i.reference, "id": i.image_id} for i in manifest.images]

    installed_any = False
    report["models"] = {}
    for artifact in manifest.of_kind("model"):
        role = artifact.details["role"]
        target = args.models_dir / role
        state = placement.install_folder(bundle / artifact.path, target, artifact.sha256)
        say(f"model {artifact.name}@{artifact.version[:12]}: {state} in {target}")
        report["models"][role] = {
            "name": artifact.name,
            "version": artifact.version,
            "state": state,
        }
        installed_any |= state == "installed"
    packs = manifest.of_kind("tessdata")
    if packs:
        digest = hashlib.sha256("".join(f"{a.sha256}  {a.path}\n" for a in packs).encode())
        target = args.models_dir / "tessdata"
        state = placement.install_folder(bundle / "tessdata", target, digest.hexdigest())
        say(f"OCR language packs {', '.join(a.name for a in packs)}: {state} in {target}")
        report["tessdata"] = {"languages": [a.name for a in packs], "state": state}

    report["compose_files"] = placement.install_compose_files(bundle / "compose", args.install_dir)
    report["appliance_env"] = (
        "written"
        if placement.write_appliance_env(
            args.install_dir, bundle / "compose" / "appliance.env.example"
        )
        else "kept"
    )
    report["secrets_written"] = placement.write_secrets(args.install_dir)
    app_tag = next(
        (i.tag for i in manifest.images if i.repository == "rag-appliance"),
        manifest.appliance_version,
    )
    existing_env = placement.read_env_file(args.install_dir / placement.HOST_ENV_FILE)
    bridge_prefix = os.environ.get("BRIDGE_PREFIX") or existing_env.get("BRIDGE_PREFIX", "rag")
    host_env = {
        # Plain `docker compose` in the install folder runs the profile's files too.
        "COMPOSE_FILE": ":".join(manifest.compose_files),
        "BRIDGE_PREFIX": bridge_prefix,
        "MODELS_DIR": str(args.models_dir),
        "SHARES_DIR": str(args.shares_dir),
        "APP_IMAGE_TAG": app_tag,
        "VLLM_TENSOR_PARALLEL_SIZE": str(tensor_parallel_size(args)),
    }
    managed = ("COMPOSE_FILE", "APP_IMAGE_TAG") + (
        ("VLLM_TENSOR_PARALLEL_SIZE",) if args.tensor_parallel_size else ()
    )
    report["host_env"] = placement.write_host_env(args.install_dir, host_env, managed)
    args.shares_dir.mkdir(parents=True, exist_ok=True)
    report["installer_copy"] = str(placement.install_installer(bundle, args.install_dir))
    # The organisation's servers the corporate network may reach (compose.corporate.yml).
    seal_allow = os.environ.get("SEAL_ALLOW") or existing_env.get("SEAL_ALLOW", "")
    report["seal"] = _seal(bridge_prefix, args.no_seal, say, seal_allow.split())

    say("starting the stack: docker compose up -d")
    try:
        stack.compose_up(args.install_dir, manifest.compose_files, recreate=installed_any)
        report["health"] = stack.wait_healthy(
            client, project, manifest.services, args.health_timeout, say
        )
        if not args.no_smoke_test:
            say("smoke test: ingesting the sample share and asking about it")
            report["smoke_test"] = stack.smoke_test(
                args.install_dir, manifest.compose_files, bundle / "sample-share"
            )
            if "qdrant" in manifest.services:  # the embedded store's throw-away index is gone
                _drop_smoke_collection(client, project, args.install_dir, say)
    except stack.StackError as error:
        raise InstallFailed("start", [str(error)]) from error
    return report


def _seal(
    prefix: str, skipped: bool, say: Callable[[str], None], allow: list[str]
) -> dict[str, Any]:
    """Host firewall rules so that no container of the stack gets out (README, "Sealing the
    containers in"), but to the organisation's servers in `allow` (`ADDRESS:PORT` each);
    before `up`, as they match bridge names, not addresses."""
    from ops.packaging.airgap import seal

    if skipped:
        say("seal skipped (--no-seal): keep the containers in with your own firewall rules")
        return {"bridge_prefix": prefix, "applied": False, "allowed": allow}
    try:
        allowed = [seal.Destination.parse(text) for text in allow]
        problems = []
        for family in seal.families():
            problems += seal.apply(seal.Firewall(family), prefix, allowed)
    except seal.SealError as error:
        raise InstallFailed("seal", [f"{error}; or rerun with --no-seal"]) from error
    if problems:
        raise InstallFailed("seal", problems)
    through = f", and to {', '.join(allow)}" if allow else ""
    say(f"sealed the {prefix}-* bridges in: replies and same-network traffic only{through}")
    return {"bridge_prefix": prefix, "applied": True, "allowed": allow}


def _qdrant_key(install_dir: Path) -> str:
    return (install_dir / "secrets" / "qdrant_api_key").read_text().strip()


def _snapshot_if_running(
    client: Any, project: str, install_dir: Path, say: Callable[[str], None]
) -> list[dict[str, str]]:
    from ops.packaging.airgap import stack

    url = stack.qdrant_url(client, project)
    if url is None:
        return []
    say(f"upgrade: snapshotting Qdrant's collections at {url} before loading new images")
    try:
        with stack.qdrant_http(url, _qdrant_key(install_dir)) as http:
            taken = stack.snapshot_collections(http)
    except Exception as error:  # httpx.HTTPError, OSError (the key file), a malformed reply
        raise InstallFailed("snapshot", [_snapshot_failure(error)]) from error
    for item in taken:
        say(f"snapshot {item['snapshot']} of {item['collection']} (volume qdrant-snapshots)")
    return taken


def _snapshot_failure(error: Exception) -> str:
    return (
        f"Qdrant snapshot failed ({type(error).__name__}): check `docker compose logs qdrant`, "
        "or rerun with --no-snapshot to upgrade without one"
    )


def _drop_smoke_collection(
    client: Any, project: str, install_dir: Path, say: Callable[[str], None]
) -> None:
    from ops.packaging.airgap import stack

    url = stack.qdrant_url(client, project)
    try:
        if url is None:
            raise OSError("qdrant not running")
        with stack.qdrant_http(url, _qdrant_key(install_dir)) as http:
            stack.delete_collection(http, stack.SMOKE_COLLECTION)
    except Exception as error:  # the install is done; leave a note, not a failure
        say(f"note: could not drop the smoke-test collection ({type(error).__name__}); harmless")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(f"[install] {line}", file=out, flush=True)

    bundle = args.bundle.absolute()
    if not bundle.is_dir():
        print(f"install.sh: {bundle} is not a folder: give the unpacked bundle", file=sys.stderr)
        return EXIT_USAGE
    result: dict[str, Any] = {"ok": False, "bundle": str(bundle)}
    try:
        result["files_verified"] = verify(bundle, args.require_signature)
        say(f"bundle intact: {result['files_verified']} files match SHA256SUMS")
        if args.verify_only:
            result["ok"] = True
            return _finish(result, args.json)
        manifest = _manifest(bundle)
        result["version"] = manifest.appliance_version
        checks, client = host_checks(bundle, manifest, args)
        result["checks"] = [asdict(check) for check in checks]
        for check in checks:
            print(check.line(), file=out, flush=True)
        if not all(check.ok for check in checks):
            raise InstallFailed("host", [])  # the FAIL lines above say what to do
        result.update(install(bundle, manifest, args, client, say))
        result["ok"] = True
    except InstallFailed as failure:
        result["stage"], result["problems"] = failure.stage, failure.lines
        for line in failure.lines:
            print(f"install.sh: {line}", file=sys.stderr)
        print(f"install.sh: stopped at {failure.stage}: nothing after it ran", file=sys.stderr)
        _finish(result, args.json)
        return EXIT_FAILED
    return _finish(result, args.json)


def _manifest(bundle: Path) -> Manifest:
    try:
        return read_manifest(bundle)
    except ManifestError as error:
        raise InstallFailed("manifest", [str(error)]) from error


def _finish(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["ok"] and "images" in result:
        print(json.dumps({k: v for k, v in result.items() if k != "checks"}, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
