"""What every ``hf:`` encoder shares: finding the checkpoint, naming its weights, picking layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer_features.errors import EncoderError
from mer_features.fingerprint import file_hashes

LAYER_CHOICES = ("last", "mean-last-4", "all")
_WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.pt")


def resolve_model_dir(model: str) -> tuple[Path, dict[str, Any]]:
    """Local folder holding the checkpoint, and where it came from.

    ``model`` is a local folder (as written by ``save_pretrained``) or a hub id, which is
    fetched into the Hugging Face cache once; offline, a hub id that is not cached fails with
    a message saying to pass a local folder.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderError(f"'{model}' is a folder but holds no config.json; give a folder "
                               "written by save_pretrained, or a hub id.")
        return path.resolve(), {"source": "local"}
    if path.exists() or model.startswith((".", "/", "~")):
        raise EncoderError(f"Model '{model}' is not a folder. Give a checkpoint folder (written by "
                           "save_pretrained) or a hub id such as 'facebook/hubert-base-ls960'.")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(model, allow_patterns=list(_WEIGHT_PATTERNS))
    except Exception as e:  # network errors come in many types
        raise EncoderError(
            f"Cannot fetch model '{model}' from the Hugging Face hub ({type(e).__name__}: {e}). "
            "Without network access, download it elsewhere and pass its local folder."
        ) from e
    local_path = Path(local)
    return local_path, {"source": "hub", "repo": model, "revision": local_path.name}


def weights_identity(model_dir: Path, origin: dict[str, Any]) -> dict[str, Any]:
    """Origin plus the content hash of every config and weight file of the checkpoint."""
    found = sorted({f for pattern in _WEIGHT_PATTERNS for f in model_dir.glob(pattern)})
    files = dict(zip((f.name for f in found), file_hashes(found)))
    if not any(name.endswith((".safetensors", ".bin", ".pt")) for name in files):
        raise EncoderError(f"Checkpoint folder '{model_dir}' holds no weight files "
                           "(*.safetensors or *.bin).")
    return {**origin, "path": str(model_dir), "files": files}


def check_layer(layer: str) -> None:
    if layer not in LAYER_CHOICES:
        raise ValueError(f"layer must be one of {', '.join(LAYER_CHOICES)}; got '{layer}'")


def select_layers(hidden_states: tuple, layer: str):
    """From a model's hidden states (each (batch, time, dim)), the frame tensor and, for
    ``all``, the stacked layers (layers, batch, time, dim) whose means become the utterance."""
    import torch

    if layer == "last":
        return hidden_states[-1], None
    last4 = torch.stack(hidden_states[-4:]).mean(0)
    if layer == "mean-last-4":
        return last4, None
    return last4, torch.stack(hidden_states)


def check_model_type(hf_config: Any, supported: tuple[str, ...], name: str, takes: str) -> str:
    """The config's ``model_type``; an EncoderError names the model and what ``takes`` the
    encoder takes when it is not among ``supported``."""
    model_type = getattr(hf_config, "model_type", "?")
    if model_type not in supported:
        raise EncoderError(f"'{name}' is a '{model_type}' model; the {takes} "
                           f"{', '.join(supported)}.")
    return model_type


def hidden_shapes(hf_config: Any, layer: str) -> tuple[tuple[int, ...], int]:
    """(utterance shape, frame dimension) of a model with this config: the utterance is
    (layers + 1, hidden) for ``layer="all"`` (every hidden state), else (hidden,)."""
    dim = int(hf_config.hidden_size)
    layers = int(hf_config.num_hidden_layers) + 1
    return ((layers, dim) if layer == "all" else (dim,)), dim


_SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "conv_dim", "conv_kernel", "conv_stride", "conv_bias",
               "feat_extract_norm", "do_stable_layer_norm", "num_conv_pos_embeddings",
               "num_conv_pos_embedding_groups", "hidden_act", "vocab_size", "image_size",
               "patch_size", "num_frames")


def shape_fields(hf_config: Any) -> dict[str, Any]:
    """The sizes of a ``transformers`` config that decide how long a forward pass takes (not
    the weights: two checkpoints of one architecture share their measured compute paths)."""
    fields = {}
    for key in _SHAPE_KEYS:
        value = getattr(hf_config, key, None)
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (bool, int, float, str, list)):
            fields[key] = value
    return fields


def load_config(model_dir: Path) -> Any:
    """The checkpoint's ``transformers`` config, read from its folder (never fetched)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as e:
        raise EncoderError(f"Cannot read the model config in '{model_dir}': {e}") from e


def load_model(model_dir: Path, name: str, **kwargs: Any) -> Any:
    """The checkpoint's ``transformers`` model, read from its folder (never fetched), in eval
    mode with its weights frozen; ``name`` says which encoder in the error."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, **kwargs)
    except Exception as e:
        raise EncoderError(f"Cannot load '{name}' with transformers: {e}") from e
    return model.eval().requires_grad_(False)


def half_linear_weights(model: Any, dtype: str) -> None:
    """In bf16 or fp16, store the model's matrix weights (``nn.Linear``) in that precision
    once, instead of autocast casting them on every forward; embeddings, norms and the
    residual stream stay fp32 under autocast. Nothing changes in fp32."""
    if dtype not in ("bf16", "fp16"):
        return
    import torch

    half = torch.bfloat16 if dtype == "bf16" else torch.float16
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(half)


def autocast(device: str, dtype: str):
    """Context for a forward pass in ``dtype`` (fp32, bf16, fp16) on ``device``."""
    import contextlib

    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)
