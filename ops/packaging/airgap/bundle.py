"""Build the air-gapped install bundle, on a connected build host.

    bundle.sh OUT_DIR [--profile gpu|cpu] [--skip-images] [--skip-models] [--sign-key KEYID]
                      [--build-arg NAME=VALUE ...] [--extra-ca-cert FILE] [--build-network host]

Images: those with a `build:` section (the app; for the cpu profile also vLLM's CPU build)
are built from the base image named by their BASE_IMAGE argument (ops/packaging/docker/
base.sh makes it from a Debian mirror), the others are pulled, all as the profile's compose
files name them, then saved with `docker save`. Models: for the gpu profile downloaded at
the revisions pinned in pins.py and checked file by file against the hub's hashes; for the
cpu profile copied from the packaged model folders `make setup` writes. Tesseract packs:
copied from this host, never downloaded. See __init__.py for the bundle's layout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import yaml
from packaging.requirements import Requirement

from ops.packaging.airgap import images as image_ops
from ops.packaging.airgap.checksums import sha256_file, sign_sums, tree_digest, write_sums
from ops.packaging.airgap.manifest import PROFILES, Artifact, ImageRef, Manifest, write_manifest
from ops.packaging.airgap.pins import (
    CPU_MODELS,
    MODELS,
    TESSDATA_LICENCE,
    TESSERACT_EU_LANGUAGES,
    ModelPin,
)
from ops.packaging.airgap.sbom import SBOM_FILE, write_sbom

REPO_ROOT = Path(__file__).resolve().parents[3]
TESSDATA_GLOB = "/usr/share/tesseract-ocr/*/tessdata"
# What the installer imports beyond the standard library; copied with their dependencies.
INSTALLER_REQUIREMENTS = ("docker", "httpx")
# Carried when present, at the same path under the install folder.
OPTIONAL_COMPOSE_FILES = (
    "ops/packaging/docker/compose.scale.yml",
    "ops/packaging/docker/compose.cpu.yml",
    "ops/packaging/docker/compose.corporate.yml",
)
APPLIANCE_LICENCE = "Apache-2.0"
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?)-([^}]*))?\}")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class BundleError(Exception):
    """The bundle cannot be built; the message says what to do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"bundle.sh: {message} (see `bundle.sh --help`)\n")


# -- the compose file ----------------------------------------------------------------------------


def expand(value: str, environment: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} (unset or empty) and ${VAR-default} (unset)."""

    def value_of(match: re.Match[str]) -> str:
        name, colon, default = match.group(1), match.group(2), match.group(3) or ""
        found = environment.get(name)
        if found is None or (colon and not found):
            return default
        return found

    return _VARIABLE.sub(value_of, value)


def read_compose(files: list[Path]) -> dict[str, Any]:
    """The services as Compose will run them, not yet interpolated. One file is read as it is;
    several are merged by `docker compose config` itself (overrides, `!reset`), which needs
    Compose v2; services behind a profile are left out, as `up` leaves them."""
    if len(files) == 1:
        data = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    else:
        command = ["docker", "compose", "--project-directory", str(REPO_ROOT)]
        for path in files:
            command += ["-f", str(path)]
        try:
            merged = subprocess.run(
                # Neither interpolated nor resolved: as one file is read, and without the
                # env files, which exist only on the appliance host.
                [
                    *command,
                    "config",
                    "--no-interpolate",
                    "--no-path-resolution",
                    "--format",
                    "json",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            raise BundleError(
                f"`docker compose config` failed ({detail.strip().splitlines()[-1:]}): "
                "the profile's files need Compose v2 on the build host"
            ) from error
        data = json.loads(merged.stdout)
        data["services"] = {
            name: spec
            for name, spec in data.get("services", {}).items()
            if not spec.get("profiles")
        }
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise BundleError(f"{files[-1]}: no services found: is it the appliance's compose file?")
    return data


def compose_images(
    compose: dict[str, Any], environment: dict[str, str]
) -> list[tuple[ImageRef, dict[str, Any] | None]]:
    """One (image, its build section or None) per distinct image the services run."""
    found: dict[str, tuple[ImageRef, dict[str, Any] | None]] = {}
    for service, spec in compose["services"].items():
        if "image" not in spec:
            raise BundleError(f"service {service} names no image: give it an `image:` tag")
        reference = expand(str(spec["image"]), environment)
        if ":" not in reference.rsplit("/", 1)[-1]:
            raise BundleError(f"service {service}: image {reference} has no pinned tag")
        if reference not in found:
            build = spec.get("build")
            if build is not None:
                arguments = build.get("args") or {}
                build = {
                    **build,
                    "args": {k: expand(str(v), environment) for k, v in arguments.items()},
                }
            found[reference] = (
                ImageRef(reference, [], archive=image_ops.archive_name(reference)),
                build,
            )
        found[reference][0].services.append(service)
    return list(found.values())


def vllm_option(compose: dict[str, Any], option: str) -> str | None:
    """The value of one of the vllm service's flags, with the compose file's defaults."""
    command = [str(part) for part in compose["services"].get("vllm", {}).get("command", [])]
    if option not in command:
        return None
    return expand(command[command.index(option) + 1], {})


# -- collected files -----------------------------------------------------------------------------


def bound_files(compose: dict[str, Any]) -> list[str]:
    """Project-relative files the services bind-mount (./ops/qdrant/config.yaml...), but
    not the secrets, which the installer generates on the appliance host."""
    found = set()
    for spec in compose["services"].values():
        for volume in spec.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            source = str(source)
            if source.startswith(str(REPO_ROOT) + "/"):  # `docker compose config` resolves ./
                source = "./" + source[len(str(REPO_ROOT)) + 1 :]
            if source.startswith("./") and not source.startswith("./secrets/"):
                found.add(source[2:])
    return sorted(found)


def copy_configs(out: Path, compose: dict[str, Any]) -> list[Artifact]:
    """compose/ mirrors the install folder: the compose file, the files it binds, the
    scale-out override; plus the env template, the installer script and the sample share."""
    version = appliance_version()
    sources = {
        "compose/docker-compose.yml": REPO_ROOT / "docker-compose.yml",
        "compose/appliance.env.example": REPO_ROOT
        / "ops"
        / "packaging"
        / "docker"
        / "appliance.env.example",
        "install.sh": REPO_ROOT / "ops" / "install.sh",
    }
    for relative in bound_files(compose):
        sources[f"compose/{relative}"] = REPO_ROOT / relative
    for relative in OPTIONAL_COMPOSE_FILES:
        if (REPO_ROOT / relative).is_file():
            sources[f"compose/{relative}"] = REPO_ROOT / relative
    artifacts = []
    for relative, source in sources.items():
        if not source.is_file():
            raise BundleError(f"{source} is missing: docker-compose.yml needs it")
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        artifacts.append(_file_artifact(out, relative, relative, "config", version))
    shutil.copytree(REPO_ROOT / "ops" / "sample-share", out / "sample-share")
    artifacts.append(_folder_artifact(out, "sample-share", "sample-share", "sample", version))
    return artifacts


def copy_installer(out: Path) -> Artifact:
    """installer/: this package, and the pure-Python libraries it imports (compiled
    accelerators left out: each has a Python fallback), for the host's own python3."""
    target = out / "installer"
    for package in ("ops", "ops/packaging"):
        (target / package).mkdir(parents=True)
        shutil.copy2(REPO_ROOT / package / "__init__.py", target / package / "__init__.py")
    shutil.copytree(
        Path(__file__).parent,
        target / "ops" / "packaging" / "airgap",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    names = []
    for distribution in requirement_closure(INSTALLER_REQUIREMENTS):
        names.append(f"{distribution.metadata['Name']}=={distribution.version}")
        for file in distribution.files or []:
            if _vendorable(str(file)):
                source = Path(str(distribution.locate_file(file)))
                destination = target / "vendor" / str(file)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
    artifact = _folder_artifact(out, "installer", "installer", "installer", appliance_version())
    artifact.details["vendored"] = sorted(names)
    return artifact


def requirement_closure(names: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    seen: dict[str, importlib.metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = _normalise(pending.pop())
        if name in seen:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as error:
            raise BundleError(f"{name} is not installed: run `make setup`") from error
        seen[name] = distribution
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return sorted(seen.values(), key=lambda d: _normalise(d.metadata["Name"]))


def _vendorable(relative: str) -> bool:
    """Package files only: no scripts, bytecode or compiled accelerators, and no certifi CA
    list (the installer makes no TLS connection: the Docker engine is on its unix socket,
    Qdrant on plain HTTP inside the host; a public CA list is of no use air-gapped)."""
    parts = Path(relative).parts
    return (
        bool(parts)
        and parts[0] != ".."
        and relative != "certifi/cacert.pem"
        and "__pycache__" not in parts
        and not relative.endswith((".pyc", ".so", ".pyd"))
        and not parts[0].endswith(".data")
    )


def collect_tessdata(out: Path, say: Callable[[str], None]) -> tuple[list[Artifact], list[str]]:
    """The EU languages' packs installed on this host; the others are reported missing."""
    found: dict[str, tuple[Path, str]] = {}
    for folder in sorted(Path("/").glob(TESSDATA_GLOB.lstrip("/"))):
        for language in TESSERACT_EU_LANGUAGES:
            pack = folder / f"{language}.traineddata"
            if pack.is_file() and language not in found:
                found[language] = (pack, folder.parent.name)
    artifacts = []
    (out / "tessdata").mkdir()
    for language, (pack, tesseract_version) in sorted(found.items()):
        relative = f"tessdata/{language}.traineddata"
        shutil.copy2(pack, out / relative)
        artifacts.append(
            _file_artifact(out, relative, language, "tessdata", tesseract_version, TESSDATA_LICENCE)
        )
    missing = [language for language in TESSERACT_EU_LANGUAGES if language not in found]
    say(f"OCR packs: {', '.join(sorted(found)) or 'none'}; missing: {', '.join(missing) or 'none'}")
    return artifacts, missing


# -- images and models (connected host only) -----------------------------------------------------


def collect_images(
    out: Path,
    images: list[tuple[ImageRef, dict[str, Any] | None]],
    build_args: dict[str, str],
    build_network: str | None,
    say: Callable[[str], None],
) -> tuple[list[ImageRef], list[Artifact]]:
    """build_args override the compose files' own `args` for every image built."""
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as error:
        raise BundleError(
            f"Docker engine unreachable ({type(error).__name__}): start it, or pass --skip-images"
        ) from error
    (out / "images").mkdir()
    refs, artifacts = [], []
    for ref, build in images:
        if build is not None:
            image = image_ops.build_image(
                client,
                REPO_ROOT / build.get("context", "."),
                build["dockerfile"],
                ref.reference,
                {**_string_values(build.get("args")), **build_args},
                build_network,
                say,
            )
        else:
            image = image_ops.pull_image(client, ref.reference, say)
        say(f"saving {ref.reference} to {ref.archive}")
        digest, size = image_ops.save_image(image, ref.reference, out / ref.archive)
        described = image_ops.describe(image, ref)
        refs.append(described)
        licence = APPLIANCE_LICENCE  # our image; qdrant and vllm are Apache-2.0 as well
        artifacts.append(
            Artifact(
                name=described.repository,
                kind="image",
                version=described.tag,
                sha256=digest,
                size=size,
                licence=licence,
                path=ref.archive,
                details={
                    "reference": described.reference,
                    "image_id": described.image_id,
                    "repo_digests": described.repo_digests,
                    "services": described.services,
                },
            )
        )
    return refs, artifacts


def download_model(pin: ModelPin, target: Path, say: Callable[[str], None]) -> None:
    """snapshot_download at the pinned commit, then every file checked against the hub's
    record of that commit: sha256 for LFS files, the git blob id for the others.

    The one place that reaches the model hub, on purpose: `ops/bundle.sh` on the connected
    build host, without --skip-models. The installer never calls it, and every appliance
    process forces the hub off."""
    os.environ["HF_HUB_OFFLINE"] = "0"
    from huggingface_hub import HfApi, snapshot_download

    say(f"downloading {pin.repo_id}@{pin.revision[:12]} (large; resumes when re-run)")
    snapshot_download(
        repo_id=pin.repo_id,
        revision=pin.revision,
        local_dir=target,
        ignore_patterns=list(pin.ignore_patterns) or None,
    )
    shutil.rmtree(target / ".cache", ignore_errors=True)  # the hub client's download state
    info = HfApi().model_info(pin.repo_id, revision=pin.revision, files_metadata=True)
    expected = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        sha256 = getattr(lfs, "sha256", None) or (
            lfs.get("sha256") if isinstance(lfs, dict) else None
        )
        expected[sibling.rfilename] = ("sha256", sha256) if sha256 else ("git", sibling.blob_id)
    problems = model_file_problems(target, expected)
    if problems:
        raise BundleError(
            f"{pin.repo_id}: {problems[0]} (and {len(problems) - 1} more): download again"
        )


def model_file_problems(folder: Path, expected: Mapping[str, tuple[str, str | None]]) -> list[str]:
    problems = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        kind, digest = expected.get(relative, ("", None))
        if digest is None:
            problems.append(f"{relative} is not in the pinned revision")
        elif kind == "sha256" and sha256_file(path) != digest:
            problems.append(f"{relative}: sha256 differs from the hub's")
        elif kind == "git" and git_blob_id(path) != digest:
            problems.append(f"{relative}: git blob id differs from the hub's")
    return problems


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def collect_models(
    out: Path, profile: str, models_from: Path, say: Callable[[str], None]
) -> list[Artifact]:
    if profile == "cpu":
        return copy_packaged_models(out, models_from, say)
    artifacts = []
    for pin in MODELS:
        relative = f"models/{pin.role}"
        download_model(pin, out / relative, say)
        artifact = _folder_artifact(out, relative, pin.repo_id, "model", pin.revision, pin.licence)
        artifact.details = {"role": pin.role, "repo_id": pin.repo_id}
        artifacts.append(artifact)
    return artifacts


def copy_packaged_models(
    out: Path, models_from: Path, say: Callable[[str], None]
) -> list[Artifact]:
    """The cpu profile's model folders, as `make setup` wrote them from packages."""
    artifacts = []
    for model in CPU_MODELS:
        source = models_from / model.role
        if not (source / "config.json").is_file():
            raise BundleError(f"{source} holds no model: run `make setup`, or pass --models-from")
        relative = f"models/{model.role}"
        say(f"copying {model.name} from {source}")
        shutil.copytree(source, out / relative, ignore=shutil.ignore_patterns(".*"))
        digest, _size = tree_digest(out / relative)
        artifact = _folder_artifact(out, relative, model.name, "model", digest[:12], model.licence)
        artifact.details = {"role": model.role, "packaged_from": model.package}
        artifacts.append(artifact)
    return artifacts


# -- the whole bundle ----------------------------------------------------------------------------


def build_bundle(
    out: Path,
    options: argparse.Namespace,
    say: Callable[[str], None],
) -> Manifest:
    """options: the command line's (profile, skip_images, skip_models, sign_key, build_args,
    build_network, models_from)."""
    environment = dict(os.environ)
    production = read_compose([REPO_ROOT / "docker-compose.yml"])
    files = PROFILES[options.profile]
    compose = production if len(files) == 1 else read_compose([REPO_ROOT / f for f in files])
    images = compose_images(compose, environment)
    out.mkdir(parents=True, exist_ok=True)
    built_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()  # noqa: UP017
    # The files every service of the production file binds, whichever profile runs.
    artifacts = copy_configs(out, production)
    artifacts.append(copy_installer(out))
    tessdata, missing_languages = collect_tessdata(out, say)
    artifacts += tessdata
    refs = [ref for ref, _build in images]
    if options.skip_images:
        say("images skipped (--skip-images): the appliance host must already have them")
    else:
        refs, image_artifacts = collect_images(
            out, images, options.build_args, options.build_network, say
        )
        artifacts += image_artifacts
    if options.skip_models:
        say("models skipped (--skip-models): the appliance host must already have them")
    else:
        artifacts += collect_models(out, options.profile, options.models_from, say)
    max_model_len = vllm_option(compose, "--max-model-len")
    if max_model_len is None:
        raise BundleError("the vllm service has no --max-model-len: the compose files changed?")
    gpu_share = vllm_option(compose, "--gpu-memory-utilization")
    manifest = Manifest(
        appliance_version=appliance_version(),
        built_at=built_at,
        compose_project=str(compose.get("name", "rag-appliance")),
        services=list(compose["services"]),
        images=refs,
        images_skipped=options.skip_images,
        models_skipped=options.skip_models,
        llm_max_model_len=int(max_model_len),
        llm_gpu_memory_utilization=float(gpu_share) if gpu_share else 0.0,
        tessdata_present=[artifact.name for artifact in tessdata],
        tessdata_missing=missing_languages,
        artifacts=artifacts,
        profile=options.profile,
    )
    write_sbom(out, manifest, built_at)
    manifest.artifacts.append(
        _file_artifact(out, SBOM_FILE, "sbom", "sbom", "CycloneDX-1.5", APPLIANCE_LICENCE)
    )
    write_manifest(out, manifest)
    count = write_sums(out)
    say(f"SHA256SUMS lists {count} files")
    if options.sign_key:
        signature = sign_sums(out, options.sign_key)
        say(f"signed SHA256SUMS with {options.sign_key}: {signature.name}")
    return manifest


def appliance_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def _file_artifact(
    out: Path, relative: str, name: str, kind: str, version: str, licence: str = APPLIANCE_LICENCE
) -> Artifact:
    path = out / relative
    return Artifact(name, kind, version, sha256_file(path), path.stat().st_size, licence, relative)


def _folder_artifact(
    out: Path, relative: str, name: str, kind: str, version: str, licence: str = APPLIANCE_LICENCE
) -> Artifact:
    digest, size = tree_digest(out / relative)
    return Artifact(name, kind, version, digest, size, licence, relative)


def _string_values(mapping: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (mapping or {}).items() if v is not None}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="bundle.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="a new or empty folder")
    parser.add_argument(
        "--skip-images", action="store_true", help="no images: the host must already have them"
    )
    parser.add_argument(
        "--skip-models", action="store_true", help="no models: the host must already have them"
    )
    parser.add_argument("--sign-key", metavar="KEYID", help="gpg key that signs SHA256SUMS")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="gpu",
        help="gpu: production (default); cpu: vLLM's CPU build with the packaged small model",
    )
    parser.add_argument(
        "--models-from",
        type=Path,
        default=REPO_ROOT / "models",
        help="cpu profile: the model folders `make setup` wrote (default: ./models)",
    )
    parser.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="for every image built: BASE_IMAGE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, "
        "PIP_FIND_LINKS (a corporate mirror)",
    )
    parser.add_argument(
        "--extra-ca-cert",
        type=Path,
        metavar="FILE",
        help="PEM file of a CA the builds must trust (a TLS-inspecting proxy's)",
    )
    parser.add_argument(
        "--build-network", metavar="MODE", help="network of the build steps, e.g. host"
    )
    args = parser.parse_args(argv)
    args.build_args = {}
    for item in args.build_arg:
        name, equals, value = item.partition("=")
        if not equals or not name:
            parser.error(f"--build-arg {item}: give NAME=VALUE")
        args.build_args[name] = value
    if args.extra_ca_cert is not None:
        try:
            args.build_args["EXTRA_CA_CERT"] = args.extra_ca_cert.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--extra-ca-cert {args.extra_ca_cert}: {error}")
    out = args.out_dir.absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(
            f"bundle.sh: {out} exists and is not an empty folder: give a new one", file=sys.stderr
        )
        return EXIT_USAGE
    if args.sign_key and shutil.which("gpg") is None:
        print("bundle.sh: --sign-key needs gpg: install gnupg", file=sys.stderr)
        return EXIT_USAGE

    def say(line: str) -> None:
        print(f"[bundle] {line}", flush=True)

    try:
        manifest = build_bundle(out, args, say)
    except (BundleError, image_ops.ImageError) as error:
        print(f"bundle.sh: {error}", file=sys.stderr)
        return EXIT_FAILED
    except subprocess.CalledProcessError:
        print(f"bundle.sh: gpg could not sign with {args.sign_key}: see gpg -K", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, RuntimeError) as error:
        print(f"bundle.sh: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    say(f"bundle {manifest.appliance_version} written to {out} ({manifest.size() / 1e9:.2f} GB)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
