"""Audio extraction: this pipeline against the MER baselines' one-clip-at-a-time loop.

Both extract the same clips with the same HuBERT-base-sized model (the real architecture from
its config, random weights: same speed as the trained one), side by side in one run:

* per-clip loop, as the MER 2023 baseline scripts do it: load the model, then for each clip
  decode with librosa, forward, mean of the last four layers, save one .npy file;
* this pipeline (`mer_features.pipeline.extract`) in fp32 and in bf16;
* a re-run over the complete store.

Prints the ratios and the cosine similarity of bf16 to fp32 utterance vectors.
Usage: python benchmarks/bench_audio.py [--clips N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"


def corpus(folder: Path, n: int) -> tuple[Path, str]:
    """A manifest of n clips: real RAVDESS speech when present, else generated voiced clips."""
    from conftest import voiced, write_manifest

    if RAVDESS.is_dir():
        files = sorted(RAVDESS.glob("Actor_*/*.flac"))[:: max(1, 720 // n)][:n]
        rows = [{"name": f.stem, "audio": str(f)} for f in files]
        source = f"RAVDESS ({n} clips, 48 kHz FLAC, 3-5 s)"
    else:
        import soundfile as sf

        rows = []
        for i in range(n):
            path = folder / f"{i}.wav"
            sf.write(path, voiced(2.5 + (i % 5) * 0.5, f0=100 + 7 * i, seed=i), 16000)
            rows.append({"name": f"c{i}", "audio": str(path)})
        source = f"generated voiced clips ({n}, 2.5-4.5 s)"
    return write_manifest(folder / "manifest.csv", rows), source


def hubert_base(folder: Path) -> Path:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        HubertModel(HubertConfig()).save_pretrained(folder)  # 12 layers, 768-d, group norm
        Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
    return folder


def per_clip_loop(manifest: Path, model_dir: Path, out: Path) -> float:
    """The baseline procedure, timed from model load to the last saved .npy."""
    import librosa
    import torch
    from transformers import AutoModel

    from mer_features.corpora.manifest import read_manifest

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = AutoModel.from_pretrained(model_dir).eval()
    for clip in read_manifest(manifest):
        wave, _ = librosa.load(clip.audio_source, sr=16000)
        with torch.no_grad():
            hidden = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states
        feature = torch.stack(hidden[-4:]).mean(0)[0].mean(0).numpy()
        np.save(out / f"{clip.name}.npy", feature)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: the pipeline's own choice)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from mer_features.pipeline import extract
    from mer_features.store import FeatureStore

    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = hubert_base(args.out / "hubert-base-random")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, source = corpus(tmp, args.clips)
        spec = f"hf:{model_dir}"
        common = dict(modality="audio", encoder=spec, device="cpu", progress=False,
                      workers=args.workers)

        # Alternate the variants and keep each one's best time: this VM's speed drifts by
        # +-20% over tens of seconds, and the first forward of each new shape is slower.
        loop_times, fp32_times, bf16_times = [], [], []
        for repeat in range(args.repeats):
            loop_times.append(per_clip_loop(manifest, model_dir, tmp / "npy"))
            for dtype, times in (("fp32", fp32_times), ("bf16", bf16_times)):
                store = tmp / f"{dtype}.h5"
                store.unlink(missing_ok=True)
                t = time.perf_counter()
                extract(manifest, store, dtype=dtype, **common)
                times.append(time.perf_counter() - t)
        loop_s, fp32_s, bf16_s = min(loop_times), min(fp32_times), min(bf16_times)
        t = time.perf_counter()
        rerun = extract(manifest, tmp / "bf16.h5", dtype="bf16", **common)
        rerun_s = time.perf_counter() - t
        assert rerun.done == 0 and rerun.skipped == args.clips

        with FeatureStore(tmp / "fp32.h5") as a, FeatureStore(tmp / "bf16.h5") as b:
            ua, ub = a.utterances(), b.utterances(a.names)
            names = a.names
        loop = np.stack([np.load(tmp / "npy" / f"{n}.npy") for n in names])
        cos = (ua * ub).sum(1) / np.linalg.norm(ua, axis=1) / np.linalg.norm(ub, axis=1)
        loop_diff = float(np.abs(loop - ua).max())

    rows = {
        "corpus": source,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                   f"{'CUDA' if torch.cuda.is_available() else 'CPU'}: {platform.processor() or 'cpu'}",
        "repeats": args.repeats,
        "per_clip_loop_fp32_s": round(loop_s, 2),
        "pipeline_fp32_s": round(fp32_s, 2),
        "pipeline_bf16_s": round(bf16_s, 2),
        "rerun_s": round(rerun_s, 2),
        "speedup_fp32": round(loop_s / fp32_s, 2),
        "speedup_bf16": round(loop_s / bf16_s, 2),
        "bf16_cosine_min": round(float(cos.min()), 5),
        "bf16_cosine_mean": round(float(cos.mean()), 5),
        "rerun_percent_of_first": round(100 * rerun_s / bf16_s, 2),
        "fp32_max_abs_diff_vs_loop": loop_diff,
    }
    print(f"audio extraction, HuBERT-base-sized model, {source}; best of {args.repeats} "
          "alternating runs")
    print(f"  per-clip loop (fp32)        {loop_s:7.1f} s")
    print(f"  pipeline fp32               {fp32_s:7.1f} s   {loop_s / fp32_s:5.2f}x the loop")
    print(f"  pipeline bf16               {bf16_s:7.1f} s   {loop_s / bf16_s:5.2f}x the loop"
          f"   cosine to fp32: min {cos.min():.4f}, mean {cos.mean():.4f}")
    print(f"  re-run over complete store  {rerun_s:7.2f} s   {100 * rerun_s / bf16_s:.1f}% of the first run")
    print(f"  fp32 pipeline vs loop features: max abs difference {loop_diff:.2e}")
    (args.out / "bench_audio.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
