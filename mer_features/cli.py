"""``mer-features``: the command line. Each command parses arguments and calls one library
function; heavy imports happen inside the commands so ``--help`` is instant.

Exit codes: 0 all clips stored; 3 the run completed but some clips failed or were missing
(recorded in the store); 1 an error stopped the command (one line, ``error: ...``); 2 bad
arguments (argparse's usage message); 130 interrupted by SIGINT (Ctrl-C) and 143 by SIGTERM
(SLURM's time limit, ``docker stop``), both keeping every finished clip; 141 the reader of
stdout went away (``mer-features info STORE | head -1``). No command ends in a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from mer_features import __version__
from mer_features.errors import ExtractionInterrupted, MerFeaturesError

EXIT_CLIP_FAILURES = 3
EXIT_ERROR = 1
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE
SIGNAL_EXIT = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


# ---------------------------------------------------------------------------------------------
# Argument types: out-of-range values are usage errors (exit 2) before any work starts


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value"
    return parse


def _float_in(low: float, high: float = math.inf, *,
              low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        too_low = value <= low if low_open else value < low
        if math.isnan(value) or too_low or value > high:
            bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}"
                                                             if high < math.inf else "")
            raise argparse.ArgumentTypeError(f"must be a number {bounds}, got '{text}'")
        return value

    parse.__name__ = "number"
    return parse


def _shard_arg(text: str):
    from mer_features.pipeline.distributed import parse_shard

    try:
        return parse_shard(text)
    except MerFeaturesError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _device_arg(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got '{text}'")
    return text


def _option_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"'{text}' must look like KEY=VALUE, e.g. "
                                         "-o chunk_seconds=20")
    return key.strip(), value


def _parse_options(pairs: list[tuple[str, str] | str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, value = pair if isinstance(pair, tuple) else _split_option(pair)
        key = key.replace("-", "_")
        if key in options and options[key] != value:
            raise MerFeaturesError(f"Encoder option '{key}' is given twice ({options[key]!r} and "
                                   f"{value!r}); give it once.")
        options[key] = value
    return options


def _split_option(pair: str) -> tuple[str, str]:
    try:
        return _option_arg(pair)
    except argparse.ArgumentTypeError as e:
        raise MerFeaturesError(f"Encoder option {e}.") from None


def _extract_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`mer_features.pipeline.extract` that ``extract`` and
    ``sweep`` share."""
    from mer_features.pipeline import VideoOptions

    options = _parse_options(args.option)
    if args.layer:
        options["layer"] = args.layer
    return dict(
        encoder_options=options, device=args.device, dtype=args.dtype,
        compute_path=args.compute_path,
        storage_dtype=args.storage_dtype, batch_size=args.batch_size,
        batch_seconds=args.batch_seconds, workers=args.workers, overwrite=args.overwrite,
        fail_fast=args.fail_fast, skip_missing=args.skip_missing,
        retry_failed=args.retry_failed, commit_every=args.commit_every, prune=args.prune,
        progress=False if args.no_progress else None, text_column=args.text_column,
        video=VideoOptions(fps=args.fps, max_frames=args.max_frames, face_size=args.face_size,
                           margin=args.face_margin))


def cmd_extract(args: argparse.Namespace) -> int:
    from mer_features.pipeline import default_store_path, extract
    from mer_features.pipeline.distributed import bind_device, detect_launch, parse_shard

    options = _extract_options(args)
    out = Path(args.out) if args.out else default_store_path(args.manifest, args.modality, args.encoder)
    launch = None if args.shard else detect_launch()
    shard = args.shard if args.shard else (launch.shard if launch else None)
    if isinstance(shard, str):
        shard = parse_shard(shard)
    store = shard.store_path(out) if launch is not None else out
    args.store_path = store  # for the message if the run is interrupted
    if launch is not None:
        options["device"] = bind_device(args.device, launch)
    summary = extract(args.manifest, store, modality=args.modality, encoder=args.encoder,
                      shard=shard, noise=args.noise, seed=args.seed, **options)
    print(summary.line())
    if launch is not None and launch.launcher == "torchrun":
        from mer_features.pipeline.distributed import barrier_then_merge

        barrier_then_merge(out, launch)
    return EXIT_CLIP_FAILURES if summary.failed or summary.missing else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mer_features.pipeline.sweep import sweep

    # stdout carries one line, the clean store's path (the Makefile reads it): what extraction
    # prints along the way (failed clips) goes to stderr with the progress.
    with contextlib.redirect_stdout(sys.stderr):
        result = sweep(args.manifest, args.levels, modality=args.modality, prefix=args.prefix,
                       source=args.source, seed=args.seed, encoder=args.encoder,
                       **_extract_options(args))
    if result.incomplete:
        print(f"note: the stores of level(s) {', '.join(result.incomplete)} hold failed or "
              f"missing clips ('mer-features info STORE' lists them); sweep file: {result.path}",
              file=sys.stderr)
    print(result.clean)
    return EXIT_CLIP_FAILURES if result.incomplete else 0


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
    if info["extra_columns"]:  # the manifest's other columns (mer-heads --groups COL)
        print(f"columns        {', '.join(info['extra_columns'])}")
    print(f"modality       {info['modality']}")
    print(f"encoder        {info['encoder']} (version {info['encoder_version']})")
    computed = info["fingerprint_fields"].get("compute_dtype")
    print(f"utterance      {tuple(info['utterance_shape'])} {info['storage_dtype']}"
          + (f", computed in {computed}" if computed else ""))
    rate = f" at {info['frame_rate']:g} Hz" if info["frame_rate"] else ""
    if info["frames_total"] == 0 and info["status"].get("ok"):
        print("frames         none: utterance vectors only (the encoder gives no frames; "
              "mer-heads takes this store with --input utterance)")
    else:
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
    from mer_features.demo.corpus import write_demo

    manifest = write_demo(args.out, n_clips=args.clips, seed=args.seed)
    print(manifest)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mer_features.store import verify_store

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
    from mer_features.noise.corrupt import corrupt_manifest

    path, written, failed = corrupt_manifest(args.manifest, args.noise, args.out, seed=args.seed,
                                             log=lambda m: print(m, file=sys.stderr))
    print(f"{path}: {written} corrupted clip(s), {len(failed)} failed")
    return EXIT_CLIP_FAILURES if failed else 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from mer_features.corpora import known_corpora

    corpus = known_corpora()[args.corpus]
    options = {o.dest: getattr(args, o.dest) for o in corpus.options}
    path, counts = corpus.build(args.root, args.out, **options)
    line, notes = corpus.summary(path, counts)
    print(line)
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def _add_extract_arguments(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """The options of ``extract``; ``sweep`` takes the same, with --levels, --prefix and
    --source in place of --out, --noise and --shard."""
    p.add_argument("--modality", required=True, choices=["audio", "text", "video"])
    p.add_argument("--manifest", required=True, help="manifest CSV")
    if sweep:
        p.add_argument("--levels", required=True, metavar="LEVELS",
                       help="space-separated noise levels, clean among them: clean, an SNR in dB "
                       "(20), SNR:SOURCE (10:pink), an SNR range drawn per clip "
                       "LOW:HIGH[:SOURCE] (5:10, 5:10:pink), blurF (blur4) or a --noise spec "
                       "(jpeg=30)")
        p.add_argument("--prefix", metavar="STORE_PREFIX",
                       help="stores are PREFIX.h5 (clean) and PREFIX-<level>.h5, the sweep file "
                       "PREFIX.sweep.json (default: features/<corpus>-<modality>-<encoder>)")
    else:
        p.add_argument("--out", help="store path (default: "
                       "features/<corpus>-<modality>-<encoder>.h5)")
    p.add_argument("--encoder", help="encoder spec. audio: whisper (default: Whisper "
                   "tiny.en, offline), egemaps, compare, hf:<folder or hub id[@revision]>; "
                   "text: e5 (default, multilingual, offline), minilm (English), hf:... "
                   "(encoders and decoder-only LLMs); video: fer (default), hf:... (image "
                   "models per face frame, VideoMAE per 16-frame window)")
    p.add_argument("--layer", choices=["last", "mean-last-4", "all"],
                   help="hf encoders: which hidden layers to keep (default mean-last-4; last "
                   "for Whisper checkpoints)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   type=_option_arg,
                   help="encoder option, e.g. -o chunk_seconds=20 (repeatable)")
    p.add_argument("--text-column", default="text",
                   help="text: manifest column holding the transcripts (default text)")
    p.add_argument("--fps", type=_float_in(0, 60, low_open=True), default=4.0,
                   help="video: frames sampled per second, in (0, 60] (default 4)")
    p.add_argument("--max-frames", type=_int_at_least(1), default=64,
                   help="video: at most this many frames per clip, spread uniformly (default 64)")
    p.add_argument("--face-size", type=_int_at_least(16, 1024), default=160,
                   help="video: side of the aligned face crops in pixels, 16-1024 (default 160)")
    p.add_argument("--face-margin", type=_float_in(0, 10), default=0.0,
                   help="video: crop side = (1 + margin) x the face box, margin in [0, 10] "
                   "(default 0: tight, as FER2013's faces)")
    if sweep:
        p.add_argument("--source", default="white",
                       help="the noise of bare SNR levels: white (default), pink, babble or a "
                       "folder of audio files")
    else:
        p.add_argument("--noise", metavar="SPEC",
                       help="corrupt the decoded media before the encoder, e.g. "
                       "'snr=5:10,source=pink' or 'blur=1|2|4' (see docs/noise.md)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the per-clip noise draws (default 0)")
    if not sweep:
        p.add_argument("--shard", metavar="I/N", type=_shard_arg,
                       help="extract only shard I of N (stable by clip name); under torchrun or "
                       "a SLURM array the shard is taken from the launcher")
    p.add_argument("--device", default="auto", type=_device_arg,
                   help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16", "auto"],
                   help="compute dtype for neural encoders (fp16 needs a GPU; bf16 pays only "
                   "with AMX/AVX512-BF16 or a GPU, and warns with its measured cost elsewhere); "
                   "auto: the fastest on this machine within cosine 0.999 of fp32 (measured "
                   "once, cached; recorded in the store)")
    p.add_argument("--compute-path", default="auto", choices=["auto", "fast", "stock"],
                   help="implementation of neural encoders: auto (the fastest, measured once "
                   "per machine and cached), or force the CPU fast path or the stock modules "
                   "(same numbers to ~1e-6)")
    p.add_argument("--storage-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the stored arrays")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None,
                   help="max clips per encoder call (default: 1 on CPU in fp32, 8 on CPU in "
                   "bf16, 32 on a GPU)")
    p.add_argument("--batch-seconds", type=_float_in(0, low_open=True), default=160.0,
                   help="max padded seconds per encoder call")
    p.add_argument("--workers", type=_int_at_least(0, 256), default=None,
                   help="decoding processes, 0-256 (0: decode in the main process); default: 0 "
                        "for a neural audio encoder on the CPU, else one per core (at most 8). "
                        "Text with e5: its CPU threads (default: every core)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a store made with another configuration")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed clip")
    p.add_argument("--skip-missing", action="store_true",
                   help="record clips whose files do not exist as missing instead of refusing")
    p.add_argument("--retry-failed", action="store_true", help="try failed clips again")
    p.add_argument("--prune", action="store_true",
                   help="drop the clips of an existing store that the manifest (or shard) does "
                   "not list; without it such a store is refused")
    p.add_argument("--commit-every", type=_int_at_least(1), default=256, metavar="N",
                   help="write finished clips to disk at least every N clips (default 256); a "
                   "killed run loses at most N clips of work")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mer-features",
        description="Batched, fingerprinted feature extraction for multimodal emotion recognition.")
    parser.add_argument("--version", action="version", version=f"mer-features {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="extract one modality's features into an HDF5 store",
                       description="Extract one modality's features for every clip of a manifest. "
                       "Clips already stored from the same input are skipped.")
    _add_extract_arguments(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("sweep", help="extract a store per noise level (robustness sweep)",
                       description="Extract one modality at every noise level of --levels "
                       "(stores already complete are reused; a level with failed clips does not "
                       "stop the sweep) and write PREFIX.sweep.json naming the stores, for "
                       "'mer-heads robustness --sweep'. Prints the clean store's path. Exit 3 "
                       "when some level's store holds failed or missing clips.")
    _add_extract_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("info", help="describe a feature store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="write the synthetic demo corpus and its manifest")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--clips", type=_int_at_least(6), default=60,
                   help="number of clips, at least 6: one per class (default 60)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
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
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--out", required=True, help="folder for the copies and their manifest (a "
                   "folder of its own: never the corpus's folder or the source manifest's)")
    p.set_defaults(func=cmd_corrupt)

    p = sub.add_parser("manifest", help="build a manifest from a corpus's release layout")
    msub = p.add_subparsers(dest="corpus", required=True)
    from mer_features.corpora import known_corpora  # light: no numpy, no torch

    for corpus in known_corpora().values():
        m = msub.add_parser(corpus.name, help=corpus.help)
        m.add_argument("--root", required=True, help=corpus.root_help)
        m.add_argument("--out", required=True, help="manifest CSV to write")
        for option in corpus.options:
            if option.switch:
                m.add_argument(option.flag, action="store_true", help=option.help)
            else:
                m.add_argument(option.flag, default=option.default, choices=option.choices,
                               help=option.help)
        m.set_defaults(func=cmd_manifest)
    _add_debug_everywhere(parser)
    return parser


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` is accepted after the command too (``mer-features extract ... --debug``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("--debug" in a.option_strings for a in sub._actions):
                    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                     help="show the Python traceback of an error")
                _add_debug_everywhere(sub)


class _Interrupts:
    """SIGTERM (SLURM's time limit, ``docker stop``) stops a command as Ctrl-C does.

    The first SIGTERM or SIGINT raises KeyboardInterrupt in the main thread, so the pipeline's
    interruption path closes the store with every finished clip; a second SIGTERM during that
    short cleanup is ignored (a scheduler that wants the process gone sends SIGKILL next,
    which the store survives), a second Ctrl-C interrupts it.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGTERM:
            return
        if self.received is None:
            self.received = signum
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handler)
        except ValueError:  # not the main thread (main() called from a thread): leave them
            pass
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "SIGINT"

    def exit_code(self) -> int:
        return SIGNAL_EXIT.get(self.received, SIGNAL_EXIT[signal.SIGINT])


def _interrupted_message(args: argparse.Namespace, error: BaseException | None,
                         interrupts: _Interrupts) -> str:
    name = interrupts.name()
    if isinstance(error, ExtractionInterrupted):
        return (f"interrupted ({name}): {error.kept} clips kept in {error.store}; run the same "
                "command again to resume")
    if getattr(args, "command", None) == "extract":
        store = getattr(args, "store_path", None)
        where = f" in {store}" if store else ""
        return (f"interrupted ({name}): every finished clip is kept{where}; run the same command "
                "again to resume")
    return f"interrupted ({name})"


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the interpreter's final flush
    does not print 'Exception ignored ... BrokenPipeError' (the recipe of Python's docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # stdout without a file descriptor (captured by a test): nothing will be flushed


def _os_error_message(e: OSError) -> str:
    what = e.strerror or str(e)
    where = f" '{e.filename}'" if e.filename else ""
    if e.filename2:
        where += f" -> '{e.filename2}'"
    return (f"{what}:{where} (errno {e.errno}). Check that the path exists, is writable and that "
            "the disk has room, then run the command again.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    interrupts = _Interrupts()
    with interrupts.installed():  # still installed while the message is printed
        try:
            code = args.func(args)
            sys.stdout.flush()  # a broken pipe shows here, not at the interpreter's exit
            return code
        except BrokenPipeError:
            _quiet_stdout()
            return EXIT_BROKEN_PIPE
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - the one place that turns errors into exit codes
            return _report(e, args, interrupts, debug)


def _report(e: BaseException, args: argparse.Namespace, interrupts: _Interrupts,
            debug: bool) -> int:
    """Print one line for ``e`` on stderr (or re-raise it with --debug); the exit code."""
    if interrupts.received is not None or isinstance(e, KeyboardInterrupt):
        # A signal may reach a run as another error (a DataLoader worker killed by the same
        # SIGTERM): what the user did is what they are told.
        print(_interrupted_message(args, e, interrupts), file=sys.stderr)
        if debug and not isinstance(e, KeyboardInterrupt):
            raise e
        return interrupts.exit_code()
    if debug:
        raise e
    if isinstance(e, MerFeaturesError):
        print(f"error: {e}", file=sys.stderr)
    elif isinstance(e, MemoryError):
        print("error: out of memory; use a smaller --batch-size or --batch-seconds, or fewer "
              "--workers", file=sys.stderr)
    elif isinstance(e, OSError):
        print(f"error: {_os_error_message(e)}", file=sys.stderr)
    else:
        message = " ".join(str(e).split()) or "(no message)"
        print(f"error: internal error: {type(e).__name__}: {message} (re-run with --debug for "
              "the traceback, and please report it)", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
