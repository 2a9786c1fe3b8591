"""Video extraction: this pipeline against a one-clip-at-a-time loop, same clips and encoder.

The loop is the baseline tools' procedure: for each clip, decode all of its frames, keep the
frames at the sampling rate, detect faces with facenet-pytorch's MTCNN as shipped on that clip's
frames, crop, encode with the default `fer` encoder, save one .npy. The pipeline decodes only
the sampled frames; on a CPU each worker process also tracks the faces of its clip (MTCNN with
exact, faster max pooling) while the main process encodes batches across clips. Both use the
same selection, alignment and encoder code, so the features must agree.
Usage: python benchmarks/bench_video.py [--clips N] [--source demo|mead] [--repeats R]
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
MEAD = ROOT.parent / "shared" / "data" / "mead" / "dreamtalk_facecrop_256"
FPS, MAX_FRAMES, FACE_SIZE = 4.0, 64, 160


def corpus(folder: Path, n: int, source: str) -> tuple[Path, str]:
    from synthetic_media import write_manifest

    from mer_features.demo import write_demo

    if source == "mead" and MEAD.is_dir():
        files = sorted(MEAD.glob("*.mp4"))[:n]
        rows = [{"name": f.stem, "video": str(f)} for f in files]
        return write_manifest(folder / "mead.csv", rows), f"MEAD face crops ({len(files)} clips, 256x256, 25 fps)"
    manifest = write_demo(folder / "demo", n_clips=max(6, n))
    return manifest, f"demo corpus ({max(6, n)} clips, 192x192, 25 fps, 2-4 s)"


def per_clip_loop(manifest: Path, out: Path) -> float:
    import decord

    from mer_features.corpora.manifest import read_manifest
    from mer_features.decode.faces import FaceTracker
    from mer_features.decode.video import DecodedVideo, sample_indices
    from mer_features.encoders import create_encoder
    from mer_features.pipeline import VideoOptions

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    encoder = create_encoder("video", "fer")
    encoder.load("cpu")
    options = VideoOptions(fps=FPS, max_frames=MAX_FRAMES, face_size=FACE_SIZE)
    tracker = FaceTracker(device="cpu", face_size=options.face_size, margin=options.margin,
                          min_face_size=options.min_face_size)
    # The baseline runs facenet-pytorch's MTCNN as shipped: without the tracker's exact
    # (bit-identical) faster max pooling, so the same crops come out, at the stock speed.
    from facenet_pytorch import MTCNN

    tracker._mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=tracker.min_face_size,
                           thresholds=list(tracker.thresholds), select_largest=False,
                           post_process=False).eval()
    for clip in read_manifest(manifest):
        reader = decord.VideoReader(str(clip.video))
        fps = float(reader.get_avg_fps())
        every = reader.get_batch(list(range(len(reader)))).asnumpy()  # all frames, as the tools do
        index = sample_indices(len(every), fps, FPS, MAX_FRAMES)
        decoded = DecodedVideo(frames=every[index], times=(index / fps).astype(np.float32), fps=fps,
                               n_source_frames=len(every), truncated=False,
                               info={"indices": index})
        (face,) = tracker.track([(clip.name, decoded)])
        (encoded,) = encoder.encode_batch([face])
        np.save(out / f"{clip.name}.npy", encoded.utterance)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--source", choices=["demo", "mead"], default="demo")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine

    info = machine.describe()
    print(machine.line(info), flush=True)
    from mer_features.pipeline import VideoOptions, extract
    from mer_features.store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, source = corpus(tmp, args.clips, args.source)
        options = VideoOptions(fps=FPS, max_frames=MAX_FRAMES, face_size=FACE_SIZE)
        loop_times, pipe_times = [], []
        for _ in range(args.repeats):
            loop_times.append(per_clip_loop(manifest, tmp / "npy"))
            store = tmp / "video.h5"
            store.unlink(missing_ok=True)
            t = time.perf_counter()
            summary = extract(manifest, store, modality="video", device="cpu", progress=False,
                              workers=args.workers, video=options)
            pipe_times.append(time.perf_counter() - t)
        with FeatureStore(store) as s:
            names = [n for n, st in zip(s.names, s.status) if st == "ok"]
            ours = s.utterances(names)
        loop = np.stack([np.load(tmp / "npy" / f"{n}.npy") for n in names])
        diff = float(np.abs(ours - loop).max())
    loop_s, pipe_s = min(loop_times), min(pipe_times)
    rows = {
        "corpus": source, "clips": summary.total, "failed": summary.failed,
        "machine": info,
        "fps": FPS, "repeats": args.repeats,
        "per_clip_loop_s": round(loop_s, 2), "pipeline_s": round(pipe_s, 2),
        "speedup": round(loop_s / pipe_s, 2), "max_abs_diff_vs_loop": diff,
    }
    print(f"video extraction, fer encoder, {source}, {FPS:g} frames/s; best of {args.repeats}")
    print(f"  per-clip loop  {loop_s:7.1f} s")
    print(f"  pipeline       {pipe_s:7.1f} s   {loop_s / pipe_s:5.2f}x the loop")
    print(f"  utterance features: max abs difference to the loop {diff:.2e}")
    args.out.mkdir(parents=True, exist_ok=True)
    # The MEAD run is a second figure, not the table's demo-corpus row: its own file.
    name = "bench_video.json" if args.source == "demo" else f"bench_video_{args.source}.json"
    (args.out / name).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
