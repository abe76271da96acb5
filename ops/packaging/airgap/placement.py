"""Putting the bundle's files in place on the appliance host: compose file, env files,
secrets, read-only model folders. Files the operator owns (appliance.env, secrets/) are
written only when absent, never overwritten."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

APP_GID = 10001  # the app image's `rag` group: it reads the secrets
SECRET_NAMES = ("qdrant_api_key", "vllm_api_key")
HOST_ENV_FILE = ".env"  # read by Compose itself: host paths, image tag, tensor parallel size


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def write_host_env(install_dir: Path, values: dict[str, str], managed: tuple[str, ...]) -> str:
    """Create .env with values; in an existing one, set only the `managed` keys (the image
    tag follows the bundle) and keep the rest as the operator left it."""
    path = install_dir / HOST_ENV_FILE
    if not path.exists():
        body = "".join(f"{key}={value}\n" for key, value in values.items())
        path.write_text("# Host-side settings of docker-compose.yml.\n" + body, encoding="utf-8")
        return "written"
    lines = path.read_text(encoding="utf-8").splitlines()
    seen = set()
    for index, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if key in managed and "=" in line:
            lines[index] = f"{key}={values[key]}"
            seen.add(key)
    lines += [f"{key}={values[key]}" for key in managed if key not in seen]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "updated"


def write_appliance_env(install_dir: Path, template: Path) -> bool:
    """appliance.env from the template, when absent; True when written."""
    target = install_dir / "appliance.env"
    if target.exists():
        return False
    shutil.copyfile(template, target)
    target.chmod(0o640)
    return True


def write_secrets(install_dir: Path) -> list[str]:
    """A random key per missing secret file, mode 0440, group 10001 when run as root."""
    folder = install_dir / "secrets"
    folder.mkdir(mode=0o750, exist_ok=True)
    written = []
    for name in SECRET_NAMES:
        path = folder / name
        if path.exists():
            continue
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        os.chmod(path, 0o440)
        if os.geteuid() == 0:
            os.chown(path, 0, APP_GID)
        written.append(name)
    return written


def install_compose_files(source: Path, install_dir: Path) -> dict[str, str]:
    """Every file of the bundle's compose/ at the same path under the install folder (they
    are the appliance's, not the operator's); a changed one keeps its old copy as .previous."""
    states = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        target = install_dir / relative
        if target.is_file() and target.read_bytes() == path.read_bytes():
            states[relative.as_posix()] = "unchanged"
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file():
            shutil.copyfile(target, target.with_name(target.name + ".previous"))
        shutil.copyfile(path, target)
        target.chmod(0o644)
        states[relative.as_posix()] = "installed"
    return states


def make_read_only(folder: Path) -> None:
    """Readable by everyone, writable by no one (folders 0555, files 0444): the services run
    as their own users (uid 10001, 10002), and models and OCR packs hold nothing secret."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o555 if path.is_dir() else 0o444)


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def install_folder(source: Path, target: Path, digest: str) -> str:
    """Copy source to target read-only, replacing an older copy; 'unchanged' when the
    digest recorded beside the target (`.<name>.sha256`) is already this one."""
    marker = target.with_name(f".{target.name}.sha256")
    if target.is_dir() and marker.is_file() and marker.read_text().strip() == digest:
        return "unchanged"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    for leftover in (partial, old):
        if leftover.exists():
            _make_writable(leftover)
            shutil.rmtree(leftover)
    shutil.copytree(source, partial)
    make_read_only(partial)
    if target.exists():
        _make_writable(target)  # the folders only, so that the old copy can be removed
        target.rename(old)
    partial.rename(target)
    if old.exists():
        shutil.rmtree(old)
    marker.write_text(digest + "\n")
    return "installed"


def install_installer(bundle: Path, install_dir: Path) -> Path:
    """INSTALL_DIR/installer: this installer and its libraries, replaced by each install, for
    the boot unit that applies the seal (`python3 -m ops.packaging.airgap.seal apply`).
    From a checkout (no installer/ in the bundle folder) nothing is copied."""
    source, target = bundle / "installer", install_dir / "installer"
    if not source.is_dir():
        return target
    staging = install_dir / ".installer.new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
