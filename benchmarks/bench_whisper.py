"""Whisper encoders: speed against eGeMAPS, the compute types, batched against a per-clip loop.

Issue 24. Every figure of one section is measured side by side in one run (the variants
alternate, each keeps its best of ``--repeats`` timed runs after a warm-up), on the same clips:
RAVDESS speech when ../shared/data holds it, else generated speech-like clips of 3-5 s.

1. **Pipeline, whisper vs egemaps** (the offline audio default): ``mer_features.pipeline.extract``
   from the audio files into a store, model loading and decoding included: clips/s of
   ``whisper`` (its default compute type on this device; ``input=clip`` and ``input=padded``)
   and of ``egemaps``, and their ratio.
2. **Compute types** of the bundled tiny.en (CPU: int8, fp32; GPU: fp16, bf16, fp32): encoder
   time on decoded clips and the least cosine of each type's utterance vectors and frames to
   fp32's. This is the measurement behind the fixed defaults (int8 on a CPU, fp16 on a GPU).
3. **Batched vs per-clip loop, bundled whisper** (default compute type): the encoder fed one clip
   per call, against batches of ``--batch-size`` clips sorted by length (as the scheduler cuts
   them); ``input=clip`` batches only windows of one length, ``input=padded`` every clip
   (30 s each). Reported: clips/s and real-time factor (seconds of audio per second).
4. **A large-v3-shaped Whisper** (random weights, the real architecture: 32 layers, d_model 1280,
   128 mel bins; one decoder layer, which is never loaded): ``hf:DIR`` batched (clip and padded
   input) against the usual per-clip loop of feature scripts (``WhisperFeatureExtractor``, 30-s
   input, ``WhisperModel.encoder``, mean of the last states), fp16 on a GPU (and its cosine to
   fp32), fp32 on a CPU. On a CPU it runs on ``--large-clips`` clips (default 3: ~20 s a clip).

Prints the machine first; writes benchmarks/out/bench_whisper.json.
Usage: python benchmarks/bench_whisper.py [--clips N] [--repeats R] [--batch-size B]
           [--large-clips K] [--skip-large] [--small-large] [--out FILE]
``--small-large`` swaps large-v3 for a 4-layer 384-d model (a quick check of the script).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
LARGE_V3 = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20,
                encoder_ffn_dim=5120, num_mel_bins=128)
"""openai/whisper-large-v3's encoder."""
SMALL = dict(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
             num_mel_bins=80)


def device_and_types() -> tuple[str, tuple[str, ...]]:
    """``cuda`` with fp16/bf16/fp32 when torch and CTranslate2 both see a GPU, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda", ("fp16", "bf16", "fp32")
    return "cpu", ("int8", "fp32")


def corpus(folder: Path, n: int) -> tuple[Path, str]:
    """A manifest of n clips: RAVDESS speech when present, else generated speech-like clips."""
    from synthetic_media import voiced, write_manifest

    if RAVDESS.is_dir():
        files = sorted(RAVDESS.glob("Actor_*/*.flac"))[:: max(1, 720 // n)][:n]
        rows = [{"name": f.stem, "audio": str(f)} for f in files]
        return write_manifest(folder / "manifest.csv", rows), f"RAVDESS ({len(rows)} clips, 3-5 s)"
    import soundfile as sf

    rows = []
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"{i}.wav"
        sf.write(path, voiced(float(rng.uniform(3.0, 5.0)), f0=90 + (7 * i) % 160, seed=i), 16000)
        rows.append({"name": f"c{i}", "audio": str(path)})
    return write_manifest(folder / "manifest.csv", rows), f"generated speech-like clips ({n}, 3-5 s)"


def decoded(manifest: Path) -> list:
    from mer_features.corpora.manifest import read_manifest
    from mer_features.decode.audio import load_audio
    from mer_features.decode.inputs import AudioInput

    return [AudioInput(c.name, load_audio(c.audio_source, 16000), 16000)
            for c in read_manifest(manifest)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def best_of(fns: dict, repeats: int, device: str) -> dict[str, tuple[float, object]]:
    """Each fn(warmup) once as a warm-up, then ``repeats`` rounds alternating the fns; the best
    time of each and its last result."""
    results: dict[str, list] = {}
    for name, fn in fns.items():
        fn(True)
        results[name] = [float("inf"), None]
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            out = fn(False)
            sync(device)
            took = time.perf_counter() - start
            results[name] = [min(results[name][0], took), out]
    return {k: (v[0], v[1]) for k, v in results.items()}


def min_cosine(a: dict, b: dict) -> float:
    x = np.stack([a[k].ravel() for k in sorted(a)]).astype(np.float64)
    y = np.stack([b[k].ravel() for k in sorted(a)]).astype(np.float64)
    return float(((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).min())


def frame_cosine(a: dict, b: dict) -> float:
    """Least cosine over every frame of every clip."""
    worst = 1.0
    for k in a:
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        worst = min(worst, float(cos.min()))
    return worst


def runner(enc, batches: list[list], keep_frames: bool = False):
    from mer_features.errors import ClipError

    def run(warmup: bool) -> dict:
        out = {}
        for batch in batches[:1] if warmup else batches:
            for clip, r in zip(batch, enc.encode_batch(batch)):
                if isinstance(r, ClipError):
                    raise RuntimeError(f"{clip.name}: {r}")
                out[clip.name] = (r.utterance, r.frames) if keep_frames else r.utterance
        return out

    return run


def batches_of(clips: list, size: int) -> list[list]:
    ordered = sorted(clips, key=lambda c: -len(c.waveform))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def report(rows: dict, label: str, seconds: float, clips: list) -> None:
    audio = sum(c.duration for c in clips)
    rows[label] = {"seconds": round(seconds, 4), "clips_per_s": round(len(clips) / seconds, 3),
                   "real_time_factor": round(audio / seconds, 3)}
    print(f"  {label:44s} {seconds:8.2f} s {len(clips) / seconds:8.2f} clips/s "
          f"RTF {audio / seconds:8.2f}", flush=True)


def attempt(rows: dict, label: str, fn) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - one failed section must not lose the others
        rows[label] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())}"[:400]}
        print(f"  {label}: failed: {rows[label]['error']}", flush=True)


# 1. pipeline ------------------------------------------------------------------------------
def pipeline(manifest: Path, clips: list, work: Path, device: str, repeats: int) -> dict:
    from mer_features.pipeline.extraction import extract

    variants = {"egemaps": ("egemaps", {}), "whisper clip": ("whisper", {}),
                "whisper padded": ("whisper", {"input": "padded"})}
    n = len(clips)

    def fn(name: str):
        spec, options = variants[name]

        def run(warmup: bool):
            out = work / f"{name.replace(' ', '-')}.h5"
            summary = extract(manifest, out, modality="audio", encoder=spec,
                              encoder_options=options, device=device, overwrite=True,
                              progress=False, log=lambda m: None)
            if summary.done != n:
                raise RuntimeError(f"{spec}: {summary.line()}")
            return summary
        return run

    print("1. pipeline: audio files -> store (model loading, decoding, writing included)")
    timed = best_of({k: fn(k) for k in variants}, repeats, device)
    rows: dict = {}
    for name, (seconds, _) in timed.items():
        report(rows, name, seconds, clips)
    for name in ("whisper clip", "whisper padded"):
        ratio = rows[name]["clips_per_s"] / rows["egemaps"]["clips_per_s"]
        rows[f"{name} / egemaps (x)"] = round(ratio, 3)
        print(f"  {name} speed / egemaps speed: {ratio:.2f}x")
    return rows


# 2. compute types -------------------------------------------------------------------------
def compute_types(clips: list, device: str, types: tuple[str, ...], repeats: int,
                  batch_size: int) -> dict:
    from mer_features.encoders import create_encoder

    print(f"2. compute types of the bundled tiny.en on {device} (encoder on decoded clips, "
          f"batches of {batch_size})")
    fns = {}
    for t in types:
        enc = create_encoder("audio", "whisper", {"compute_type": t})
        enc.load(device)
        fns[t] = runner(enc, batches_of(clips, batch_size), keep_frames=True)
    timed = best_of(fns, repeats, device)
    rows: dict = {}
    ref = timed["fp32"][1]
    for t, (seconds, out) in timed.items():
        report(rows, t, seconds, clips)
        rows[t]["utterance_cosine_min"] = round(min_cosine(
            {k: v[0] for k, v in ref.items()}, {k: v[0] for k, v in out.items()}), 6)
        rows[t]["frame_cosine_min"] = round(frame_cosine(
            {k: v[1] for k, v in ref.items()}, {k: v[1] for k, v in out.items()}), 6)
        rows[t]["speed_vs_fp32"] = round(timed["fp32"][0] / seconds, 3)
        print(f"    speed vs fp32 {rows[t]['speed_vs_fp32']:.2f}x, cosine to fp32: utterance "
              f">= {rows[t]['utterance_cosine_min']:.5f}, frames >= {rows[t]['frame_cosine_min']:.5f}")
    return rows


# 3. bundled whisper, batched vs loop --------------------------------------------------------
def bundled_batched(clips: list, device: str, repeats: int, batch_size: int) -> dict:
    from mer_features.encoders import create_encoder

    print(f"3. bundled tiny.en, default compute type on {device}: per-clip loop vs batches of "
          f"{batch_size}")
    fns = {}
    for kind in ("clip", "padded"):
        enc = create_encoder("audio", "whisper", {"input": kind})
        enc.load(device)
        fns[f"{kind}: per-clip loop"] = runner(enc, [[c] for c in clips])
        fns[f"{kind}: batched"] = runner(enc, batches_of(clips, batch_size))
    timed = best_of(fns, repeats, device)
    rows: dict = {}
    for name, (seconds, _) in timed.items():
        report(rows, name, seconds, clips)
    for kind in ("clip", "padded"):
        ratio = timed[f"{kind}: per-clip loop"][0] / timed[f"{kind}: batched"][0]
        rows[f"{kind}: batched / loop (x)"] = round(ratio, 3)
        print(f"  {kind}: batched is {ratio:.2f}x the per-clip loop")
    return rows


# 4. large-v3-shaped HF Whisper ---------------------------------------------------------------
def build_large(folder: Path, shape: dict) -> Path:
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if (folder / "config.json").exists():
        return folder
    config = WhisperConfig(**shape, decoder_layers=1, decoder_attention_heads=shape[
        "encoder_attention_heads"], decoder_ffn_dim=shape["encoder_ffn_dim"])
    torch.manual_seed(0)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():  # random weights of the usual scale (speed is what is measured)
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.half().save_pretrained(folder)
    return folder


def large(clips: list, device: str, repeats: int, batch_size: int, shape: dict) -> dict:
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    from mer_features.encoders import create_encoder

    gpu = device.startswith("cuda")
    dtype = "fp16" if gpu else "fp32"
    name = "large-v3-shaped" if shape is LARGE_V3 else "small"
    print(f"4. {name} HF Whisper ({shape['encoder_layers']} layers, d_model {shape['d_model']}), "
          f"{len(clips)} clips, {dtype}: per-clip loop (30-s input, transformers) vs hf: batches "
          f"of {batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = build_large(Path(tmp) / "whisper", shape)
        print(f"  built and saved in {time.perf_counter() - start:.0f} s", flush=True)
        extractor = WhisperFeatureExtractor(feature_size=shape["num_mel_bins"])
        torch_dtype = torch.float16 if gpu else torch.float32
        encoder = WhisperModel.from_pretrained(folder, dtype=torch_dtype).encoder.to(device).eval()

        def loop(warmup: bool) -> dict:
            out = {}
            for clip in clips[:1] if warmup else clips:
                mel = extractor(clip.waveform, sampling_rate=16000, return_tensors="pt").input_features
                with torch.inference_mode():
                    states = encoder(mel.to(device, torch_dtype)).last_hidden_state[0]
                n = -(-(len(clip.waveform) // 160) // 2)
                out[clip.name] = states[:n].float().mean(0).cpu().numpy()
            return out

        fns = {"per-clip loop (transformers, 30 s)": loop}
        encoders = {}
        for kind in ("clip", "padded"):
            enc = create_encoder("audio", f"hf:{folder}", {"input": kind, "pooling": "mean"})
            enc.load(device, dtype)
            encoders[kind] = enc
            fns[f"hf: {kind}, batched"] = runner(enc, batches_of(clips, batch_size))
        timed = best_of(fns, repeats, device)
        rows: dict = {}
        for label, (seconds, _) in timed.items():
            report(rows, label, seconds, clips)
        loop_s = timed["per-clip loop (transformers, 30 s)"][0]
        for kind in ("clip", "padded"):
            ratio = loop_s / timed[f"hf: {kind}, batched"][0]
            rows[f"hf: {kind}, batched / loop (x)"] = round(ratio, 3)
            print(f"  hf: {kind}, batched is {ratio:.2f}x the per-clip loop")
        cos = min_cosine(timed["per-clip loop (transformers, 30 s)"][1],
                         timed["hf: padded, batched"][1])
        rows["padded vs loop utterance cosine, min"] = round(cos, 6)
        print(f"  padded hf: vs the loop's vectors (the same input): cosine >= {cos:.5f}")
        if gpu:
            del encoder
            ref = create_encoder("audio", f"hf:{folder}", {"input": "padded", "pooling": "mean"})
            ref.load(device, "fp32")
            fp32 = runner(ref, batches_of(clips, batch_size))(False)
            cos = min_cosine(fp32, timed["hf: padded, batched"][1])
            rows["fp16 vs fp32 utterance cosine, min"] = round(cos, 6)
            print(f"  fp16 vs fp32 (padded): cosine >= {cos:.5f}")
    return rows


def main() -> int:
    import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=None, help="clips (default 64 on a GPU, 32 on a CPU)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 on a GPU, 8 on a CPU")
    parser.add_argument("--large-clips", type=int, default=None,
                        help="clips for the large-v3-shaped model (default: all on a GPU, 3 on a CPU)")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--small-large", action="store_true", help="a small model instead of large-v3")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_whisper.json")
    args = parser.parse_args()

    info = machine.describe()
    print(machine.line(info), flush=True)
    device, types = device_and_types()
    n = args.clips or (64 if device == "cuda" else 32)
    batch_size = args.batch_size or (32 if device == "cuda" else 8)
    results: dict = {"machine": info, "device": device, "compute_types": list(types)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        manifest, source = corpus(Path(tmp), n)
        results["clips"] = source
        print(f"clips: {source}", flush=True)
        clips = decoded(manifest)
        print(f"audio: {sum(c.duration for c in clips):.1f} s in {len(clips)} clips", flush=True)
        attempt(results, "pipeline", lambda: results.update(
            pipeline=pipeline(manifest, clips, Path(tmp), device, args.repeats)))
        attempt(results, "compute_types", lambda: results.update(
            compute_types=compute_types(clips, device, types, args.repeats, batch_size)))
        attempt(results, "bundled", lambda: results.update(
            bundled=bundled_batched(clips, device, args.repeats, batch_size)))
        if not args.skip_large:
            k = args.large_clips or (len(clips) if device == "cuda" else 3)
            shape = SMALL if args.small_large else LARGE_V3
            attempt(results, "large", lambda: results.update(
                large=large(clips[:k], device, args.repeats, batch_size, shape)))
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"done in {results['seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
