"""SHA256SUMS: written over every file of a bundle, checked before anything is installed.

The format is sha256sum's (`<64 hex>  <relative path>`), so `sha256sum -c SHA256SUMS` in the
bundle folder checks it too. Verification also reports files that are not listed, symlinks and
paths that leave the bundle: a bundle holds exactly the regular files its sums name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SUMS_FILE = "SHA256SUMS"
SIGNATURE_FILE = "SHA256SUMS.sig"
_UNSUMMED = frozenset({SUMS_FILE, SIGNATURE_FILE})
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle, said on one line that names the file."""

    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(bundle: Path) -> Iterator[str]:
    """Every entry under the bundle but folders, the sums and their signature, as relative
    paths; a symlink (to a folder too) is an entry, never followed."""
    entries = []
    for folder, dirs, files in os.walk(bundle, followlinks=False):
        base = Path(folder)
        links = [name for name in dirs if (base / name).is_symlink()]
        for name in files + links:
            entries.append((base / name).relative_to(bundle).as_posix())
    yield from sorted(entry for entry in entries if entry not in _UNSUMMED)


def tree_digest(folder: Path) -> tuple[str, int]:
    """(sha256 over the sorted `sum  path` lines of every file under folder, total size)."""
    lines, size = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lines.append(f"{sha256_file(path)}  {path.relative_to(folder).as_posix()}\n")
        size += path.stat().st_size
    return hashlib.sha256("".join(lines).encode()).hexdigest(), size


def write_sums(bundle: Path) -> int:
    """Write SHA256SUMS over every file in the bundle; return how many files it lists."""
    lines = []
    for relative in bundle_files(bundle):
        if "\n" in relative or "\\" in relative:
            raise ValueError(f"{relative!r}: rename it, sha256sum cannot list such a name")
        lines.append(f"{sha256_file(bundle / relative)}  {relative}\n")
    (bundle / SUMS_FILE).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def read_sums(bundle: Path) -> tuple[dict[str, str], list[Problem]]:
    """The listed {path: sha256} and the problems of the list itself."""
    listed: dict[str, str] = {}
    problems: list[Problem] = []
    text = (bundle / SUMS_FILE).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            problems.append(Problem(SUMS_FILE, f"line {number} is not `<sha256>  <path>`"))
            continue
        digest, relative = match.groups()
        if not _inside(relative):
            problems.append(Problem(relative, f"{SUMS_FILE} names a path outside the bundle"))
        elif relative in listed:
            problems.append(Problem(relative, f"listed twice in {SUMS_FILE}"))
        else:
            listed[relative] = digest
    return listed, problems


def verify_bundle(bundle: Path) -> list[Problem]:
    """Everything that makes the bundle differ from its SHA256SUMS; empty when intact."""
    if not bundle.is_dir():
        return [Problem(str(bundle), "not a folder: give the path of the unpacked bundle")]
    if not (bundle / SUMS_FILE).is_file():
        return [Problem(SUMS_FILE, "missing: this is not a bundle, or it was copied partly")]
    listed, problems = read_sums(bundle)
    present = set(bundle_files(bundle))
    for relative, expected in listed.items():
        path = bundle / relative
        if relative not in present:
            problems.append(Problem(relative, "missing: copy the bundle again"))
        elif path.is_symlink() or not path.is_file():
            problems.append(Problem(relative, "not a regular file: copy the bundle again"))
        elif sha256_file(path) != expected:
            problems.append(Problem(relative, "checksum mismatch: the file was altered"))
    for relative in sorted(present - listed.keys()):
        problems.append(Problem(relative, f"extra file not listed in {SUMS_FILE}: remove it"))
    return problems


def verify_signature(bundle: Path, gpg: str | None = None) -> Problem | None:
    """Check SHA256SUMS.sig with gpg against the operator's keyring; None when it is good."""
    gpg = gpg or shutil.which("gpg")
    if gpg is None:
        return Problem(SIGNATURE_FILE, "present but gpg is not installed: install gnupg")
    result = subprocess.run(
        [gpg, "--batch", "--verify", str(bundle / SIGNATURE_FILE), str(bundle / SUMS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return Problem(
            SIGNATURE_FILE,
            "bad or unknown signature of SHA256SUMS: import the builder's public key "
            "(gpg --import) or get the bundle again",
        )
    return None


def sign_sums(bundle: Path, key_id: str, gpg: str | None = None) -> Path:
    gpg = gpg or shutil.which("gpg")
    if gpg is None:
        raise RuntimeError("--sign-key needs gpg: install gnupg or build without signing")
    signature = bundle / SIGNATURE_FILE
    signature.unlink(missing_ok=True)
    subprocess.run(
        [gpg, "--batch", "--yes", "--local-user", key_id, "--output", str(signature)]
        + ["--detach-sign", str(bundle / SUMS_FILE)],
        check=True,
        capture_output=True,
    )
    return signature


def _inside(relative: str) -> bool:
    path = PurePosixPath(relative)
    return not path.is_absolute() and ".." not in path.parts and relative not in _UNSUMMED
