"""Audio extraction: this pipeline against the MER baselines' one-clip-at-a-time loop.

Both extract the same clips with the same HuBERT-base-sized model (the real architecture from
its config, random weights: same speed as the trained one), side by side in one run:

* per-clip loop, as the MER 2023 baseline scripts do it: load the model, then for each clip
  decode with librosa, forward, mean of the last four layers, save one .npy file;
* this pipeline (`mer_features.pipeline.extract`) in fp32 (the default) and with
  `--dtype auto` (bf16 where the CPU has AMX/AVX512-BF16, else fp32: decided from the CPU's
  flags, never timed), alternating with the loop, each variant's best of ``--repeats`` runs;
* a re-run over the complete store;
* every compute path forced in turn (fast / stock implementation x fp32 / bf16), each against
  the loop on the same ``--path-clips`` clips, so the table shows what each path costs on this
  CPU. A path the probe found hopeless here (e.g. bf16 where it is emulated: 30x slower) runs
  on a quarter of those clips, once.

The probe (:func:`mer_features.autotune.measure`, two 1.5 s synthetic clips, every path, cached
per machine) is the measurement behind the fixed rules of :mod:`mer_features.encoders.tuning`
(the CPU fast path by default on a CPU; bf16 only where the CPU computes it natively); the
pipeline itself never times anything. Prints the machine (CPU model and flags), the probe, the
ratios and the cosine similarity of bf16 to fp32 utterance vectors; writes
benchmarks/out/bench_audio.json.
Usage: python benchmarks/bench_audio.py [--clips N] [--repeats R] [--path-clips K] [--out DIR]
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
PATHS = ("fast-fp32", "stock-fp32", "fast-bf16", "stock-bf16")


def corpus(folder: Path, n: int) -> tuple[Path, str]:
    """A manifest of n clips: real RAVDESS speech when present, else generated voiced clips."""
    from synthetic_media import voiced, write_manifest

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


def subset(manifest: Path, k: int, folder: Path) -> Path:
    """The first k clips of a manifest, spread over it (every n/k-th)."""
    from synthetic_media import write_manifest

    from mer_features.corpora.manifest import read_manifest

    clips = list(read_manifest(manifest))
    chosen = clips[:: max(1, len(clips) // k)][:k]
    return write_manifest(folder / f"{manifest.stem}-{k}.csv",
                          [{"name": c.name, "audio": str(c.audio_source)} for c in chosen])


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


def utterances(store: Path, names=None) -> tuple[list[str], np.ndarray]:
    from mer_features.store import FeatureStore

    with FeatureStore(store) as s:
        names = list(names or s.names)
        return names, s.utterances(names)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cos.min())


def encoder_probe(enc, device: str):
    """``probe(path)`` for :func:`mer_features.autotune.measure`: a fresh copy of ``enc``
    loaded on that path encodes the probe inputs of its modality; returns (seconds of
    encode_batch, utterance vectors as rows). One copy is loaded at a time."""
    import gc

    from mer_features.autotune import split_path
    from mer_features.modalities import get_stage

    items = get_stage(enc.modality).probe_inputs(enc)
    current: dict = {}

    def probe(name: str):
        if name not in current:
            current.clear()
            gc.collect()
            impl, dtype = split_path(name)
            fresh = type(enc)(enc.config)
            fresh.impl = impl
            fresh.load(device, dtype)
            current[name] = fresh
        start = time.perf_counter()
        results = current[name].encode_batch(items)
        seconds = time.perf_counter() - start
        rows = []
        for r in results:
            if isinstance(r, Exception):
                raise r
            rows.append(np.asarray(r.utterance, np.float32).reshape(-1, r.utterance.shape[-1]))
        return seconds, np.concatenate(rows)

    return probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: the pipeline's own choice)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--path-clips", type=int, default=8,
                        help="clips of the per-path table (0: no table)")
    args = parser.parse_args()

    import machine

    from mer_features import autotune
    from mer_features.encoders import create_encoder
    from mer_features.encoders.tuning import choose_path
    from mer_features.modalities import get_stage
    from mer_features.pipeline import extract

    info = machine.describe()
    print(machine.line(info), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = hubert_base(args.out / "hubert-base-random")
    spec = f"hf:{model_dir}"
    rows: dict = {"machine": info, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, source = corpus(tmp, args.clips)
        rows["corpus"] = source
        common = dict(modality="audio", encoder=spec, device="cpu", progress=False,
                      workers=args.workers, log=lambda m: print(f"  [{m}]", flush=True))

        # Every path on a short probe (cached per machine): what the fixed rule rests on. The
        # rule itself (choose_path) reads only the device and the CPU's flags.
        enc = create_encoder("audio", spec)
        t = time.perf_counter()
        m = autotune.measure({"encoder": enc.shape_fields(),
                              "probe": get_stage("audio").probe_size()},
                             sorted(PATHS, key=lambda p: p != "stock-fp32"),
                             encoder_probe(enc, "cpu"))
        probe_s = time.perf_counter() - t
        choice = choose_path(enc, "cpu", "auto")
        fastest = m.fastest()
        rows["probe"] = {"seconds": round(probe_s, 2), "cached": m.cached,
                         "trials": {n: tr.to_json() for n, tr in m.trials.items()},
                         "auto": choice.name, "fastest": fastest.path if fastest else None}
        print(f"compute-path probe ({'cached' if m.cached else f'{probe_s:.1f} s, once per machine'})"
              f": {m.table()}\n  --dtype auto and the default path -> {choice.name} (fixed "
              f"rule); fastest on the probe: {rows['probe']['fastest']}", flush=True)
        best_s = min(tr.seconds for tr in m.trials.values() if tr.seconds is not None)
        hopeless = {n for n, tr in m.trials.items()
                    if tr.seconds is None or tr.seconds > autotune.GIVE_UP * best_s}

        # Alternate the variants and keep each one's best time: this VM's speed drifts by
        # +-20% over tens of seconds, and the first forward of each new shape is slower.
        variants = {"fp32": "fp32"}
        if choice.dtype != "fp32":
            variants["auto"] = "auto"
        times: dict[str, list[float]] = {"loop": [], **{v: [] for v in variants}}
        for repeat in range(args.repeats):
            times["loop"].append(per_clip_loop(manifest, model_dir, tmp / "npy"))
            for name, dtype in variants.items():
                store = tmp / f"{name}.h5"
                store.unlink(missing_ok=True)
                t = time.perf_counter()
                extract(manifest, store, dtype=dtype, **common)
                times[name].append(time.perf_counter() - t)
        best = {k: min(v) for k, v in times.items()}
        best.setdefault("auto", best["fp32"])
        t = time.perf_counter()
        rerun = extract(manifest, tmp / "fp32.h5", dtype="fp32", **common)
        rerun_s = time.perf_counter() - t
        assert rerun.done == 0 and rerun.skipped == args.clips
        names, fp32_u = utterances(tmp / "fp32.h5")
        loop_u = np.stack([np.load(tmp / "npy" / f"{n}.npy") for n in names])
        rows.update({
            "per_clip_loop_fp32_s": round(best["loop"], 2),
            "pipeline_fp32_s": round(best["fp32"], 2),
            "speedup_fp32": round(best["loop"] / best["fp32"], 3),
            "auto_path": f"{choice.impl}-{choice.dtype}",
            "pipeline_auto_s": round(best["auto"], 2),
            "speedup_auto": round(best["loop"] / best["auto"], 3),
            "rerun_s": round(rerun_s, 2),
            "rerun_percent_of_first": round(100 * rerun_s / best["fp32"], 2),
            "fp32_max_abs_diff_vs_loop": float(np.abs(loop_u - fp32_u).max()),
            "times": {k: [round(x, 2) for x in v] for k, v in times.items()},
        })
        print(f"audio extraction, HuBERT-base-sized model, {source}; best of {args.repeats} "
              "alternating runs")
        print(f"  per-clip loop (fp32)        {best['loop']:7.1f} s")
        print(f"  pipeline fp32               {best['fp32']:7.1f} s   "
              f"{best['loop'] / best['fp32']:5.2f}x the loop")
        print(f"  pipeline --dtype auto       {best['auto']:7.1f} s   "
              f"{best['loop'] / best['auto']:5.2f}x the loop ({choice.impl}-{choice.dtype})")
        print(f"  re-run over complete store  {rerun_s:7.2f} s   {100 * rerun_s / best['fp32']:.1f}% "
              "of the first run")
        print(f"  fp32 pipeline vs loop features: max abs difference "
              f"{rows['fp32_max_abs_diff_vs_loop']:.2e}", flush=True)

        if args.path_clips:
            rows["paths"] = path_table(manifest, model_dir, tmp, args, common, hopeless)
    (args.out / "bench_audio.json").write_text(json.dumps(rows, indent=2))


def path_table(manifest: Path, model_dir: Path, tmp: Path, args, common: dict,
               hopeless: set[str]) -> dict:
    """Each compute path forced, against the loop on the same clips."""
    from mer_features.pipeline import extract

    k = min(args.path_clips, args.clips)
    few = max(1, k // 4)
    sets = {k: subset(manifest, k, tmp)}
    sets[few] = subset(sets[k], few, tmp)  # within the k clips: fast-fp32 is the reference
    plan = {p: (few if p in hopeless else k) for p in PATHS}
    loop_times: dict[int, list[float]] = {n: [] for n in set(plan.values())}
    path_times: dict[str, list[float]] = {p: [] for p in PATHS}
    for repeat in range(args.repeats):
        for n in loop_times:
            loop_times[n].append(per_clip_loop(sets[n], model_dir, tmp / f"npy{n}"))
        for p in PATHS:
            if repeat and p in hopeless:
                continue  # minutes per run, and far from winning: once is enough
            impl, dtype = p.split("-")
            store = tmp / f"path-{p}.h5"
            store.unlink(missing_ok=True)
            t = time.perf_counter()
            extract(sets[plan[p]], store, dtype=dtype, compute_path=impl, **common)
            path_times[p].append(time.perf_counter() - t)
    table = {}
    print(f"compute paths forced, each against the loop on the same clips ({k} clips; "
          f"{few} for paths the probe found hopeless here, run once)")
    for p in PATHS:
        n = plan[p]
        names, u = utterances(tmp / f"path-{p}.h5")
        _, ref = utterances(tmp / "path-fast-fp32.h5", names)
        loop_s, path_s = min(loop_times[n]), min(path_times[p])
        table[p] = {"clips": n, "seconds": round(path_s, 2), "loop_seconds": round(loop_s, 2),
                    "speedup": round(loop_s / path_s, 3),
                    "cosine_min_to_fast_fp32": round(cosine_min(ref, u), 6),
                    "max_abs_diff_to_fast_fp32": float(np.abs(ref - u).max())}
        print(f"  {p:11s} {n:3d} clips {path_s:7.1f} s, loop {loop_s:6.1f} s: "
              f"{loop_s / path_s:6.3f}x the loop; cosine to fast-fp32 "
              f"{table[p]['cosine_min_to_fast_fp32']:.5f}", flush=True)
    return table


if __name__ == "__main__":
    main()
