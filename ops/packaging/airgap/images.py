"""The container images, through the Docker SDK: built or pulled and saved on the connected
host; loaded and checked against the manifest on the appliance host.

An image's id is the sha256 digest of its configuration, the same on every engine that holds
it: the installer compares the id of each loaded image with the one recorded at build time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.packaging.airgap.manifest import ImageRef

_SAVE_CHUNK = 4 * 1024 * 1024


class ImageError(Exception):
    """An image could not be built, saved, loaded, or is not the one the manifest names."""


def archive_name(reference: str) -> str:
    """images/<file>.tar for a repository:tag, with only characters safe in a file name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in reference)
    return f"images/{safe}.tar"


def build_image(
    client: Any,
    context: Path,
    dockerfile: str,
    reference: str,
    build_args: dict[str, str],
    network: str | None,
    say: Callable[[str], None],
) -> Any:
    """Never pulls: the base image is built locally (ops/packaging/docker/base.sh). Each
    Dockerfile step is reported as it starts (`Step 4/19 : RUN ...`), since a step that
    installs the Python packages takes minutes."""
    say(f"building {reference} from {dockerfile} (the package mirrors must be reachable)")
    recent: list[str] = []
    stream = client.api.build(
        path=str(context),
        dockerfile=dockerfile,
        tag=reference,
        rm=True,
        forcerm=True,
        pull=False,
        buildargs=build_args,
        network_mode=network,
        decode=True,
    )
    for event in stream:
        if "error" in event:
            tail = " | ".join(recent)[-600:]
            raise ImageError(f"building {reference} failed: {event['error'].strip()}: {tail}")
        line = str(event.get("stream", "")).strip()
        if not line:
            continue
        recent = [*recent[-9:], line]
        if line.startswith("Step "):
            say(f"  {reference}: {line[:110]}")
    return client.images.get(reference)


def pull_image(client: Any, reference: str, say: Callable[[str], None]) -> Any:
    say(f"pulling {reference}")
    repository, tag = reference.rsplit(":", 1)
    return client.images.pull(repository, tag=tag)


def save_image(image: Any, reference: str, target: Path) -> tuple[str, int]:
    """Stream `docker save` of one tag into target; return (sha256 of the tar, its size)."""
    digest, size = hashlib.sha256(), 0
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as handle:
        for chunk in image.save(chunk_size=_SAVE_CHUNK, named=reference):
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    partial.rename(target)
    return digest.hexdigest(), size


def describe(image: Any, ref: ImageRef) -> ImageRef:
    return ImageRef(
        reference=ref.reference,
        services=ref.services,
        image_id=str(image.id),
        repo_digests=list(image.attrs.get("RepoDigests") or []),
        archive=ref.archive,
    )


def load_images(
    client: Any, bundle: Path, refs: list[ImageRef], say: Callable[[str], None]
) -> None:
    for ref in refs:
        say(f"loading {ref.reference} from {ref.archive}")
        with (bundle / ref.archive).open("rb") as handle:
            client.images.load(handle)


def mismatched_images(client: Any, refs: list[ImageRef]) -> list[str]:
    """One line per image that the engine lacks or holds with another id than the manifest's."""
    from docker.errors import ImageNotFound

    problems = []
    for ref in refs:
        try:
            loaded = client.images.get(ref.reference)
        except ImageNotFound:
            problems.append(
                f"{ref.reference}: not in the Docker engine after loading {ref.archive}"
            )
            continue
        if loaded.id != ref.image_id:
            problems.append(
                f"{ref.reference}: loaded image id {loaded.id} differs from the manifest's "
                f"{ref.image_id}: build the bundle again"
            )
    return problems
