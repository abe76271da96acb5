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


def ocr_image_file(path: Path, languages: str, max_pixels: int) -> list[tuple[int, str]]:
    """Text of each frame of an image file (a multi-page TIFF has several), 1-based. A frame
    of more than `max_pixels` fails the file before its pixels are decoded."""
    pages = []
    with Image.open(path) as image:
        frame_count = getattr(image, "n_frames", 1)
        for index in range(frame_count):
            image.seek(index)
            width, height = image.size
            if width * height > max_pixels:
                raise OcrError(
                    str(path),
                    f"image of {width}x{height} pixels is over the OCR limit of "
                    f"{max_pixels // 1_000_000} megapixels (ocr.max_megapixels)",
                )
            pages.append((index + 1, ocr_image(image, languages, str(path))))
    return pages


def ocr_pdf_page(
    path: Path,
    page: int,
    languages: str,
    dpi: int,
    size_points: tuple[float, float] | None = None,
    max_pixels: int | None = None,
) -> str:
    """OCR of one rendered page; a page of `size_points` that would render to more than
    `max_pixels` is rendered at the highest resolution that fits instead."""
    from pdf2image import convert_from_path

    if size_points and max_pixels:
        square_inches = max(size_points[0] * size_points[1], 1.0) / 72 / 72
        dpi = min(dpi, int((max_pixels / square_inches) ** 0.5))
        if dpi < 10:
            raise OcrError(str(path), f"page {page} is too large to render for OCR")
    images = convert_from_path(str(path), dpi=dpi, first_page=page, last_page=page)
    if not images:
        raise OcrError(str(path), f"page {page} could not be rendered")
    return ocr_image(images[0], languages, f"{path} page {page}")


def installed_languages() -> set[str]:
    return set(pytesseract.get_languages(config=""))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
