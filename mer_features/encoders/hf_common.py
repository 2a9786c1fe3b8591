"""What every ``hf:`` encoder shares: finding the checkpoint, naming its weights, picking layers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mer_features.errors import EncoderError
from mer_features.fingerprint import file_hashes

LAYER_CHOICES = ("last", "mean-last-4", "all")
_WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.pt")
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESOLVED: dict[tuple[Any, ...], tuple[Path, dict[str, Any]]] = {}
"""Hub ids resolved by this process (an ``hf:`` spec is resolved when its class is picked and
again when the encoder is built): one look-up at the hub per run."""


def resolve_model_dir(model: str) -> tuple[Path, dict[str, Any]]:
    """Local folder holding the checkpoint, and where it came from.

    ``model`` is a local folder (as written by ``save_pretrained``) or a hub id,
    ``org/name`` or ``org/name@revision`` (a branch, tag or commit), looked up in the Hugging
    Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)
    and fetched into it when the hub is reachable; with ``HF_HUB_OFFLINE=1`` the cache alone is
    read. The origin names the repository and the commit the revision resolved to.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderError(f"'{model}' is a folder but holds no config.json; give a folder "
                               "written by save_pretrained, or a hub id.")
        return path.resolve(), {"source": "local"}
    repo, _, revision = model.partition("@")
    if (path.exists() or model.startswith((".", "/", "~")) or not _HUB_ID.match(repo)
            or (revision == "" and "@" in model)):
        raise EncoderError(f"Model '{model}' is not a folder. Give a checkpoint folder (written by "
                           "save_pretrained) or a hub id such as 'facebook/hubert-base-ls960' "
                           "(optionally '@revision').")
    key = (repo, revision or None, str(hub_cache_dir()), _endpoint(), hub_offline())
    if key not in _RESOLVED:
        _RESOLVED[key] = _hub_snapshot(repo, revision or None)
    return _RESOLVED[key]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at each call (as the hub's own
    tools do at start-up)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids reaching the hub."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def download_patterns(files: list[str]) -> list[str]:
    """What to fetch of a hub repository holding ``files``: configs, tokenizer files, code
    (run only with trust_remote_code) and the weights, safetensors alone when there are any
    (many repositories hold each checkpoint twice, as safetensors and as .bin)."""
    patterns = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.py", "*.safetensors"]
    if not any(f.endswith(".safetensors") for f in files):
        patterns += ["*.bin", "*.pt"]
    return patterns


def _hub_snapshot(repo: str, revision: str | None) -> tuple[Path, dict[str, Any]]:
    from huggingface_hub import snapshot_download

    cache, endpoint, offline = hub_cache_dir(), _endpoint(), hub_offline()
    common = {"repo_id": repo, "revision": revision, "cache_dir": str(cache)}
    reason = "HF_HUB_OFFLINE is set"
    local = None
    if not offline:
        try:
            from huggingface_hub import HfApi

            files = HfApi(endpoint=endpoint).list_repo_files(repo, revision=revision)
            local = snapshot_download(**common, endpoint=endpoint,
                                      allow_patterns=download_patterns(files))
        except Exception as e:  # noqa: BLE001 - network and hub errors come in many types
            reason = f"the hub answered {type(e).__name__}: {' '.join(str(e).split())[:160]}"
    if local is None:
        try:
            local = snapshot_download(**common, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - LocalEntryNotFoundError and kin
            fetch = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
            raise EncoderError(
                f"Model '{repo}{'@' + revision if revision else ''}' is neither in the Hugging "
                f"Face cache ({cache}) nor reachable ({reason}). Fetch it where the hub is "
                f"reachable ('{fetch}', then copy the cache), or pass a local folder written by "
                "save_pretrained.") from e
    local_path = Path(local)
    if not (local_path / "config.json").is_file():
        raise EncoderError(f"The cached snapshot of '{repo}' ({local_path}) holds no "
                           "config.json; fetch it again, or pass a local folder.")
    origin: dict[str, Any] = {"source": "hub", "repo": repo, "revision": local_path.name}
    if revision and revision != local_path.name:
        origin["requested"] = revision
    return local_path, origin


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
