"""Small synthetic feature stores for mer_heads tests, written with the real store writer (no
media, no encoders): class-dependent features, valence, splits, frames and failed clips, and
corrupted twins of a store as `mer-features extract --noise` would record them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mer_features import EMOTIONS
from mer_features.store import ClipRecord, FeatureStore, StoreHeader, StoreWriter

MODALITIES = {"audio": (12, 5), "text": (10, 4), "video": (8, 3)}
"""Modality -> (utterance width, frame width) of the synthetic stores."""


def header(modality: str, dim: int, frame_dim: int, *, version: str = "1",
           utterance_shape: tuple[int, ...] | None = None) -> StoreHeader:
    return StoreHeader(modality=modality, encoder=f"toy-{modality}", encoder_version=version,
                       fields={"encoder": f"toy-{modality}", "version": version,
                               "config": {"dim": dim}, "weights": {"toy": modality}},
                       utterance_shape=utterance_shape or (dim,), frame_dim=frame_dim,
                       frame_rate=10.0)


def clip_labels(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, class indices (every class, imbalanced like MER) and valence of n clips."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(EMOTIONS)
    y[rng.random(n) < 0.25] = 0
    centre = np.array([0.0, -2.5, 1.8, -2.4, -1.0, -0.4])
    valence = np.clip(centre[y] + 0.5 * rng.standard_normal(n), -5, 5)
    return [f"clip{i:04d}" for i in range(n)], y, valence


def write_store(path: Path, modality: str, names: list[str], y: np.ndarray, valence: np.ndarray,
                *, dim: int, frame_dim: int, seed: int, strength: float = 1.5,
                failed: set[str] = frozenset(), empty: set[str] = frozenset(),
                with_labels: bool = True, with_valence: bool = True,
                splits: list[str] | None = None,
                version: str = "1", nan_in: set[str] = frozenset(),
                labels_override: dict[str, str] | None = None, layers: int = 0,
                extra: dict[str, list[str]] | None = None) -> Path:
    """One store; ``failed``/``empty`` clips get that status and no arrays. ``extra``: the
    manifest's other columns (column -> one value per clip), copied as extraction does."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(EMOTIONS), dim)) * strength
    frame_centres = rng.standard_normal((len(EMOTIONS), frame_dim)) * strength
    shape = (layers, dim) if layers else (dim,)
    head = header(modality, dim, frame_dim, version=version, utterance_shape=shape)
    with StoreWriter(path, head) as w:
        labels = {}
        for i, name in enumerate(names):
            label = EMOTIONS[y[i]] if with_labels else ""
            if labels_override and name in labels_override:
                label = labels_override[name]
            labels[name] = (label, float(valence[i]) if with_labels and with_valence else math.nan,
                            splits[i] if splits else "train",
                            {k: v[i] for k, v in (extra or {}).items()})
        w.set_labels(labels)
        for i, name in enumerate(names):
            if name in failed or name in empty:
                w.add(ClipRecord(name=name, status="failed" if name in failed else "empty",
                                 stage="encode", reason="synthetic failure", input_hash=name))
                continue
            u = (centres[y[i]] + 0.3 * valence[i] + rng.standard_normal(dim)).astype(np.float32)
            if layers:
                u = np.stack([u + 0.1 * rng.standard_normal(dim) for _ in range(layers)]
                             ).astype(np.float32)
            if name in nan_in:
                u = u.copy()
                u.flat[0] = np.nan
            n_frames = int(rng.integers(3, 90))
            frames = (frame_centres[y[i]] + rng.standard_normal((n_frames, frame_dim))
                      ).astype(np.float32)
            w.add(ClipRecord(name=name, utterance=u, frames=frames,
                             frame_times=np.arange(n_frames, dtype=np.float32) / 10,
                             input_hash=name, duration=n_frames / 10))
    return path


def make_stores(folder: Path, n: int = 120, *, seed: int = 0, failed_video: int = 12,
                **kw) -> dict[str, Path]:
    """Three stores (audio, text, video) of the same n clips; the first ``failed_video`` clips
    of every tenth have a failed video, and one clip has no usable modality at all."""
    names, y, valence = clip_labels(n, seed)
    failed = {names[i] for i in range(0, n, 10)[:failed_video]}
    paths = {}
    for j, (key, (dim, frame_dim)) in enumerate(MODALITIES.items()):
        gone = {names[-1]}  # one clip with every modality failed
        if key == "video":
            gone |= failed
        paths[key] = write_store(folder / f"{key}.h5", key, names, y, valence, dim=dim,
                                 frame_dim=frame_dim, seed=seed * 10 + j, failed=gone, **kw)
    return paths


def write_noisy(clean: Path, out: Path, snr_db: float, *, seed: int = 0, spec: str | None = None,
                fields: dict | None = None, drop: set[str] = frozenset(),
                fail: set[str] = frozenset(), edited: set[str] = frozenset()) -> Path:
    """A corrupted twin of ``clean``: its features plus Gaussian noise at ``snr_db`` relative to
    the features' power, and a header recording the noise spec as the real pipeline does
    (``fields['noise'] = {'spec': canonical spec, 'seed': seed}``)."""
    rng = np.random.default_rng(seed + 1000)
    with FeatureStore(clean) as store:
        head = StoreHeader(
            modality=store.modality, encoder=store.encoder,
            encoder_version=store.attrs["encoder_version"],
            fields={**store.fields, **(fields or {}),
                    "noise": {"spec": spec or f"snr={snr_db:g},source=white", "seed": seed}},
            utterance_shape=store.utterance_shape, frame_dim=store.frame_dim,
            frame_rate=float(store.attrs["frame_rate"]))
        x = store.utterances()
        gain = math.sqrt(float(np.mean(np.square(x))) / 10 ** (snr_db / 10))
        labels = store.labels()
        status, hashes = store.status, store.column("input_hash")
        with StoreWriter(out, head) as w:
            extra = store.extra_columns()
            w.set_labels({n: (labels["discrete"][i], float(labels["valence"][i]),
                              labels["split"][i], {k: v[i] for k, v in extra.items()})
                          for i, n in enumerate(store.names) if n not in drop})
            for i, name in enumerate(store.names):
                if name in drop:
                    continue
                if status[i] != "ok" or name in fail:
                    w.add(ClipRecord(name=name, status="failed", stage="noise",
                                     reason="synthetic", input_hash=hashes[i]))
                    continue
                times, frames = store.frames(name)
                w.add(ClipRecord(
                    name=name, input_hash="edited" if name in edited else hashes[i],
                    utterance=(x[i] + gain * rng.standard_normal(x.shape[1:])).astype(np.float32),
                    frames=(frames + gain * rng.standard_normal(frames.shape)).astype(np.float32),
                    frame_times=times, duration=len(times) / 10))
    return out


FAST = dict(folds=3, epochs=8, hidden=16, batch_size=32, precision="fp32")
"""Hyper-parameters that keep a neural fit well under a second on these stores."""
