"""Sharded extraction: deterministic shards, torchrun and SLURM array launches, shard merging.

A clip's shard is a stable hash of its name modulo the shard count, so adding clips to a
manifest never moves the others. Under ``torchrun`` (``WORLD_SIZE`` > 1) every process takes
shard RANK/WORLD_SIZE, binds to GPU LOCAL_RANK when it uses a GPU, writes
``OUT.shard-RRRRR-of-WWWWW.h5``, and rank 0 merges the shards into OUT once all have finished
(a gloo barrier, so it works on CPU too). A SLURM array job (``SLURM_ARRAY_TASK_ID``) takes its
shard the same way; merge its shards afterwards with ``mer-features merge``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mer_features.errors import MerFeaturesError, ParameterError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ParameterError(f"Shard {self.index}/{self.count} does not exist: `shard` "
                                 "must be I/N with 0 <= I < N.", "shard")

    def holds(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def store_path(self, out: str | Path) -> Path:
        out = Path(out)
        return out.with_name(f"{out.stem}.shard-{self.index:05d}-of-{self.count:05d}{out.suffix}")


def shard_of(name: str, count: int) -> int:
    """Stable shard of a clip name: BLAKE2b of the name, modulo ``count``."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def parse_shard(text: str) -> Shard:
    index, sep, count = text.partition("/")
    try:
        index_count = int(index), int(count)
    except ValueError:
        raise ParameterError(f"`shard` must look like I/N (e.g. 0/4); got '{text}'.",
                             "shard") from None
    return Shard(*index_count)


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a multi-process launch."""

    shard: Shard
    local_rank: int = 0
    launcher: str = "none"  # "torchrun", "slurm-array" or "none"


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise MerFeaturesError(f"Environment variable {name}={text!r} is not an integer; the "
                               "launcher (torchrun, SLURM) sets it, so unset it or fix it, or give "
                               "`shard` I/N.") from None


def detect_launch() -> Launch | None:
    """The shard implied by torchrun or a SLURM array job, or None for a single process."""
    world = _env_int("WORLD_SIZE", 1)
    if world > 1:
        return Launch(Shard(_env_int("RANK", 0), world), _env_int("LOCAL_RANK", 0), "torchrun")
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        first = _env_int("SLURM_ARRAY_TASK_MIN", 0)
        count = _env_int("SLURM_ARRAY_TASK_COUNT", 0) or _env_int("SLURM_ARRAY_TASK_MAX",
                                                                   first) - first + 1
        return Launch(Shard(_env_int("SLURM_ARRAY_TASK_ID", 0) - first, count), 0, "slurm-array")
    return None


def bind_device(device: str, launch: Launch) -> str:
    """``auto``/``cuda`` -> this process's own GPU (``cuda:LOCAL_RANK``) when GPUs are visible."""
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            index = launch.local_rank % torch.cuda.device_count()
            torch.cuda.set_device(index)
            return f"cuda:{index}"
        return "cpu" if device == "auto" else device
    return device


def barrier_then_merge(out: str | Path, launch: Launch, *, log=print) -> int | None:
    """Wait for every rank; rank 0 then merges the shard stores into ``out`` and removes them.

    Returns the merged clip count on rank 0, None elsewhere.
    """
    import datetime

    import torch.distributed as dist

    from mer_features.store.merge import merge_stores

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=48))
    try:
        dist.barrier()
        if launch.shard.index != 0:
            return None
        shards = [Shard(i, launch.shard.count).store_path(out) for i in range(launch.shard.count)]
        n = merge_stores(out, shards, overwrite=True)
        for shard in shards:
            shard.unlink(missing_ok=True)
            shard.with_name(shard.name + ".lock").unlink(missing_ok=True)
        log(f"merged {len(shards)} shards: {n} clips -> {out}")
        return n
    finally:
        dist.destroy_process_group()
