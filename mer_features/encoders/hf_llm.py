"""``hf:`` decoder-only LLMs as transcript encoders: Llama, Mistral, Qwen2/Qwen3, Gemma, BLOOM.

``hf:<folder or hub id>`` whose checkpoint is a causal language model comes here rather than to
the encoder-only text family (:mod:`mer_features.encoders.text`, which dispatches by model type).
Only the base model is loaded (``AutoModel``: no language-model head). Checkpoints that ship
their own modelling code (``auto_map`` in config.json, e.g. Baichuan) run only with an explicit
``-o trust_remote_code=true``: that code runs in this process.

Per text: an optional ``prompt`` template (``-o "prompt=Transcript: {text} Emotion:"``; the
text replaces ``{text}``) is filled in and tokenised as one string with the tokenizer's own
special tokens (a BOS for Llama and Gemma, none for Qwen2). The text's own tokens are those
whose characters lie inside the text (from the fast tokenizer's offsets): they are the frames,
array of shape (n_tokens, dim), with their token indices as times (frame rate None).

Pooling (the utterance vector): ``mean`` (default), the mean of the chosen layer over the
text's own tokens (the prompt and special tokens left out); ``last``, the state of the last
token of the whole input (the prompt's end when there is one: what a causal model has read
everything up to, as in PromptEOL-style sentence embeddings). Layers: ``last``,
``mean-last-4`` (default), ``all`` (every hidden state, utterance of shape (layers + 1, dim)),
or an index ``N`` (``0`` the embeddings, ``-1`` the last layer, ``-8`` the eighth from the end;
middle layers of large LLMs often carry more of what a probe needs than the last one).

Batching: texts are padded on the right, with positions counted from 0 in every row. A causal
model's token attends only to earlier tokens, so the right padding is never read by a real
token and a text's features do not depend on its batch-mates (a test compares batched with one
by one). Long texts keep the whole prompt: the text is cut at the token that makes the input
exceed ``max_length`` (flagged ``"truncated": true``; default, the model's position limit).

Precision: ``--dtype bf16`` or ``fp16`` loads the weights in that precision (half the memory;
on a GPU they are loaded straight onto it), fp32 otherwise. A 7B model is about 7e9 parameters
x 2 bytes = 14 GB in bf16 (28 GB in fp32), a 13B 26 GB: one 40-80 GB GPU holds either in bf16
(docs/encoders.md: :func:`parameter_count` from the config, per model).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.inputs import TextInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec
from mer_features.encoders.hf_common import (LAYER_CHOICES, load_config, load_model,
                                             resolve_model_dir, weights_identity)
from mer_features.errors import ClipError, EncoderError

LLM_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "bloom")
"""Built-in decoder-only families, each checked on a tiny checkpoint (batched == one by one)."""
POOLINGS = ("mean", "last")
_LAYER_INDEX = re.compile(r"^-?\d+$")
_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class HFLLMConfig:
    model: str
    layer: str = "mean-last-4"
    """last, mean-last-4, all, or a hidden-state index (0 the embeddings, -1 the last)."""
    pooling: str = "mean"
    prompt: str | None = None
    """A template holding ``{text}`` once; None: the text alone."""
    max_length: int | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.layer not in LAYER_CHOICES and not _LAYER_INDEX.match(str(self.layer)):
            raise ValueError(f"layer must be one of {', '.join(LAYER_CHOICES)} or a hidden-state "
                             f"index such as 16 or -8; got '{self.layer}'")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got '{self.pooling}'")
        if self.prompt is not None and self.prompt.count("{text}") != 1:
            raise ValueError(f"prompt must hold '{{text}}' exactly once, where the transcript "
                             f"goes; got {self.prompt!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2; got {self.max_length}")


def read_config_json(model_dir: Path) -> dict[str, Any]:
    try:
        value = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def is_causal_lm(config: dict[str, Any]) -> bool:
    """Whether a checkpoint's config.json describes a decoder-only language model."""
    architectures = config.get("architectures") or []
    return (config.get("model_type") in LLM_TYPES
            or any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in architectures))


def parameter_count(hf_config: Any) -> int:
    """Parameters of a Llama-style decoder (embeddings, attention with grouped KV heads, gated
    MLP, norms), computed from its config: what the weights need is this times the bytes of
    the dtype. Exact for Llama, Mistral, Qwen2 (plus its attention biases) and Gemma."""
    c = hf_config
    hidden, layers = int(c.hidden_size), int(c.num_hidden_layers)
    heads = int(c.num_attention_heads)
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(c, "head_dim", None) or hidden // heads)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    if getattr(c, "attention_bias", False) or c.model_type == "qwen2":
        attention += heads * head_dim + 2 * kv_heads * head_dim
    mlp = 3 * hidden * int(c.intermediate_size)
    return int(c.vocab_size) * hidden + layers * (attention + mlp + 2 * hidden) + hidden


class HFLLMEncoder(Encoder):
    """A frozen decoder-only LLM and its tokenizer, as a transcript encoder."""

    name = "hf"
    modality = "text"
    version = "1"
    Config = HFLLMConfig
    spec_argument = "model"
    uses_dtype = True
    max_batch_tokens = 8192
    """Padded tokens per forward pass: bounds memory, changes no output, not fingerprinted."""

    def __init__(self, config: HFLLMConfig):
        super().__init__(config)
        self._dir, self._origin = resolve_model_dir(config.model)
        raw = read_config_json(self._dir)
        self.custom_code = "auto_map" in raw or raw.get("model_type") not in LLM_TYPES
        if self.custom_code and not config.trust_remote_code:
            what = ("ships its own modelling code (auto_map in config.json)" if "auto_map" in raw
                    else f"is a '{raw.get('model_type')}' model, not one of the families this "
                         f"encoder was checked on ({', '.join(LLM_TYPES)})")
            raise EncoderError(f"'{config.model}' {what}. Run it only if you trust it: "
                               "-o trust_remote_code=true.")
        self._hf_config = self._load_config()
        self.tokenizer = _load_tokenizer(self._dir, config.trust_remote_code)
        vocab_size = getattr(self._hf_config, "vocab_size", None)
        if vocab_size and len(self.tokenizer) > vocab_size:
            raise EncoderError(f"The tokenizer in '{self._dir}' has {len(self.tokenizer)} tokens "
                               f"but the model only {vocab_size} embeddings; the folder mixes "
                               "files of two checkpoints.")
        if config.prompt is not None and not getattr(self.tokenizer, "is_fast", False):
            raise EncoderError(f"A prompt needs a fast tokenizer (tokenizer.json) to tell the "
                               f"text's tokens from the prompt's; '{self._dir}' has none.")
        self.model_limit = self._model_limit()
        self.max_length = config.max_length or self.model_limit
        if self.max_length > self.model_limit:
            raise EncoderError(f"The 'max_length' of encoder '{self.describe()}' must be at most "
                               f"the model's limit of {self.model_limit} tokens. Got "
                               f"{self.max_length}; lower it or leave it unset.")
        if config.prompt is not None:
            prompt_tokens = len(self._encode_one("")[0])
            if prompt_tokens >= self.max_length:
                raise EncoderError(f"The prompt of encoder '{self.describe()}' takes "
                                   f"{prompt_tokens} tokens, which leaves none of max_length "
                                   f"{self.max_length} to the text; shorten the prompt or raise "
                                   "max_length.")
        self.layers = int(self._hf_config.num_hidden_layers) + 1
        if _LAYER_INDEX.match(config.layer) and not -self.layers <= int(config.layer) < self.layers:
            raise EncoderError(f"The 'layer' of encoder '{self.describe()}' must be an index "
                               f"from {-self.layers} to {self.layers - 1} ({self.layers} hidden "
                               f"states). Got {config.layer}.")
        self.pad_id = next((i for i in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)
                            if i is not None), 0)
        self.model = None

    def _load_config(self) -> Any:
        if not self.config.trust_remote_code:
            return load_config(self._dir)
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(str(self._dir), local_files_only=True,
                                              trust_remote_code=True)
        except Exception as e:
            raise EncoderError(f"Cannot read the model config in '{self._dir}': {e}") from e

    def _model_limit(self) -> int:
        limits = [int(v) for v in (getattr(self._hf_config, "max_position_embeddings", None),
                                   getattr(self.tokenizer, "model_max_length", None))
                  if v and int(v) < 1_000_000]
        return min(limits) if limits else 2048

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        identity = weights_identity(self._dir, self._origin)
        if self.custom_code:  # its code makes the numbers as much as its weights
            from mer_features.fingerprint import file_hashes

            code = sorted(self._dir.glob("*.py"))
            identity["code"] = dict(zip((f.name for f in code), file_hashes(code)))
        return identity

    def output_spec(self) -> OutputSpec:
        dim = int(self._hf_config.hidden_size)
        shape = (self.layers, dim) if self.config.layer == "all" else (dim,)
        return OutputSpec(utterance_shape=shape, frame_dim=dim, frame_rate=None)

    def preprocessing(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "padding": "right", "tokens": "text only"}

    def shape_fields(self) -> dict[str, Any]:
        c = self._hf_config
        return {"encoder": "hf-llm", "version": self.version, "layer": self.config.layer,
                "architecture": {k: getattr(c, k, None) for k in (
                    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "intermediate_size", "vocab_size")}}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        if self.model is not None:
            return
        super().load(device, dtype)
        import inspect

        import torch

        kwargs: dict[str, Any] = {"dtype": getattr(torch, _TORCH_DTYPES[dtype])}
        if self.config.trust_remote_code:
            kwargs["trust_remote_code"] = True
        if str(device).startswith("cuda"):
            kwargs["device_map"] = {"": str(device)}  # straight onto the GPU, not via CPU memory
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its load report lists the LM head left out, as meant
        try:
            model = load_model(self._dir, self.describe(), **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.model = model if str(device).startswith("cuda") else model.to(device)
        self._accepts = set(inspect.signature(model.forward).parameters)
        self._torch = torch

    def encode_batch(self, items: Sequence[TextInput]) -> list[Encoded | ClipError]:
        if self.model is None:
            self.load(self.device, self.dtype)
        results: list[Encoded | ClipError | None] = [None] * len(items)
        prepared = []
        for i, item in enumerate(items):
            text = item.text if isinstance(item.text, str) else ""
            ids, content, total, truncated = self._tokenize(text)
            if not content.any():
                results[i] = ClipError(
                    "encode", f"the transcript gives no tokens to '{self.describe()}': it holds "
                    f"only whitespace or characters its tokenizer drops ({text[:40]!r}); fix the "
                    "transcript or leave it empty")
                continue
            prepared.append((i, ids, content, total, truncated))
        from mer_features.encoders.text import _token_batches

        prepared.sort(key=lambda p: -len(p[1]))  # longest first: small padding, early peak
        order = list(range(len(prepared)))
        for batch in _token_batches(order, [len(p[1]) for p in prepared], self.max_batch_tokens):
            rows = [prepared[j] for j in batch]
            for (i, _, content, total, truncated), (frames, utterance) in zip(
                    rows, self._forward([r[1] for r in rows], [r[2] for r in rows])):
                info: dict[str, Any] = {"tokens": total}
                if truncated:
                    info["truncated"] = True
                results[i] = Encoded(utterance=utterance, frames=frames,
                                     frame_times=np.arange(len(frames), dtype=np.float32),
                                     info=info)
        return results  # type: ignore[return-value]

    def _tokenize(self, text: str) -> tuple[list[int], np.ndarray, int, bool]:
        """Token ids of the filled-in prompt, which of them are the text's own, the text's
        token count before any cut, and whether the text was cut to fit ``max_length``."""
        ids, content = self._encode_one(text)
        total = int(content.sum())
        truncated = False
        while len(ids) > self.max_length and content.any():
            truncated = True
            keep = int(content.sum()) - (len(ids) - self.max_length)
            text = self._text_prefix(text, max(keep, 0))
            ids, content = self._encode_one(text)
        return ids, content, total, truncated

    def _encode_one(self, text: str) -> tuple[list[int], np.ndarray]:
        prompt = self.config.prompt
        full = text if prompt is None else prompt.replace("{text}", text)
        if prompt is None and not getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(full, add_special_tokens=True, return_special_tokens_mask=True,
                                 verbose=False)
            return list(enc["input_ids"]), ~np.asarray(enc["special_tokens_mask"], bool)
        start = 0 if prompt is None else prompt.index("{text}")
        stop = start + len(text)
        enc = self.tokenizer(full, add_special_tokens=True, return_offsets_mapping=True,
                             return_special_tokens_mask=True, verbose=False)
        special = np.asarray(enc["special_tokens_mask"], bool)
        spans = enc["offset_mapping"]
        content = np.array([not s and b < stop and e > start and e > b
                            for (b, e), s in zip(spans, special)], bool)
        return list(enc["input_ids"]), content

    def _text_prefix(self, text: str, tokens: int) -> str:
        """The start of ``text`` holding its first ``tokens`` tokens (as tokenised alone)."""
        if tokens <= 0:
            return ""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                             verbose=False) if getattr(self.tokenizer, "is_fast", False) else None
        if enc is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
            return self.tokenizer.decode(ids)
        spans = enc["offset_mapping"]
        return text[: spans[min(tokens, len(spans)) - 1][1]]

    def _forward(self, ids: list[list[int]], content: list[np.ndarray]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Frames (n_text_tokens, dim) and utterance of each input, padded on the right."""
        torch = self._torch
        longest = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for b, x in enumerate(ids):
            input_ids[b, : len(x)] = torch.tensor(x)
            mask[b, : len(x)] = 1
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}
        if "position_ids" in self._accepts:
            inputs["position_ids"] = torch.arange(longest, device=self.device)[None].expand(len(ids), -1)
        if "use_cache" in self._accepts:
            inputs["use_cache"] = False
        with torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=True)
        states = out.hidden_states
        layer = self.config.layer
        if layer == "last":
            chosen = states[-1].float()
        elif layer in ("mean-last-4", "all"):
            chosen = torch.stack([s.float() for s in states[-4:]]).mean(0)
        else:
            chosen = states[int(layer)].float()
        stacked = torch.stack([s.float() for s in states]) if layer == "all" else None
        results = []
        for b, x in enumerate(ids):
            keep = torch.from_numpy(np.concatenate([content[b], np.zeros(longest - len(x), bool)]))
            frames = chosen[b][keep.to(chosen.device)]
            source = chosen[b] if stacked is None else stacked[:, b]  # (T, d) or (L, T, d)
            if self.config.pooling == "last":
                utterance = source[..., len(x) - 1, :]
            else:
                utterance = source[..., keep.to(source.device), :].mean(-2)
            results.append((frames.cpu().numpy().astype(np.float32),
                            utterance.cpu().numpy().astype(np.float32)))
        return results


def _load_tokenizer(model_dir: Path, trust_remote_code: bool) -> Any:
    from mer_features.encoders.text import _load_tokenizer as load

    if not trust_remote_code:
        return load(model_dir)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True,
                                             trust_remote_code=True)
    except Exception as e:
        raise EncoderError(f"Cannot load a tokenizer from '{model_dir}' ({type(e).__name__}: "
                           f"{e}). Save the model's tokenizer into that folder too.") from e
