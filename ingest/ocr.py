"""Tesseract OCR for images and for PDF pages without a text layer."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytesseract
from PIL import Image

from ingest.errors import OcrError

# Tesseract's OpenMP threads make a page several times slower, not faster (1.8 s against
# 8.7 s for one A4 page at 300 dpi here); pages run side by side in workers instead.
_TESSERACT_ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}


def ocr_image(image: Image.Image, languages: str, source: str) -> str:
    with tempfile.TemporaryDirectory(prefix="rag-ocr-") as folder:
        page = Path(folder) / "page.pgm"  # uncompressed: nothing to encode or decode
        image.convert("L").save(page)
        try:
            done = subprocess.run(
                [pytesseract.pytesseract.tesseract_cmd, str(page), "stdout", "-l", languages],
                capture_output=True,
                env=_TESSERACT_ENV,
                check=False,
            )
        except OSError as exc:
            raise OcrError(source, f"OCR failed: cannot run tesseract: {exc.strerror}") from exc
    if done.returncode != 0:
        message = _one_line(done.stderr.decode("utf-8", "replace"))
        raise OcrError(source, f"OCR failed: {message or f'exit status {done.returncode}'}")
    return done.stdout.decode("utf-8", "replace")


def ocr_image_file(path: Path, languages: str) -> list[tuple[int, str]]:
    """Text of each frame of an image file (a multi-page TIFF has several), 1-based."""
    pages = []
    with Image.open(path) as image:
        frame_count = getattr(image, "n_frames", 1)
        for index in range(frame_count):
            image.seek(index)
            pages.append((index + 1, ocr_image(image, languages, str(path))))
    return pages


def ocr_pdf_page(path: Path, page: int, languages: str, dpi: int) -> str:
    from pdf2image import convert_from_path

    images = convert_from_path(str(path), dpi=dpi, first_page=page, last_page=page)
    if not images:
        raise OcrError(str(path), f"page {page} could not be rendered")
    return ocr_image(images[0], languages, f"{path} page {page}")


def installed_languages() -> set[str]:
    return set(pytesseract.get_languages(config=""))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
