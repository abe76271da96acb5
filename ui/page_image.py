"""A picture of a source page, shown beside the passage it was cited from.

PDF pages are rendered with poppler's `pdftoppm`; scans (PNG, JPEG, TIFF, one frame per
page) are converted with Pillow. Each page is cached as `cache_dir/<doc_id>/<page>.png`, so
erasing a document removes its pictures with that one folder, and it is rendered again when
the source file is newer than the picture. Any failure gives no picture and one log line:
the source view then shows the passage alone.

The source is opened once, without following a link at its path (`O_NOFOLLOW`), and drawn
only if it is a regular file; its freshness, poppler's and Pillow's input all come from that
one handle. A link swapped in at an indexed path (to a file its reader may not read) is never
drawn. The caller decides who may see the page: the chat asks only for passages the reader
may read now.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

MAX_WIDTH = 1600
# A picture of more pixels than this is not drawn (a poster-sized page or a decompression bomb).
MAX_PIXELS = 40_000_000
RENDER_TIMEOUT_SECONDS = 30.0
_IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_PAGE_SIZE = re.compile(r"^Page\s+\d+\s+size:\s+([\d.]+)\s+x\s+([\d.]+)", re.MULTILINE)
_PAGE_ROTATION = re.compile(r"^Page\s+\d+\s+rot:\s+(\d+)", re.MULTILINE)

log = logging.getLogger(__name__)


class _Unavailable(Exception):
    pass


def page_image(
    path: Path, page: int | None, doc_id: str, cache_dir: Path, dpi: int = 110
) -> Path | None:
    """The PNG of page `page` (1-based; None is the first) of the file, or None when the file
    is of another type, is gone, or cannot be drawn."""
    number = 1 if page is None else page
    kind = path.suffix.lower()
    if kind != ".pdf" and kind not in _IMAGE_TYPES:
        return None
    try:
        if not _SAFE_ID.match(doc_id) or number < 1:
            raise _Unavailable("not a document id and page")
        target = cache_dir / doc_id / f"{number}.png"
        with _open_regular_file(path) as source:
            if _fresh(target, os.fstat(source).st_mtime):
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == ".pdf":
                _render_pdf_page(source, number, dpi, target)
            else:
                _convert_image_frame(source, number, target)
        return target
    except Exception as exc:  # a broken file can make Pillow raise almost anything
        log.warning("no page image for document %s page %s: %s", doc_id, number, _reason(exc))
        return None


@contextmanager
def _open_regular_file(path: Path) -> Iterator[int]:
    """A descriptor of the file at `path`: never through a link there, never a device or a
    pipe (opened without blocking, so a FIFO swapped in cannot hang the page)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise _Unavailable("the source file is gone, unreadable or a link") from exc
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _Unavailable("the source is not a regular file")
        yield descriptor
    finally:
        os.close(descriptor)


def _fresh(target: Path, source_mtime: float) -> bool:
    try:
        return target.stat().st_mtime >= source_mtime
    except OSError:
        return False


def _opened(descriptor: int) -> str:
    """A name by which a child process opens the very file of `descriptor` (passed to it)."""
    return f"/dev/fd/{descriptor}"


def _render_pdf_page(source: int, page: int, dpi: int, target: Path) -> None:
    width, height = _pdf_page_points(source, page)
    scale = min(dpi / 72, MAX_WIDTH / width)
    if width * height * scale**2 > MAX_PIXELS:
        raise _Unavailable("the page is too large to draw")
    size = ["-r", str(dpi)]
    if width * dpi / 72 > MAX_WIDTH:
        size = ["-scale-to-x", str(MAX_WIDTH), "-scale-to-y", "-1"]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".render-") as folder:
        prefix = Path(folder) / "page"
        arguments = ["-f", str(page), "-l", str(page), *size, "-png", "-singlefile"]
        _run(["pdftoppm", *arguments, _opened(source), str(prefix)], source)
        rendered = prefix.with_suffix(".png")
        if not rendered.is_file():
            raise _Unavailable("pdftoppm drew no page")
        with Image.open(rendered) as image:
            _save(image, target)


def _pdf_page_points(source: int, page: int) -> tuple[float, float]:
    """Width and height of the page as displayed (after its rotation), in points."""
    info = _run(["pdfinfo", "-f", str(page), "-l", str(page), _opened(source)], source)
    size = _PAGE_SIZE.search(info)
    if size is None:
        raise _Unavailable(f"the PDF has no page {page}")
    width, height = float(size[1]), float(size[2])
    rotation = _PAGE_ROTATION.search(info)
    if rotation and int(rotation[1]) % 180 == 90:
        width, height = height, width
    if width <= 0 or height <= 0:
        raise _Unavailable(f"page {page} has no size")
    return width, height


def _run(command: list[str], source: int) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=RENDER_TIMEOUT_SECONDS, check=False,
            pass_fds=(source,),
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise _Unavailable(f"{command[0]} took over {RENDER_TIMEOUT_SECONDS:.0f} s") from exc
    if done.returncode != 0:
        raise _Unavailable(f"{command[0]} failed with exit status {done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def _convert_image_frame(source: int, page: int, target: Path) -> None:
    with os.fdopen(os.dup(source), "rb") as file, Image.open(file) as image:
        if page > getattr(image, "n_frames", 1):
            raise _Unavailable(f"the image has no page {page}")
        image.seek(page - 1)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _Unavailable(f"the image of {width}x{height} pixels is too large to draw")
        _save(image, target)


def _save(image: Image.Image, target: Path) -> None:
    """Scale to at most MAX_WIDTH wide and write the PNG whole or not at all."""
    if image.mode not in ("1", "L", "LA", "RGB", "RGBA", "P"):
        image = image.convert("RGB")
    if image.width > MAX_WIDTH:
        if image.mode in ("1", "P"):  # resampled smoothly, not by dropping pixels
            image = image.convert("L" if image.mode == "1" else "RGBA")
        height = max(1, round(image.height * MAX_WIDTH / image.width))
        image = image.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=".png")
    os.close(handle)
    try:
        image.save(partial, format="PNG")
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())[:200] or type(exc).__name__
