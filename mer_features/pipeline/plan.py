"""The plan of an extraction: everything decided before the store is touched.

:func:`plan_extraction` reads the manifest, builds the encoder (not loaded) and the modality's
stage, settles the device, compute dtype, workers and batch size, and assembles the store's
identity (:func:`store_identity`: the encoder's and the stage's declared fields, hashed by
:mod:`mer_features.fingerprint`). :func:`~mer_features.pipeline.execute` then runs the plan.

Noise acts on a modality through the keys of its side only: an audio store extracted with
``snr=5,blur=2`` records, and draws from, ``snr=5,source=white`` alone, exactly as one
extracted with ``snr=5``. Stores written before (mer_features 0.1.0) recorded the whole spec
and drew from it; such a store is continued with its own fingerprint and draws
(:func:`legacy_identity`), so resuming or appending to it never mixes two kinds of draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mer_features import EMOTIONS
from mer_features.corpora.manifest import Clip, Manifest
from mer_features.errors import EncoderError, ParameterError
from mer_features.fingerprint import same_features
from mer_features.modalities import Stage, get_stage
from mer_features.pipeline.options import ExtractOptions
from mer_features.store.schema import SCHEMA_VERSION, StoreHeader


@dataclass
class ExtractionPlan:
    """What :func:`plan_extraction` decided; :func:`~mer_features.pipeline.execute` runs it.

    ``manifest`` holds the clips of the run (its shard's, with a shard); ``usable`` those whose
    input exists and ``missing`` (clip, reason) for the others (with ``skip_missing``).
    ``dtype`` is the resolved compute dtype, ``choice`` the compute path
    (:class:`~mer_features.encoders.tuning.PathChoice`: implementation, dtype, a warning),
    decided by a fixed rule. ``legacy`` is True when the store at ``store`` was written before
    noise keys of the other side were left out, or before a bf16 store recorded its compute
    path, and is continued as it was.
    """

    options: ExtractOptions
    manifest: Manifest
    store: Path
    encoder: Any
    stage: Stage
    header: StoreHeader
    device: str
    dtype: str
    batch_size: int
    workers: int
    usable: list[Clip]
    missing: list[tuple[Clip, str]]
    choice: Any = None
    legacy: bool = False
    classes: tuple[str, ...] = ()
    """The label set of the manifest's labels, in order (:mod:`mer_features.corpora.classes`)."""


def default_store_path(manifest: Any, modality: str, encoder: str | None) -> Path:
    """``features/<corpus>-<modality>-<encoder>.h5``, the corpus named after the manifest's
    folder, the encoder by :attr:`~mer_features.encoders.base.EncoderSpec.slug`."""
    from mer_features.encoders.base import parse_encoder_spec

    path = manifest.path if isinstance(manifest, Manifest) else manifest
    corpus = (Path(path).resolve().parent.name if path is not None else "") or "corpus"
    spec = parse_encoder_spec(encoder or get_stage(modality).default_encoder)
    return Path("features") / f"{corpus}-{modality}-{spec.slug}.h5"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ParameterError(f"`device` is '{device}' but no CUDA GPU is visible; use cpu "
                                 "or auto.", "device")
    elif device != "cpu":
        raise ParameterError(f"`device` must be auto, cpu, cuda or cuda:N; got '{device}'.",
                             "device")
    return device


def store_identity(encoder: Any, stage: Stage, *, dtype: str,
                   storage_dtype: str) -> dict[str, Any]:
    """Every field of a store's fingerprint, for ``encoder`` fed by ``stage``.

    ``encoder`` declares its name, version, weights identity, resolved config and the input
    preparation it needs (:class:`~mer_features.encoders.base.Encoder`); ``stage`` declares
    how its modality is decoded (:meth:`~mer_features.modalities.Stage.fingerprint_fields`)
    and holds the noise acting on it with its seed. Added here: the canonical noise spec, the
    compute dtype (when it changes the output), the compute path (``encoder.impl``, only where
    the encoder's implementations give other numbers in ``dtype``:
    :func:`~mer_features.encoders.tuning.identity_path`), the storage dtype and the store's
    schema version. Fields added to this list after stores were written are listed in
    :data:`mer_features.fingerprint.ADDED_FIELDS`.
    """
    from mer_features.encoders.tuning import identity_path
    from mer_features.noise.spec import canonical

    preprocessing = dict(encoder.preprocessing())
    preprocessing.update(stage.fingerprint_fields())
    noise = stage.noise
    fields = {
        "schema_version": SCHEMA_VERSION,
        "modality": encoder.modality,
        "encoder": encoder.name,
        "encoder_version": encoder.version,
        "weights": encoder.weights_identity(),
        "config": dataclasses.asdict(encoder.config),
        "preprocessing": preprocessing,
        "noise": {"spec": canonical(noise), "seed": int(stage.seed)} if noise is not None else None,
        "compute_dtype": encoder.compute_dtype(dtype),
        "storage_dtype": storage_dtype,
    }
    path = identity_path(encoder, encoder.device, encoder.impl, dtype)
    if path is not None:  # only where the implementations give other numbers (bf16)
        fields["compute_path"] = path
    return fields


def legacy_identity(fields: dict[str, Any], noise: Any) -> dict[str, Any] | None:
    """The identity mer_features 0.1.0 gave the same store: the whole noise spec ``noise``
    recorded, where the current one records its keys of the modality's side only; None when
    the two agree (the spec has no key of the other side)."""
    from mer_features.noise.spec import canonical

    if noise is None or fields["noise"] is None or fields["noise"]["spec"] == canonical(noise):
        return None
    return {**fields, "noise": {**fields["noise"], "spec": canonical(noise)}}


def build_header(encoder: Any, stage: Stage, fields: dict[str, Any], *,
                 storage_dtype: str, classes: tuple[str, ...] = ()) -> StoreHeader:
    """The store header: shapes from the encoder, the identity ``fields``, the stage's
    per-frame extras, the label set ``classes`` (recorded unless it is MER 2023's six)."""
    spec = encoder.output_spec()
    return StoreHeader(modality=encoder.modality, encoder=encoder.describe(),
                       encoder_version=encoder.version, fields=fields,
                       utterance_shape=tuple(spec.utterance_shape), frame_dim=spec.frame_dim,
                       frame_rate=spec.frame_rate, storage_dtype=storage_dtype,
                       frame_extras=stage.frame_extras(),
                       classes=() if tuple(classes) == tuple(EMOTIONS) else tuple(classes))


def manifest_classes(manifest: Manifest, declared: tuple[str, ...] | None) -> tuple[str, ...]:
    """The label set of ``manifest`` (every row of its file, a shard's too), in order; with
    ``declared`` classes, a label outside them is refused with its line (a manifest given as
    a :class:`Manifest` was not read with them)."""
    from mer_features.corpora.classes import label_set
    from mer_features.errors import ManifestError

    if declared:
        bad = [c for c in manifest if c.discrete and c.discrete not in declared]
        if bad:
            shown = "; ".join(f"line {c.line} (clip '{c.name}'): label '{c.discrete}'"
                              for c in bad[:20])
            raise ManifestError(f"Manifest {manifest.path or '<manifest>'} has {len(bad)} "
                                f"label(s) outside the declared classes ({', '.join(declared)})"
                                f": {shown}. Fix the labels, or declare every class.")
    return label_set(manifest.labels, declared)


def _stored_fields(out: Path, overwrite: bool) -> dict[str, Any] | None:
    """The fingerprint fields of the store at ``out`` when it is to be continued, else None."""
    if overwrite or not out.is_file():
        return None
    try:
        from mer_features.store import FeatureStore

        with FeatureStore(out, check=False) as store:
            return dict(store.fields)
    except Exception:  # noqa: BLE001 - the writer reports an unusable store itself
        return None


def _check_stored_path(enc: Any, stage: Stage, out: Path, usable: list[Clip], *, device: str,
                       dtype: str) -> None:
    """Refuse a store written in ``dtype`` before its compute path was recorded (a timing
    probe chose it then) unless its features are those of ``enc``'s path, naming the field."""
    from mer_features.encoders.tuning import stored_path_matches
    from mer_features.errors import FingerprintMismatchError

    matches, detail = stored_path_matches(enc, stage, out, usable, device=device, dtype=dtype)
    if not matches:
        others = [i for i in enc.impls(device) if i != enc.impl]
        raise FingerprintMismatchError(
            f"Store '{out}' was written in {dtype} before a store recorded its compute path, "
            f"and its features are not those of this run's '{enc.impl}' path ({detail}). Set "
            f"`compute_path` to {' or '.join(others)} (the path that made it), or pass "
            "`overwrite` to extract it again.")


def plan_extraction(options: ExtractOptions) -> ExtractionPlan:
    """Decide everything about an extraction before its store is touched.

    Reads the manifest (and refuses one that cannot feed the modality: a missing column, media
    files that do not exist unless ``skip_missing``), builds the encoder without loading it,
    resolves the device, the compute path (:func:`~mer_features.encoders.tuning.choose_path`:
    a fixed rule of the device and encoder; dtype ``auto``: the existing store's, else bf16
    where the device computes it natively), the workers and the batch size, and assembles the
    store's header. Raises ParameterError for options that do not fit this machine or encoder
    (a GPU that is not there, fp16 on a CPU, a compute path the encoder lacks, encoder options
    the encoder refuses, a float16 store of values beyond its range), and
    FingerprintMismatchError for a bf16 store written before compute paths were recorded whose
    features are not this run's path's.
    """
    from mer_features.encoders import create_encoder
    from mer_features.encoders.tuning import choose_path

    stage_class = get_stage(options.modality)
    stage = stage_class(options.modality_options, seed=options.seed,
                        noise=options.noise.restricted(stage_class.noise_side)
                        if options.noise is not None else None)
    # every problem of the manifest at once: rows, the modality's column, missing files
    shard = options.shard
    manifest, usable, missing = stage.read_manifest(
        options.manifest, skip_missing=options.skip_missing,
        select=shard.holds if shard is not None else None, classes=options.classes)
    classes = manifest_classes(manifest, options.classes)
    out = Path(options.out) if options.out is not None else default_store_path(
        manifest, options.modality, options.encoder)

    try:
        enc = create_encoder(options.modality, options.encoder or stage.default_encoder,
                             options.encoder_options)
    except EncoderError as e:
        raise ParameterError(str(e), "encoder_options") from None
    if options.workers is not None:  # an encoder with its own thread pool (e5) takes them
        enc.threads = max(1, options.workers)
    if options.storage_dtype == "float16" and not enc.float16_safe:
        raise ParameterError(f"Encoder '{enc.describe()}' gives values beyond float16's range "
                             "(+-65504), which a float16 store would hold as inf; set "
                             "`storage_dtype` to float32.", "storage_dtype")
    device = (resolve_device(options.device) if (enc.uses_dtype or not enc.runs_in_workers)
              and not enc.cpu_only else "cpu")
    enc.device = device  # before the header: an encoder's compute precision may depend on it
    if options.dtype == "fp16" and device == "cpu" and enc.uses_dtype:
        raise ParameterError("fp16 needs a GPU; on the CPU set `dtype` to bf16, fp32 or auto.",
                             "dtype")
    # The existing store's fields are read when they decide something: its compute dtype
    # (dtype auto), whether it records its compute path (not fp32), or its noise spec (a spec
    # with keys of the other side: see legacy_identity).
    other_side = stage.noise is not None and stage.noise != options.noise
    stored = (_stored_fields(out, options.overwrite)
              if (options.dtype != "fp32" and enc.uses_dtype) or other_side else None)
    dtype = options.dtype
    if dtype == "auto" and (stored or {}).get("compute_dtype") in ("fp32", "bf16", "fp16"):
        dtype = stored["compute_dtype"]  # an existing store goes on in its own dtype
    choice = choose_path(enc, device, dtype, impl=options.compute_path)
    dtype, enc.impl = choice.dtype, choice.impl
    stage.device = device
    workers = options.workers if options.workers is not None else stage.default_workers(enc)
    stage.workers = workers
    stage.use(usable)

    fields = store_identity(enc, stage, dtype=dtype, storage_dtype=options.storage_dtype)
    legacy = False
    if stored is not None and other_side and not same_features(stored, fields):
        older = legacy_identity(fields, options.noise)
        if older is not None and same_features(stored, older):
            fields, legacy = older, True
            stage.noise = options.noise  # the draws it was made with
    if stored is not None and "compute_path" in fields and "compute_path" not in stored:
        older = {k: v for k, v in fields.items() if k != "compute_path"}
        if same_features(stored, older):  # written before the path was recorded
            _check_stored_path(enc, stage, out, usable, device=device, dtype=dtype)
            fields, legacy = older, True
    header = build_header(enc, stage, fields, storage_dtype=options.storage_dtype,
                          classes=classes)
    batch_size = (options.batch_size if options.batch_size is not None
                  else stage.default_batch_size(device, dtype))
    return ExtractionPlan(options=replace(options, out=out), manifest=manifest, store=out,
                          encoder=enc, stage=stage, header=header, device=device, dtype=dtype,
                          batch_size=batch_size, workers=workers, usable=usable,
                          missing=missing, choice=choice, legacy=legacy, classes=classes)


__all__ = ["ExtractionPlan", "build_header", "default_store_path", "legacy_identity",
           "manifest_classes", "plan_extraction", "resolve_device", "store_identity"]
