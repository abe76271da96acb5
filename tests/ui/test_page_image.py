from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from ops.tools.pdf_writer import one_page_text_pdf
from settings import PROJECT_ROOT
from ui import page_image as module
from ui.page_image import MAX_WIDTH, page_image

FINANCE = PROJECT_ROOT / "ops" / "sample-share" / "finance"
MINUTES = FINANCE / "board-minutes-2026-03.pdf"  # two A4 pages
SCAN = FINANCE / "harbour-renovation-memo.png"
DOC = "0b7e8a44-1f7c-5f0a-9d2e-3c4b5a6d7e8f"


def pixels(path: Path) -> tuple[tuple[int, int], str]:
    with Image.open(path) as image:
        return image.size, image.format or ""


def test_a_pdf_page_is_drawn_at_the_asked_resolution_and_cached_by_document_and_page(
    tmp_path: Path,
) -> None:
    image = page_image(MINUTES, 2, DOC, tmp_path, dpi=110)
    assert image == tmp_path / DOC / "2.png"
    size, kind = pixels(image)
    assert kind == "PNG"
    width, height = size
    assert abs(width - 595.44 * 110 / 72) <= 1 and abs(height - 842.04 * 110 / 72) <= 1
    assert [p.name for p in (tmp_path / DOC).iterdir()] == ["2.png"]  # no render leftovers


def test_the_two_pages_of_a_pdf_are_different_pictures(tmp_path: Path) -> None:
    first = page_image(MINUTES, 1, DOC, tmp_path)
    second = page_image(MINUTES, 2, DOC, tmp_path)
    assert first and second
    assert first.read_bytes() != second.read_bytes()


def test_a_cached_page_is_reused_until_the_source_file_changes(tmp_path: Path) -> None:
    source = tmp_path / "minutes.pdf"
    shutil.copy(MINUTES, source)
    os.utime(source, (1_000_000, 1_000_000))
    image = page_image(source, 1, DOC, tmp_path / "cache")
    assert image is not None
    os.utime(image, (2_000_000, 2_000_000))
    assert page_image(source, 1, DOC, tmp_path / "cache") == image
    assert image.stat().st_mtime == 2_000_000  # not drawn again

    source.write_bytes(one_page_text_pdf(["A different first page"]))
    os.utime(source, (3_000_000, 3_000_000))
    assert page_image(source, 1, DOC, tmp_path / "cache") == image
    assert image.stat().st_mtime > 2_000_000


def test_a_wide_pdf_page_is_drawn_no_wider_than_the_limit(tmp_path: Path) -> None:
    wide = tmp_path / "poster.pdf"
    wide.write_bytes(one_page_text_pdf(["Poster"]).replace(b"0 0 595 842", b"0 0 2384 842"))
    image = page_image(wide, 1, DOC, tmp_path / "cache", dpi=300)
    assert image is not None
    (width, _), _ = pixels(image)
    assert width == MAX_WIDTH


def test_a_scan_without_pages_is_its_first_page(tmp_path: Path) -> None:
    image = page_image(SCAN, None, DOC, tmp_path)
    assert image == tmp_path / DOC / "1.png"
    with Image.open(SCAN) as original, Image.open(image) as drawn:
        assert drawn.width == min(original.width, MAX_WIDTH)


def test_each_page_of_a_multi_page_tiff_is_its_own_frame(tmp_path: Path) -> None:
    tiff = tmp_path / "scan.tiff"
    red = Image.new("RGB", (400, 300), (255, 0, 0))
    blue = Image.new("RGB", (400, 300), (0, 0, 255))
    red.save(tiff, save_all=True, append_images=[blue])
    one = page_image(tiff, 1, DOC, tmp_path / "cache")
    two = page_image(tiff, 2, DOC, tmp_path / "cache")
    assert one and two
    with Image.open(one) as first, Image.open(two) as second:
        assert first.convert("RGB").getpixel((10, 10)) == (255, 0, 0)
        assert second.convert("RGB").getpixel((10, 10)) == (0, 0, 255)
    assert page_image(tiff, 3, DOC, tmp_path / "cache") is None


def test_a_wide_jpeg_in_cmyk_is_scaled_down_to_an_rgb_png(tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.JPG"
    Image.new("CMYK", (4000, 1000), (0, 255, 255, 0)).save(jpeg)
    image = page_image(jpeg, None, DOC, tmp_path / "cache")
    assert image is not None
    with Image.open(image) as drawn:
        assert drawn.size == (MAX_WIDTH, 400)
        assert drawn.mode == "RGB"
        red, green, blue = drawn.getpixel((800, 200))  # type: ignore[misc]
        assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("name", ["report.docx", "notes.txt", "mail.eml"])
def test_other_file_types_have_no_picture(tmp_path: Path, name: str) -> None:
    other = tmp_path / name
    other.write_text("text")
    assert page_image(other, 1, DOC, tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()


def test_a_page_past_the_end_of_a_pdf_has_no_picture(tmp_path: Path) -> None:
    assert page_image(MINUTES, 3, DOC, tmp_path) is None
    assert page_image(MINUTES, 0, DOC, tmp_path) is None


def test_a_missing_file_gives_no_picture_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ui.page_image"):
        assert page_image(tmp_path / "gone.pdf", 1, DOC, tmp_path / "cache") is None
    assert len(caplog.records) == 1
    assert DOC in caplog.records[0].getMessage()
    assert "gone" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not a PDF body\n"),
        ("broken.png", b"\x89PNG\r\n\x1a\nnot really"),
        ("truncated.tif", b"II*\x00\x08\x00\x00\x00"),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_an_unreadable_file_gives_no_picture(tmp_path: Path, name: str, content: bytes) -> None:
    broken = tmp_path / name
    broken.write_bytes(content)
    assert page_image(broken, 1, DOC, tmp_path / "cache") is None
    assert not (tmp_path / "cache" / DOC / "1.png").exists()


def test_a_document_id_that_is_not_a_plain_name_cannot_leave_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert page_image(SCAN, 1, "../outside", cache) is None
    assert page_image(SCAN, 1, "", cache) is None
    assert not (tmp_path / "1.png").exists() and not cache.exists()


def test_a_renderer_that_hangs_gives_no_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        raise subprocess.TimeoutExpired(command, module.RENDER_TIMEOUT_SECONDS)

    monkeypatch.setattr(module.subprocess, "run", hang)
    assert page_image(MINUTES, 1, DOC, tmp_path) is None


@pytest.mark.parametrize("secret", [MINUTES, SCAN], ids=["pdf", "scan"])
def test_page_image_does_not_follow_a_link_swapped_in_at_the_path(
    tmp_path: Path, secret: Path
) -> None:
    # `public/notes` was indexed as a file anyone may read; a link to a file its reader may
    # not read has since taken its place.
    public = tmp_path / "public"
    public.mkdir()
    indexed = public / f"notes{secret.suffix}"
    indexed.write_bytes(secret.read_bytes())
    assert page_image(indexed, 1, DOC, tmp_path / "cache") is not None  # drawn while a file
    shutil.rmtree(tmp_path / "cache")
    indexed.unlink()
    indexed.symlink_to(secret)
    assert page_image(indexed, 1, DOC, tmp_path / "cache") is None
    assert not (tmp_path / "cache" / DOC / "1.png").exists()


def test_a_pipe_swapped_in_at_the_path_gives_no_picture_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "scan.png"
    os.mkfifo(pipe)  # opening it for reading would wait for a writer that never comes
    assert page_image(pipe, 1, DOC, tmp_path / "cache") is None
