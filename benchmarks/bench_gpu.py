"""GPU extraction: batched HuBERT-base and -large in fp32 / bf16 / fp16 against the per-clip loop.

Issue 18. For each model size (the real architecture from its config, random weights: same speed
as the trained one; saved with save_pretrained and loaded as ``hf:DIR`` by the toolkit), over
the same synthetic speech-like clips (16 kHz, 3-6 s, like MER clips):

* the MER baselines' per-clip loop: ``transformers`` model, one clip per forward, mean of the
  last four layers (as benchmarks/bench_audio.py does it, minus librosa decoding);
* the toolkit's audio encoder (``mer_features.encoders.hf_audio``) fed one clip at a time, fp32;
* the same encoder fed the pipeline's batches (clips sorted by length and cut by the
  scheduler's own rule, the audio stage's ``default_batch_size`` clips and ``batch_seconds`` of padded audio at
  most), in fp32, bf16 and fp16;
* when soundfile is importable (carried as wheels on the device machine): the whole pipeline,
  ``mer_features.pipeline.extract`` from WAV files into an HDF5 store, in each dtype, timed
  end to end (model load, decoding workers and store writes included).

Encoder timings exclude a warm-up pass and sit between ``torch.cuda.synchronize()`` calls; each
is the best of ``--repeats``. Reported: clips/s, real-time factor (seconds of audio per second
of compute), speed-up against the baseline loop, peak GPU memory, and the minimum cosine of
the bf16 / fp16 utterance vectors to fp32 ones.

Usage: python benchmarks/bench_gpu.py [--out FILE.json] [--clips 256] [--repeats 2]
       python benchmarks/bench_gpu.py --tiny   (tiny models, few clips: a CPU sanity check)
Without a CUDA GPU the full run is refused (exit 2) unless --allow-cpu is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DTYPES = ("fp32", "bf16", "fp16")
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
             intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
             conv_bias=True)
"""hubert-large-ll60k's architecture (layer-norm feature encoder, pre-norm transformer)."""
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def sizes(tiny: bool) -> dict[str, tuple[dict, bool]]:
    """Model size name -> (HubertConfig fields, whether the checkpoint normalises its input)."""
    large = {**LARGE, **TINY} if tiny else LARGE
    base = dict(TINY) if tiny else {}
    suffix = "-tiny" if tiny else ""
    return {f"hubert-base{suffix}": (base, False), f"hubert-large{suffix}": (large, True)}


def build_model(folder: Path, fields: dict, normalize: bool) -> Path:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    HubertModel(HubertConfig(**fields)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=normalize).save_pretrained(folder)
    return folder


def make_clips(n: int, seed: int = 0) -> list:
    """n speech-like 16 kHz clips of 3-6 s (harmonics with vibrato and syllable envelopes)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic_media import voiced

    from mer_features.decode.inputs import AudioInput

    rng = np.random.default_rng(seed)
    durations = rng.uniform(3.0, 6.0, n)
    return [AudioInput(f"c{i:04d}", voiced(float(d), f0=90 + (7 * i) % 160, seed=i), 16000)
            for i, d in enumerate(durations)]


def pipeline_batches(clips: list, device: str, dtype: str) -> list[list]:
    """The clips grouped as the pipeline's scheduler groups them on this device and dtype."""
    from mer_features.modalities import AudioStage
    from mer_features.pipeline import ExtractOptions
    from mer_features.pipeline.scheduler import _cut

    batch_size = AudioStage.default_batch_size(device, dtype)
    batch_seconds = ExtractOptions.__dataclass_fields__["batch_seconds"].default
    window = [SimpleNamespace(length=c.duration, item=c) for c in clips]
    return [[d.item for d in b] for b in _cut(window, batch_size, batch_seconds)]


class Timer:
    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def best(self, fn, repeats: int) -> tuple[float, object, float | None]:
        """(best seconds of ``repeats`` timed runs after one warm-up, last result, peak GiB)."""
        torch = self.torch
        fn(warmup=True)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        times, result = [], None
        for _ in range(repeats):
            self.sync()
            t = time.perf_counter()
            result = fn(warmup=False)
            self.sync()
            times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None
        return min(times), result, peak


def baseline_loop(model_dir: Path, clips: list, device: str):
    """The MER baselines' loop: one clip per forward, mean of the last 4 layers, to numpy."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).to(device).eval()
    normalize = json.loads((model_dir / "preprocessor_config.json").read_text())["do_normalize"]

    def run(warmup: bool) -> dict[str, np.ndarray]:
        out = {}
        for clip in clips[:4] if warmup else clips:
            wave = clip.waveform
            if normalize:
                wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
            with torch.no_grad():
                hidden = model(torch.from_numpy(wave)[None].to(device),
                               output_hidden_states=True).hidden_states
            out[clip.name] = torch.stack(hidden[-4:]).mean(0)[0].mean(0).cpu().numpy()
        return out

    return run, model


def encoder_run(spec: str, device: str, dtype: str, batches: list[list]):
    """The toolkit's encoder over ``batches`` (lists of clips); returns name -> utterance."""
    from mer_features.encoders import create_encoder
    from mer_features.errors import ClipError

    enc = create_encoder("audio", spec)
    enc.impl = enc.impls(device)[0]
    enc.load(device, dtype)

    def run(warmup: bool) -> dict[str, np.ndarray]:
        out = {}
        for batch in batches[:2] if warmup else batches:
            for clip, result in zip(batch, enc.encode_batch(batch)):
                if isinstance(result, ClipError):
                    raise RuntimeError(f"clip {clip.name}: {result.stage}: {result.reason}")
                out[clip.name] = result.utterance
        return out

    return run, enc


def cosine_min(ref: dict, other: dict) -> float:
    a = np.stack([ref[k] for k in sorted(ref)]).astype(np.float64)
    b = np.stack([other[k] for k in sorted(ref)]).astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cos.min())


def max_abs(ref: dict, other: dict) -> float:
    return float(max(np.abs(ref[k] - other[k]).max() for k in ref))


def bench_size(name: str, model_dir: Path, clips: list, device: str, args, dtypes) -> dict:
    import torch

    timer = Timer(device)
    audio_s = sum(c.duration for c in clips)
    rows: dict = {}
    utts: dict = {}

    def record(label: str, seconds: float, peak, batches: int | None, dtype: str) -> None:
        rows[label] = {"dtype": dtype, "seconds": round(seconds, 4),
                       "clips_per_s": round(len(clips) / seconds, 2),
                       "real_time_factor": round(audio_s / seconds, 1),
                       "encoder_calls": batches,
                       "peak_gpu_gib": None if peak is None else round(peak, 2)}
        print(f"  {label:26s} {seconds:8.3f} s  {len(clips) / seconds:8.1f} clips/s  "
              f"RTF {audio_s / seconds:8.1f}", flush=True)

    def attempt(label: str, fn) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one failed variant must not lose the others
            rows[label] = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(f"  {label:26s} failed: {rows[label]['error']}", flush=True)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

    def loop_baseline() -> None:
        run, model = baseline_loop(model_dir, clips, device)
        seconds, utts["baseline_loop"], peak = timer.best(run, args.repeats)
        record("baseline_loop_fp32", seconds, peak, len(clips), "fp32")
        del model

    def loop_encoder() -> None:
        run, enc = encoder_run(f"hf:{model_dir}", device, "fp32", [[c] for c in clips])
        seconds, utts["loop_fp32"], peak = timer.best(run, args.repeats)
        record("encoder_loop_fp32", seconds, peak, len(clips), "fp32")
        del enc

    def batched(dtype: str):
        def go() -> None:
            batches = pipeline_batches(clips, device, dtype)
            run, enc = encoder_run(f"hf:{model_dir}", device, dtype, batches)
            seconds, utts[dtype], peak = timer.best(run, args.repeats)
            record(f"encoder_batched_{dtype}", seconds, peak, len(batches), dtype)
            rows[f"encoder_batched_{dtype}"]["batch_size"] = max(len(b) for b in batches)
            del enc
        return go

    attempt("baseline_loop_fp32", loop_baseline)
    attempt("encoder_loop_fp32", loop_encoder)
    for dtype in dtypes:
        attempt(f"encoder_batched_{dtype}", batched(dtype))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    base = rows.get("baseline_loop_fp32", {}).get("seconds")
    loop = rows.get("encoder_loop_fp32", {}).get("seconds")
    for row in rows.values():
        if "seconds" in row:
            row["speedup_vs_baseline_loop"] = round(base / row["seconds"], 2) if base else None
            row["speedup_vs_encoder_loop"] = round(loop / row["seconds"], 2) if loop else None
    accuracy: dict = {}
    if "fp32" in utts:
        for dtype in dtypes[1:]:
            if dtype in utts:
                accuracy[f"cosine_min_{dtype}_to_fp32"] = round(cosine_min(utts["fp32"], utts[dtype]), 6)
        for other in ("loop_fp32", "baseline_loop"):
            if other in utts:
                accuracy[f"max_abs_diff_batched_fp32_to_{other}"] = max_abs(utts[other], utts["fp32"])
                accuracy[f"cosine_min_batched_fp32_to_{other}"] = round(
                    cosine_min(utts[other], utts["fp32"]), 6)
    for key, value in accuracy.items():
        print(f"  {key:44s} {value:.6g}", flush=True)
    return {"model": name, "rows": rows, "accuracy": accuracy, "reference": utts.get("fp32")}


def bench_pipeline(model_dir: Path, clips: list, device: str, tmp: Path, dtypes,
                   reference: dict | None) -> dict:
    """The whole pipeline, WAV files -> store, in each dtype (end to end, once each)."""
    try:
        import soundfile as sf
    except ImportError as e:
        return {"skipped": f"soundfile is not importable here ({e}); carry its wheels"}
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic_media import write_manifest

    from mer_features.pipeline import extract
    from mer_features.store import FeatureStore

    wav = tmp / "wav"
    wav.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in clips:
        sf.write(wav / f"{c.name}.wav", c.waveform, c.sample_rate, subtype="FLOAT")
        rows.append({"name": c.name, "audio": str(wav / f"{c.name}.wav")})
    manifest = write_manifest(tmp / "manifest.csv", rows)
    audio_s = sum(c.duration for c in clips)
    out: dict = {"timed": "end to end: model load, decoding workers, batches, store writes"}
    for dtype in dtypes:
        store = tmp / f"pipeline-{dtype}.h5"
        try:
            t = time.perf_counter()
            summary = extract(manifest, store, modality="audio", encoder=f"hf:{model_dir}",
                              device=device, dtype=dtype, overwrite=True, progress=False)
            seconds = time.perf_counter() - t
            with FeatureStore(store) as s:
                names = list(s.names)
                got = dict(zip(names, s.utterances(names)))
            row = {"seconds": round(seconds, 3), "clips_per_s": round(len(clips) / seconds, 2),
                   "real_time_factor": round(audio_s / seconds, 1), "done": summary.done,
                   "failed": summary.failed}
            if reference:
                row["cosine_min_to_encoder_batched_fp32"] = round(cosine_min(reference, got), 6)
        except Exception as e:  # noqa: BLE001
            row = {"error": f"{type(e).__name__}: {e}"[:500]}
        out[dtype] = row
        print(f"  pipeline {dtype}: {row}", flush=True)
    return out


def environment(device: str) -> dict:
    import torch
    import transformers

    info = {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "device": device}
    if device.startswith("cuda"):
        info.update(gpu=torch.cuda.get_device_name(0),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    fp32_matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                    cudnn_tf32=torch.backends.cudnn.allow_tf32)
    try:
        import machine

        info["machine"] = machine.describe()
    except Exception as e:  # noqa: BLE001 - the machine line is a nicety
        info["machine"] = f"unavailable ({type(e).__name__}: {e})"
    return info


def markdown(result: dict) -> str:
    lines = ["| model | variant | batch | clips/s | real-time factor | x baseline loop | "
             "x encoder loop | peak GiB |", "|---|---|---|---|---|---|---|---|"]
    for size in result["sizes"]:
        for label, r in size["rows"].items():
            if "error" in r:
                lines.append(f"| {size['model']} | {label} | | failed: {r['error'][:80]} | | | | |")
                continue
            lines.append(f"| {size['model']} | {label} | {r.get('batch_size', 1)} | "
                         f"{r['clips_per_s']} | {r['real_time_factor']} | "
                         f"{r['speedup_vs_baseline_loop']} | {r['speedup_vs_encoder_loop']} | "
                         f"{r['peak_gpu_gib']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_gpu.json",
                        help="JSON file to write (its folder is created)")
    parser.add_argument("--clips", type=int, default=None, help="clips (default 256; 6 with --tiny)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant (best kept)")
    parser.add_argument("--sizes", default="base,large", help="model sizes: base, large or both")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny models and few clips: checks the whole script quickly on a CPU")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run the full-size benchmark on a CPU when there is no GPU (slow)")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="skip the end-to-end pipeline runs (WAV files -> store)")
    args = parser.parse_args()
    if args.clips is not None and args.clips < 1 or args.repeats < 1:
        print("error: --clips and --repeats must be at least 1.", file=sys.stderr)
        return 2
    wanted = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not wanted or set(wanted) - {"base", "large"}:
        print(f"error: --sizes takes base, large or base,large; got '{args.sizes}'.", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("error: torch is not importable here; run this with the toolkit's environment.",
              file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available()
    if not cuda and not (args.tiny or args.allow_cpu):
        print("error: no CUDA GPU is visible to torch here; run bench_gpu.py on a GPU machine, "
              "or pass --tiny for a quick CPU check (--allow-cpu for the full run on a CPU).",
              file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    n = args.clips or (6 if args.tiny else 256)
    dtypes = DTYPES if cuda else ("fp32", "bf16")  # fp16 autocast is a GPU dtype
    result: dict = {"issue": 18, "environment": environment(device), "clips": n,
                    "repeats": args.repeats, "tiny": args.tiny, "dtypes": list(dtypes),
                    "input": "synthetic speech-like 16 kHz waveforms (tests/synthetic_media.py voiced), "
                             "fed to the toolkit's hf audio encoder; pipeline rows from WAV files",
                    "sizes": []}
    print(f"bench_gpu: {result['environment'].get('gpu', 'CPU')}, torch {torch.__version__}, "
          f"{n} clips, best of {args.repeats}", flush=True)
    clips = make_clips(n)
    result["audio_seconds"] = round(sum(c.duration for c in clips), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (fields, normalize) in sizes(args.tiny).items():
            if name.split("-")[1] not in wanted:
                continue
            t = time.perf_counter()
            model_dir = build_model(tmp / name, fields, normalize)
            print(f"{name}: built in {time.perf_counter() - t:.1f} s", flush=True)
            size = bench_size(name, model_dir, clips, device, args, dtypes)
            reference = size.pop("reference")
            if not args.no_pipeline:
                size["pipeline"] = bench_pipeline(model_dir, clips, device, tmp / f"{name}-p",
                                                  dtypes, reference)
            result["sizes"].append(size)
            args.out.write_text(json.dumps(result, indent=2))  # what is done survives a crash
    result["markdown"] = markdown(result)
    args.out.write_text(json.dumps(result, indent=2))
    print(result["markdown"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
