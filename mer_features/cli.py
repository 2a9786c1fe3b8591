"""``mer-features``: the command line. Each command parses arguments and calls one library
function; heavy imports happen inside the commands so ``--help`` is instant.

Exit codes: 0 all clips stored; 3 the run completed but some clips failed or were missing
(recorded in the store); 1 an error stopped the command; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mer_features import __version__
from mer_features.errors import MerFeaturesError

EXIT_CLIP_FAILURES = 3


def default_store_path(manifest: str, modality: str, encoder: str | None) -> Path:
    """``features/<corpus>-<modality>-<encoder>.h5``, the corpus named after the manifest's folder."""
    from mer_features.encoders import DEFAULT_ENCODERS

    corpus = Path(manifest).resolve().parent.name or "corpus"
    spec = encoder or DEFAULT_ENCODERS.get(modality, "default")
    name, _, arg = spec.partition(":")
    slug = name + ("-" + Path(arg.rstrip("/")).name if arg else "")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", slug)
    return Path("features") / f"{corpus}-{modality}-{slug}.h5"


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MerFeaturesError(f"Encoder option '{pair}' must look like KEY=VALUE.")
        options[key.replace("-", "_")] = value
    return options


def cmd_extract(args: argparse.Namespace) -> int:
    from mer_features.distributed import bind_device, detect_launch, parse_shard
    from mer_features.modalities import VideoOptions
    from mer_features.pipeline import extract

    options = _parse_options(args.option)
    if args.layer:
        options["layer"] = args.layer
    out = Path(args.out) if args.out else default_store_path(args.manifest, args.modality, args.encoder)
    video = VideoOptions(fps=args.fps, max_frames=args.max_frames, face_size=args.face_size,
                         margin=args.face_margin)
    launch = None if args.shard else detect_launch()
    shard = parse_shard(args.shard) if args.shard else (launch.shard if launch else None)
    store = shard.store_path(out) if launch is not None else out
    device = bind_device(args.device, launch) if launch is not None else args.device
    summary = extract(
        args.manifest, store, modality=args.modality, encoder=args.encoder, encoder_options=options,
        device=device, shard=shard, dtype=args.dtype, storage_dtype=args.storage_dtype,
        batch_size=args.batch_size, batch_seconds=args.batch_seconds, workers=args.workers,
        overwrite=args.overwrite, fail_fast=args.fail_fast, skip_missing=args.skip_missing,
        retry_failed=args.retry_failed, commit_every=args.commit_every,
        progress=False if args.no_progress else None, text_column=args.text_column, video=video,
        noise=args.noise, seed=args.seed,
    )
    print(summary.line())
    if launch is not None and launch.launcher == "torchrun":
        from mer_features.distributed import barrier_then_merge

        barrier_then_merge(out, launch)
    return EXIT_CLIP_FAILURES if summary.failed or summary.missing else 0


def cmd_info(args: argparse.Namespace) -> int:
    from mer_features.store import FeatureStore

    with FeatureStore(args.store) as store:
        info = store.summary()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    status = ", ".join(f"{k} {v}" for k, v in info["status"].items() if v)
    print(f"store          {info['path']}")
    print(f"clips          {info['clips']} ({status or 'none'}); {info['labelled']} labelled")
    print(f"modality       {info['modality']}")
    print(f"encoder        {info['encoder']} (version {info['encoder_version']})")
    print(f"utterance      {tuple(info['utterance_shape'])} {info['storage_dtype']}")
    rate = f" at {info['frame_rate']:g} Hz" if info["frame_rate"] else ""
    print(f"frames         (n, {info['frame_dim']}){rate}; {info['frames_total']} in all")
    print(f"config         {json.dumps(info['config'], sort_keys=True)}")
    print(f"fingerprint    {info['fingerprint']} (schema {info['schema_version']}, "
          f"mer_features {info['package_version']})")
    if info["pending_parts"]:
        print(f"pending        {info['pending_parts']} part file(s) from an interrupted run; "
              "re-run the extraction to merge them")
    if info["failures"]:
        print(f"failures       {len(info['failures'])}:")
        for f in info["failures"][:50]:
            print(f"  {f['name']}: {f['status']} at {f['stage']}: {f['reason']}")
        if len(info["failures"]) > 50:
            print(f"  ... and {len(info['failures']) - 50} more (use --json for all)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mer_features.demo import write_demo

    manifest = write_demo(args.out, n_clips=args.clips, seed=args.seed)
    print(manifest)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mer_features.verify import verify_store

    report = verify_store(args.store)
    if args.json:
        print(json.dumps(report, indent=2))
    elif report["ok"]:
        print(f"{args.store}: ok ({report['clips']} clips, {report['frames']} frames)")
    else:
        print(f"{args.store}: {len(report['problems'])} problem(s)")
        for line in report["problems"]:
            print(f"  - {line}")
    return 0 if report["ok"] else 1


def cmd_merge(args: argparse.Namespace) -> int:
    from mer_features.store import merge_stores

    n = merge_stores(args.out, args.shards, overwrite=args.overwrite)
    print(f"{args.out}: {n} clips from {len(args.shards)} shard(s)")
    return 0


def cmd_corrupt(args: argparse.Namespace) -> int:
    from mer_features.corrupt import corrupt_manifest

    path, written, failed = corrupt_manifest(args.manifest, args.noise, args.out, seed=args.seed,
                                             log=lambda m: print(m, file=sys.stderr))
    print(f"{path}: {written} corrupted clip(s), {len(failed)} failed")
    return EXIT_CLIP_FAILURES if failed else 0


def cmd_manifest_mer2023(args: argparse.Namespace) -> int:
    from mer_features.mer2023 import build_mer2023_manifest

    path, counts = build_mer2023_manifest(args.root, args.out, text_column=args.text_column,
                                          text_only=args.text_only)
    found = ", ".join(f"{s} {n}" for s, n in counts.items() if s != "train_without_video")
    print(f"{path}: {found}")
    if counts["train_without_video"]:
        print(f"note: {counts['train_without_video']} labelled clip(s) of train-label.csv have no "
              "video under train/ and were left out", file=sys.stderr)
    return 0


def cmd_manifest_ravdess(args: argparse.Namespace) -> int:
    from mer_features.ravdess import build_ravdess_manifest

    path, counts = build_ravdess_manifest(args.root, args.out)
    print(f"{path}: {counts['clips']} clips, {counts['labelled']} with one of the six MER classes "
          f"({counts['unlabelled']} calm/disgust left unlabelled)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mer-features",
        description="Batched, fingerprinted feature extraction for multimodal emotion recognition.")
    parser.add_argument("--version", action="version", version=f"mer-features {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="extract one modality's features into an HDF5 store",
                       description="Extract one modality's features for every clip of a manifest. "
                       "Clips already stored from the same input are skipped.")
    p.add_argument("--modality", required=True, choices=["audio", "text", "video"])
    p.add_argument("--manifest", required=True, help="manifest CSV")
    p.add_argument("--out", help="store path (default: features/<corpus>-<modality>-<encoder>.h5)")
    p.add_argument("--encoder", help="encoder spec. audio: egemaps (default), compare, "
                   "hf:<folder or hub id>; text: minilm (default), hf:...; video: fer (default), "
                   "hf:... (image models per face frame, VideoMAE per 16-frame window)")
    p.add_argument("--layer", choices=["last", "mean-last-4", "all"],
                   help="hf encoders: which hidden layers to keep (default mean-last-4)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="encoder option, e.g. -o chunk_seconds=20 (repeatable)")
    p.add_argument("--text-column", default="text",
                   help="text: manifest column holding the transcripts (default text)")
    p.add_argument("--fps", type=float, default=4.0, help="video: frames sampled per second (default 4)")
    p.add_argument("--max-frames", type=int, default=64,
                   help="video: at most this many frames per clip, spread uniformly (default 64)")
    p.add_argument("--face-size", type=int, default=160,
                   help="video: side of the aligned face crops in pixels (default 160)")
    p.add_argument("--face-margin", type=float, default=0.0,
                   help="video: crop side = (1 + margin) x the face box (default 0: tight, as "
                   "FER2013's faces)")
    p.add_argument("--noise", metavar="SPEC",
                   help="corrupt the decoded media before the encoder, e.g. 'snr=5:10,source=pink' "
                   "or 'blur=1|2|4' (see README, 'Noise injection')")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-clip noise draws (default 0)")
    p.add_argument("--shard", metavar="I/N",
                   help="extract only shard I of N (stable by clip name); under torchrun or a "
                   "SLURM array the shard is taken from the launcher")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="compute dtype for neural encoders (fp16 needs a GPU)")
    p.add_argument("--storage-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the stored arrays")
    p.add_argument("--batch-size", type=int, default=None,
                   help="max clips per encoder call (default: 1 on CPU in fp32, 8 on CPU in "
                   "bf16, 32 on a GPU)")
    p.add_argument("--batch-seconds", type=float, default=160.0,
                   help="max padded seconds per encoder call")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (0: decode in the main process); default: 0 for a "
                        "neural audio encoder on the CPU, else one per core (at most 8)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a store made with another configuration")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed clip")
    p.add_argument("--skip-missing", action="store_true",
                   help="record clips whose files do not exist as missing instead of refusing")
    p.add_argument("--retry-failed", action="store_true", help="try failed clips again")
    p.add_argument("--commit-every", type=int, default=256, metavar="N",
                   help="write finished clips to disk at least every N clips (default 256); a "
                   "killed run loses at most N clips of work")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("info", help="describe a feature store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="write the synthetic demo corpus and its manifest")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--clips", type=int, default=60, help="number of clips (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("verify", help="check a store's integrity",
                       description="Read every clip of a store and report what is wrong "
                       "(exit 1 when anything is).")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("merge", help="merge shard stores into one store",
                       description="Merge shard stores of one extraction. Refuses shards with "
                       "different fingerprints or overlapping clips.")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("corrupt", help="write corrupted copies of a manifest's clips",
                       description="Write corrupted copies of every clip (the same per-clip draws "
                       "as extract --noise) and a manifest for them.")
    p.add_argument("--manifest", required=True)
    p.add_argument("--noise", required=True, metavar="SPEC")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for the copies and their manifest")
    p.set_defaults(func=cmd_corrupt)

    p = sub.add_parser("manifest", help="build a manifest from a corpus's release layout")
    msub = p.add_subparsers(dest="corpus", required=True)
    m = msub.add_parser("mer2023", help="MER 2023: train/ test1/ test2/ test3/, train-label.csv, "
                        "transcription.csv")
    m.add_argument("--root", required=True, help="release folder")
    m.add_argument("--out", required=True, help="manifest CSV to write")
    m.add_argument("--text-column", default="english", choices=["english", "chinese"],
                   help="transcript language for the 'text' column (default english)")
    m.add_argument("--text-only", action="store_true",
                   help="no video folders needed: the labelled clips with transcripts, no media")
    m.set_defaults(func=cmd_manifest_mer2023)
    m = msub.add_parser("ravdess", help="RAVDESS speech: Actor_*/ audio files and labels.csv")
    m.add_argument("--root", required=True, help="folder with Actor_*/ and labels.csv")
    m.add_argument("--out", required=True, help="manifest CSV to write")
    m.set_defaults(func=cmd_manifest_ravdess)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MerFeaturesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished clips are kept and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
