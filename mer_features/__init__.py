"""mer_features: batched, fingerprinted feature extraction for multimodal emotion recognition.

The package is laid out like its pipeline: :mod:`.corpora` (manifests and corpus importers)
-> :mod:`.decode` (audio, video frames, face tracks) -> :mod:`.noise` (corruption before the
encoder) -> :mod:`.encoders` -> :mod:`.store` (the HDF5 feature store), tied together by
:mod:`.pipeline`, with what differs per modality in :mod:`.modalities`; :mod:`.demo` writes a
synthetic corpus. The Python API::

    from mer_features import extract, FeatureStore, write_demo

    manifest = write_demo("data/demo")                        # or read_manifest / build_manifest
    summary = extract(manifest, "features/demo-audio.h5", modality="audio")
    with FeatureStore(summary.store) as store:
        X = store.utterances()                                 # (n_clips, dim) float32

Names are imported when first used (PEP 562), so ``import mer_features`` and
``mer-features --help`` stay instant; those that need numpy, h5py or torch load them then.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

EMOTIONS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
"""The six MER 2023 discrete classes, in the challenge's order."""

_EXPORTS = {
    # corpora
    "Clip": "mer_features.corpora.manifest",
    "Manifest": "mer_features.corpora.manifest",
    "read_manifest": "mer_features.corpora.manifest",
    "write_manifest": "mer_features.corpora.manifest",
    "build_manifest": "mer_features.corpora",
    "known_corpora": "mer_features.corpora",
    "register_corpus": "mer_features.corpora",
    # decode
    "AudioInput": "mer_features.decode.inputs",
    "FaceInput": "mer_features.decode.inputs",
    "TextInput": "mer_features.decode.inputs",
    # noise
    "NoiseSpec": "mer_features.noise",
    "parse_noise": "mer_features.noise",
    "describe_noise": "mer_features.noise",
    "corrupt_manifest": "mer_features.noise.corrupt",
    # encoders
    "Encoder": "mer_features.encoders",
    "OutputSpec": "mer_features.encoders",
    "Encoded": "mer_features.encoders",
    "create_encoder": "mer_features.encoders",
    "parse_encoder_spec": "mer_features.encoders",
    "known_encoders": "mer_features.encoders",
    "register_encoder": "mer_features.encoders",
    # store
    "FeatureStore": "mer_features.store",
    "StoreWriter": "mer_features.store",
    "StoreHeader": "mer_features.store",
    "ClipRecord": "mer_features.store",
    "merge_stores": "mer_features.store",
    "verify_store": "mer_features.store",
    # modalities
    "Stage": "mer_features.modalities",
    "register_stage": "mer_features.modalities",
    "known_modalities": "mer_features.modalities",
    "TextOptions": "mer_features.modalities",
    "VideoOptions": "mer_features.modalities",
    # pipeline
    "extract": "mer_features.pipeline",
    "ExtractOptions": "mer_features.pipeline",
    "ExtractionPlan": "mer_features.pipeline",
    "plan_extraction": "mer_features.pipeline",
    "execute": "mer_features.pipeline",
    "ExtractSummary": "mer_features.pipeline",
    "sweep": "mer_features.pipeline.sweep",
    "SweepResult": "mer_features.pipeline.sweep",
    # demo
    "write_demo": "mer_features.demo",
    # errors
    "MerFeaturesError": "mer_features.errors",
    "ManifestError": "mer_features.errors",
    "StoreError": "mer_features.errors",
    "FingerprintMismatchError": "mer_features.errors",
    "EncoderError": "mer_features.errors",
    "ParameterError": "mer_features.errors",
    "ClipError": "mer_features.errors",
    "NoiseSpecError": "mer_features.noise",
}

__all__ = ["EMOTIONS", "__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mer_features' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
