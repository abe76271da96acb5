"""Tesseract OCR for images and for PDF pages without a text layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytesseract
from PIL import Image

from ingest.errors import OcrError

# One Tesseract thread per process: pages run side by side in workers instead.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def ocr_image(image: Image.Image, languages: str, source: str) -> str:
    try:
        return str(pytesseract.image_to_string(image.convert("L"), lang=languages))
    except (pytesseract.TesseractError, pytesseract.TesseractNotFoundError, OSError) as exc:
        raise OcrError(source, f"OCR failed: {_one_line(exc)}") from exc


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
