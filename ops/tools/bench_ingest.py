"""Ingestion benchmark: the pipeline against a newcomer's loop on the same generated share.

Prints one JSON object per line:
  {"bench": "ingest", "files", "pages", "failed", "seconds", "naive_seconds", "speedup",
   "rescan_seconds", "rescan_speedup", "peak_rss_mb", "naive_peak_rss_mb", "embedder"}
  {"bench": "ocr", "pages", "seconds", "tesseract_seconds", "ratio", "pages_per_second"}
  {"bench": "ingest_memory", "files", "peak_rss_mb", "growth"}
`naive` is one process calling unstructured's `partition` on each file (OCR-only where a PDF
has no text layer), embedding each file's elements and upserting each file. Targets:
speedup >= 3 on 2 cores, rescan_speedup >= 50, peak_rss_mb <= 3000, OCR ratio near 1.
`ingest_memory` ingests shares of small notes ten times apart in size: `files` and
`peak_rss_mb` are pairs, `growth` their ratio of peaks; the target is a peak that does not
grow with the number of files (growth near 1).
Both the pipeline and the naive loop embed with the configured embedder (RAG_EMBEDDER__MODEL_DIR,
else the packaged default); `embedder` is its model id (the folder's name and a fingerprint).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ops.tools.pdf_writer import one_page_text_pdf
from retrieval.embedder import model_identity
from settings import Settings, enforce_offline, protect_state

enforce_offline()

WORDS = [
    "budget", "contract", "supplier", "invoice", "approval", "committee", "harbour", "crane",
    "vessel", "berth", "tariff", "maintenance", "schedule", "safety", "inspection", "permit",
    "customs", "cargo", "container", "terminal", "lease", "procurement", "audit", "report",
    "quarter", "staff", "training", "policy", "deadline", "payment", "reimbursement",
]  # fmt: skip


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(12)]
    return f"Item {n}: the {' '.join(words)} is set at EUR {rng.randint(1000, 999999):,}."


def paragraphs(rng: random.Random, count: int, seed: int) -> list[str]:
    return [
        " ".join(sentence(rng, seed * 100 + i * 10 + j) for j in range(4)) for i in range(count)
    ]


def scanned_pdf(path: Path, pages: list[list[str]]) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=26)
    images = []
    for lines in pages:
        page = Image.new("L", (1654, 2339), 250)
        draw = ImageDraw.Draw(page)
        for row, line in enumerate(lines):
            draw.text((120, 150 + row * 44), line, fill=10, font=font)
        images.append(page)
    images[0].save(path, save_all=True, append_images=images[1:], resolution=200)


def build_share(root: Path, files: int, scanned_pages: int, seed: int = 7) -> None:
    from docx import Document

    rng = random.Random(seed)
    scans = max(1, scanned_pages // 2)
    kinds = ["md"] * 4 + ["txt"] * 2 + ["html", "csv", "docx", "docx", "pdf"]
    for n in range(files - scans):
        folder = root / f"dept-{n % 7}" / f"year-{2015 + n % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = kinds[n % len(kinds)]
        body = paragraphs(rng, 4, n)
        name = folder / f"doc-{n:04d}.{kind}"
        if kind == "md":
            name.write_text(
                f"# Memo {n}\n\n" + "\n\n".join(f"## Part {i}\n\n{p}" for i, p in enumerate(body))
            )
        elif kind == "txt":
            name.write_text("\n\n".join(body))
        elif kind == "html":
            name.write_text(f"<h1>Notice {n}</h1>" + "".join(f"<p>{p}</p>" for p in body))
        elif kind == "csv":
            rows = "\n".join(f"{i},{rng.choice(WORDS)},{rng.randint(1, 9999)}" for i in range(40))
            name.write_text("id,item,amount\n" + rows + "\n")
        elif kind == "docx":
            document = Document()
            document.add_heading(f"Report {n}", 1)
            for p in body:
                document.add_paragraph(p)
            document.save(str(name))
        else:
            name.write_bytes(one_page_text_pdf([f"Guideline {n}"] + [s[:95] for s in body]))
    scan_folder = root / "scans"
    scan_folder.mkdir(parents=True, exist_ok=True)
    for n in range(scans):
        pages = [[f"Minutes {n} page {p + 1}"] + [sentence(rng, n * 10 + i)[:80] for i in range(12)]
                 for p in range(2)]  # fmt: skip
        scanned_pdf(scan_folder / f"scan-{n:03d}.pdf", pages)


def build_notes(root: Path, files: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    for n in range(files):
        folder = root / f"team-{n % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{n:05d}.md").write_text(f"# Note {n}\n\n{sentence(rng, n)}\n")


def measured(command: list[str]) -> tuple[dict[str, Any], float]:
    """Run a phase in its own process; its JSON result and the peak memory of its
    whole process tree (workers, OCR children), in MB, sampled every 50 ms."""
    from ingest.workers import tree_memory

    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_memory(process.pid))
        time.sleep(0.05)
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"benchmark phase failed: {' '.join(command)}")
    return json.loads(output.strip().splitlines()[-1]), peak / 1024 / 1024


def phase(name: str, share: Path, data: Path) -> tuple[dict[str, Any], float]:
    """A phase run in a process of its own: its JSON result and its peak memory in MB."""
    command = [sys.executable, "-m", "ops.tools.bench_ingest", "--phase", name,
               "--share", str(share), "--data", str(data)]  # fmt: skip
    return measured(command)


def phase_pipeline(share: Path, data_dir: Path) -> dict[str, Any]:
    from ingest.build import build_ingestor

    ingestor = build_ingestor(Settings(data_dir=data_dir))
    started = time.monotonic()
    report = ingestor.run([str(share)])
    return {"seconds": time.monotonic() - started, **report.as_json()}


def phase_naive(share: Path, data_dir: Path) -> dict[str, Any]:
    from unstructured.partition.auto import partition

    from retrieval.build import build_embedder, build_store
    from retrieval.models import Chunk, chunk_id, document_id

    settings = Settings(data_dir=data_dir)
    embedder = build_embedder(settings)
    store = build_store(settings)
    store.ensure_collection(embedder.dimension)
    started = time.monotonic()
    for path in sorted(p for p in share.rglob("*") if p.is_file()):
        elements = partition(filename=str(path), strategy="fast")
        if path.suffix == ".pdf" and not any(e.text.strip() for e in elements):
            elements = partition(filename=str(path), strategy="ocr_only",
                                 languages=["eng", "fra", "deu"])  # fmt: skip
        texts = [e.text for e in elements if e.text.strip()]
        doc = document_id(str(path))
        chunks = [
            Chunk(id=chunk_id(doc, i), doc_id=doc, ordinal=i, text=t, path=str(path),
                  content_sha256="", acl=frozenset({"everyone"}), mtime=0.0)
            for i, t in enumerate(texts)
        ]  # fmt: skip
        store.upsert(chunks, embedder.embed_documents(texts))
    return {"seconds": time.monotonic() - started}


def bench_ocr(share: Path, work: Path, languages: str) -> dict[str, Any]:
    from ingest.ocr import ocr_pdf_page

    scans = sorted((share / "scans").glob("*.pdf"))
    images = []
    for number, scan in enumerate(scans):
        prefix = work / f"page-{number:03d}"
        subprocess.run(
            ["pdftoppm", "-r", "300", "-gray", "-png", str(scan), str(prefix)], check=True
        )
        images += sorted(work.glob(f"page-{number:03d}*.png"))
    # Tesseract alone at its fastest: one thread (its OpenMP threads slow a page down).
    single_thread = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    started = time.monotonic()
    for image in images:
        subprocess.run(["tesseract", str(image), "-", "-l", languages],
                       capture_output=True, check=True, env=single_thread)  # fmt: skip
    tesseract_seconds = time.monotonic() - started
    started = time.monotonic()
    for scan in scans:
        for page in (1, 2):
            ocr_pdf_page(scan, page, languages, 300)
    seconds = time.monotonic() - started
    return {"bench": "ocr", "pages": len(images), "seconds": round(seconds, 2),
            "tesseract_seconds": round(tesseract_seconds, 2),
            "ratio": round(seconds / tesseract_seconds, 2),
            "pages_per_second": round(len(images) / seconds, 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--scanned-pages", type=int, default=30)
    parser.add_argument("--notes", type=int, default=5000, help="the larger notes share")
    parser.add_argument("--phase", choices=["naive", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--share", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    protect_state()
    if args.phase:
        run = phase_naive if args.phase == "naive" else phase_pipeline
        print(json.dumps(run(args.share, args.data)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        share = work / "share"
        build_share(share, args.files, args.scanned_pages)

        naive, naive_peak = phase("naive", share, work / "naive")
        first, peak = phase("pipeline", share, work / "pipeline")
        rescan, _ = phase("pipeline", share, work / "pipeline")
        assert rescan["unchanged"] == first["files_seen"], "the rescan found changes"
        print(json.dumps({
            "bench": "ingest", "files": first["files_seen"], "pages": first["pages"],
            "failed": len(first["failed"]), "seconds": round(first["seconds"], 2),
            "naive_seconds": round(naive["seconds"], 2),
            "speedup": round(naive["seconds"] / first["seconds"], 2),
            "rescan_seconds": round(rescan["seconds"], 3),
            "rescan_speedup": round(first["seconds"] / rescan["seconds"], 1),
            "peak_rss_mb": round(peak), "naive_peak_rss_mb": round(naive_peak),
            "embedder": model_identity(Settings().embedder_dir),
        }), flush=True)  # fmt: skip
        ocr_work = work / "ocr"
        ocr_work.mkdir()
        print(json.dumps(bench_ocr(share, ocr_work, Settings().ocr.languages)), flush=True)

        peaks = []
        sizes = (args.notes // 10, args.notes)
        for size in sizes:
            notes = work / f"notes-{size}"
            build_notes(notes, size)
            result, notes_peak = phase("pipeline", notes, work / f"notes-data-{size}")
            assert result["indexed"] == size, "the notes were not all indexed"
            peaks.append(round(notes_peak))
        print(json.dumps({"bench": "ingest_memory", "files": list(sizes), "peak_rss_mb": peaks,
                          "growth": round(peaks[1] / peaks[0], 2)}), flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
