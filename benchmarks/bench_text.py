"""Text extraction: this pipeline against a one-transcript-at-a-time loop, same model.

The loop is the MER baselines' procedure: load the model, then for each transcript tokenize,
forward, mean-pool, save one .npy. The pipeline (`mer_features.pipeline.extract`, default
`minilm` encoder) sorts transcripts by token count and encodes them in token-budget batches.
Transcripts: the real English MER 2023 transcripts when ../shared/data is present, else the
demo corpus's. Usage: python benchmarks/bench_text.py [--clips N] [--repeats R]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
MER = ROOT.parent / "shared" / "data" / "mer2023" / "transcription.csv"


def corpus(folder: Path, n: int) -> tuple[Path, str]:
    from conftest import write_manifest

    if MER.is_file():
        rows = [r for r in csv.DictReader(open(MER, encoding="utf-8")) if r["english"].strip()][:n]
        manifest = write_manifest(folder / "m.csv", [{"name": r["name"], "text": r["english"]}
                                                     for r in rows])
        return manifest, f"MER 2023 English transcripts ({len(rows)})"
    from mer_features.demo import write_demo

    demo = write_demo(folder / "demo", n_clips=60)
    return demo, "demo transcripts (60)"


def per_clip_loop(manifest: Path, out: Path) -> float:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mer_features.corpora.manifest import read_manifest
    from mer_features.encoders import create_encoder

    folder = create_encoder("text", "minilm")._dir
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    for clip in read_manifest(manifest):
        batch = tokenizer(clip.text, return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state[0]
        np.save(out / f"{clip.name}.npy", hidden.mean(0).numpy())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=3210)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    import torch

    from mer_features.pipeline import extract
    from mer_features.store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, source = corpus(tmp, args.clips)
        loop_times, pipe_times = [], []
        for _ in range(args.repeats):
            loop_times.append(per_clip_loop(manifest, tmp / "npy"))
            store = tmp / "text.h5"
            store.unlink(missing_ok=True)
            t = time.perf_counter()
            extract(manifest, store, modality="text", device="cpu", progress=False)
            pipe_times.append(time.perf_counter() - t)
        with FeatureStore(store) as s:
            ours = s.utterances()
            names = s.names
        loop = np.stack([np.load(tmp / "npy" / f"{n}.npy") for n in names])
        cos = (ours * loop).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(loop, axis=1)
    loop_s, pipe_s = min(loop_times), min(pipe_times)
    rows = {"corpus": source, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "repeats": args.repeats, "per_clip_loop_s": round(loop_s, 2),
            "pipeline_s": round(pipe_s, 2), "speedup": round(loop_s / pipe_s, 2),
            "cosine_to_loop_min": round(float(cos.min()), 6)}
    print(f"text extraction, minilm, {source}; best of {args.repeats}")
    print(f"  per-clip loop  {loop_s:7.1f} s")
    print(f"  pipeline       {pipe_s:7.1f} s   {loop_s / pipe_s:5.2f}x the loop")
    print(f"  utterance cosine to the loop's: min {cos.min():.6f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_text.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
