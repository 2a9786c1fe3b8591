"""``mer-features``: the command line. Each command parses arguments and calls one library
function; heavy imports happen inside the commands so ``--help`` is instant. The options of
``extract`` and ``sweep`` are generated from :class:`~mer_features.pipeline.options.
ExtractOptions` and the modalities' options (:mod:`mer_features.options`).

Exit codes: 0 all clips stored; 3 the run completed but some clips failed or were missing
(recorded in the store); 1 an error stopped the command while it worked (one line,
``error: ...``); 2 bad arguments, found before any work: the usage and one line naming the flag
(an unknown or misspelt flag, a missing required one, a value that is not a number or not a
choice, a value the options refuse: out of range, a noise spec that does not parse, fp16 on a
CPU); 130 interrupted by SIGINT (Ctrl-C) and 143 by SIGTERM
(SLURM's time limit, ``docker stop``), both keeping every finished clip; 141 the reader of
stdout went away (``mer-features info STORE | head -1``). No command ends in a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from mer_features import __version__
from mer_features.errors import ExtractionInterrupted, MerFeaturesError, ParameterError
from mer_features.options import ArgumentParser, add_options, given, with_flags

EXIT_CLIP_FAILURES = 3
EXIT_ERROR = 1
EXIT_USAGE = 2
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


def _extract_options(args: argparse.Namespace) -> Any:
    """The :class:`~mer_features.pipeline.options.ExtractOptions` of the command line (the
    options ``extract`` and ``sweep`` share, and the modality's own)."""
    from mer_features.modalities import stages
    from mer_features.pipeline.options import ExtractOptions, extract_options

    modality_fields: dict[str, Any] = {}
    for stage in stages():
        modality_fields.update(given(args, stage.Options))
    return extract_options(**given(args, ExtractOptions), **modality_fields)


def _flags() -> dict[str, str]:
    """Parameter name -> flag, for every generated option and the importers' options (how
    errors name them)."""
    from mer_features.corpora import known_corpora
    from mer_features.modalities import stages
    from mer_features.options import flag_map
    from mer_features.pipeline.options import ExtractOptions, SweepOptions

    flags = flag_map(ExtractOptions, SweepOptions, *(s.Options for s in stages()))
    flags.setdefault("root", "--root")
    for corpus in known_corpora().values():
        for option in corpus.options:
            flags.setdefault(option.dest, option.flag)
    return flags


def _log(message: str) -> None:
    """A run's warnings and notes on stderr, in the command line's words."""
    print(cli_message(message), file=sys.stderr)


def cli_message(message: str) -> str:
    """A message of the library as this command line words it: parameters named in backticks
    (`` `overwrite` ``) become their flags (``--overwrite``)."""
    return with_flags(message, _flags())


def cmd_extract(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from mer_features.pipeline import default_store_path, execute, plan_extraction
    from mer_features.pipeline.distributed import bind_device, detect_launch

    options = _extract_options(args)
    out = Path(options.out) if options.out is not None else default_store_path(
        options.manifest, options.modality, options.encoder)
    launch = None if options.shard is not None else detect_launch()
    if launch is not None:  # torchrun or a SLURM array: this process's shard, its own store
        options = replace(options, shard=launch.shard, device=bind_device(options.device, launch))
    store = launch.shard.store_path(out) if launch is not None else out
    args.store_path = store  # for the message if the run is interrupted
    summary = execute(plan_extraction(replace(options, out=store)), log=_log)
    print(summary.line())
    if summary.labels:
        print(summary.labels)
    if launch is not None and launch.launcher == "torchrun":
        from mer_features.pipeline.distributed import barrier_then_merge

        barrier_then_merge(out, launch)
    return EXIT_CLIP_FAILURES if summary.incomplete else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mer_features.pipeline.options import SweepOptions
    from mer_features.pipeline.sweep import run_sweep

    options = _extract_options(args)
    sweep_options = SweepOptions(**given(args, SweepOptions))
    # stdout carries one line, the clean store's path (the Makefile reads it): what extraction
    # prints along the way (failed clips) goes to stderr with the progress.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_sweep(options, sweep_options, log=_log)
    if result.incomplete:
        print(f"note: the stores of level(s) {', '.join(result.incomplete)} hold failed or "
              f"missing clips ('mer-features info STORE' lists them); sweep file: {result.path}",
              file=sys.stderr)
    print(result.clean)
    return EXIT_CLIP_FAILURES if result.incomplete else 0


def cmd_info(args: argparse.Namespace) -> int:
    from mer_features.corpora.classes import describe_counts
    from mer_features.store.info import describe_facts, store_report

    info = store_report(args.store)  # the summary, data-quality facts, damaged clips
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return _info_damage(info)
    status = ", ".join(f"{k} {v}" for k, v in info["status"].items() if v)
    print(f"store          {info['path']}")
    print(f"clips          {info['clips']} ({status or 'none'}); {info['labelled']} labelled")
    if info["labelled"]:
        print(f"classes        {describe_counts(info['classes'], list(info['classes']))}")
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
    for k, fact in enumerate(describe_facts(info["facts"])):
        print(f"{'quality' if k == 0 else '':<15}{fact}")
    print(f"checked        {info['checked']}: "
          + (f"{len(info['damaged'])} damaged clip(s)" if info["damaged"] else "no damage"))
    if info["failures"]:
        print(f"failures       {len(info['failures'])}:")
        for f in info["failures"][:50]:
            print(f"  {f['name']}: {f['status']} at {f['stage']}: {f['reason']}")
        if len(info["failures"]) > 50:
            print(f"  ... and {len(info['failures']) - 50} more (use --json for all)")
    return _info_damage(info)


def _info_damage(info: dict) -> int:
    """Exit 1 with one line when clips of the store are damaged, else 0."""
    if not info["advice"]:
        return 0
    shown = ", ".join(info["damaged"][:5]) + (", ..." if len(info["damaged"]) > 5 else "")
    what = (f"{len(info['damaged'])} clip(s) fail their checksums ({shown})" if info["damaged"]
            else f"{info['damaged_chunks']} chunk checksum(s) fail")
    sys.stdout.flush()
    print(f"error: store '{info['path']}' is damaged: {what}; {info['advice']}", file=sys.stderr)
    return EXIT_ERROR


def cmd_demo(args: argparse.Namespace) -> int:
    from mer_features.demo.corpus import write_demo

    manifest = write_demo(args.out, n_clips=args.clips, seed=args.seed, overwrite=args.overwrite)
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
        print(f"{args.store}: {report['problem_count']} problem(s)")
        for line in report["problems"]:
            print(f"  - {line}")
        if report["problem_count"] > len(report["problems"]):
            print(f"  ... and {report['problem_count'] - len(report['problems'])} more")
        if report["advice"]:
            print(f"  {report['advice']}")
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
        print(cli_message(note), file=sys.stderr)
    return 0


def _add_extract_arguments(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """The options of ``extract``, from :class:`ExtractOptions` and each modality's options;
    ``sweep`` takes the same, with --levels, --prefix and --source (:class:`SweepOptions`) in
    place of --out, --noise and --shard."""
    from mer_features.modalities import stages
    from mer_features.pipeline.options import ExtractOptions

    first = ("modality", "manifest")
    add_options(p, ExtractOptions, only=first)
    if sweep:
        from mer_features.pipeline.options import SweepOptions

        add_options(p, SweepOptions)
    add_options(p, ExtractOptions, skip=first + (("out", "noise", "shard") if sweep else ()))
    for stage in stages():
        if any(f.metadata.get("flag") for f in fields(stage.Options)):
            add_options(p.add_argument_group(f"{stage.name} options (--modality {stage.name} "
                                             "only)"), stage.Options)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """mer-features' parser. ``command``: build only that command's options (:func:`main`
    passes the command it runs: all of them take ~12 ms to build); every command is still
    listed, for the help and for a misspelt command's hint. None: every command's options (the
    help pages, docs/cli.md)."""
    parser = ArgumentParser(
        prog="mer-features",
        description="Batched, fingerprinted feature extraction for multimodal emotion recognition.")
    parser.add_argument("--version", action="version", version=f"mer-features {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (build, kwargs) in COMMANDS.items():
        p = sub.add_parser(name, **kwargs)
        if command is None or command == name:
            build(p)
    _add_debug_everywhere(parser)
    return parser


def _extract_command(p: argparse.ArgumentParser) -> None:
    _add_extract_arguments(p)
    p.set_defaults(func=cmd_extract)


def _sweep_command(p: argparse.ArgumentParser) -> None:
    _add_extract_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep)


def _info_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the store file (.h5)")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    p.set_defaults(func=cmd_info)


def _demo_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder to write into (required)")
    p.add_argument("--clips", type=_int_at_least(6), default=60,
                   help="number of clips, at least 6: one per class (default 60)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the synthetic clips, >= 0 (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a demo corpus of another size or seed in --out")
    p.set_defaults(func=cmd_demo)


def _verify_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the store file (.h5)")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (JSON: ok, clips, frames, problems)")
    p.set_defaults(func=cmd_verify)


def _merge_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the merged store to write (required)")
    p.add_argument("shards", nargs="+", help="the shard stores")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_merge)


def _corrupt_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True,
                   help="manifest CSV of the clips to corrupt (required)")
    p.add_argument("--noise", required=True, metavar="SPEC",
                   help="noise spec, as for extract --noise, e.g. 'snr=5:10,source=pink' or "
                   "'blur=2' (see docs/noise.md) (required)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the per-clip noise draws, >= 0 (default 0)")
    p.add_argument("--out", required=True, help="folder for the copies and their manifest (a "
                   "folder of its own: never the corpus's folder or the source manifest's) "
                   "(required)")
    p.set_defaults(func=cmd_corrupt)


def _manifest_command(p: argparse.ArgumentParser) -> None:
    msub = p.add_subparsers(dest="corpus", required=True)
    from mer_features.corpora import known_corpora  # light: no numpy, no torch

    for corpus in known_corpora().values():
        m = msub.add_parser(corpus.name, help=corpus.help)
        m.add_argument("--root", required=True, help=f"{corpus.root_help} (required)")
        m.add_argument("--out", required=True, help="manifest CSV to write (required)")
        for option in corpus.options:
            if option.switch:
                m.add_argument(option.flag, action="store_true", help=option.help)
            else:
                shown = ("" if "default" in option.help or "required" in option.help
                         else " (default: none)" if option.default is None
                         else f" (default {option.default})")
                m.add_argument(option.flag, default=option.default, choices=option.choices,
                               required=option.required, help=option.help + shown)
        m.set_defaults(func=cmd_manifest)


# Each command: the function adding its options, and add_parser's help and description.
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], dict[str, str]]] = {
    "extract": (_extract_command, dict(
        help="extract one modality's features into an HDF5 store",
        description="Extract one modality's features for every clip of a manifest. "
        "Clips already stored from the same input are skipped.")),
    "sweep": (_sweep_command, dict(
        help="extract a store per noise level (robustness sweep)",
        description="Extract one modality at every noise level of --levels "
        "(stores already complete are reused; a level with failed clips does not "
        "stop the sweep) and write PREFIX.sweep.json naming the stores, for "
        "'mer-heads robustness --sweep'. Prints the clean store's path. Exit 3 "
        "when some level's store holds failed or missing clips.")),
    "info": (_info_command, dict(
        help="describe a feature store")),
    "demo": (_demo_command, dict(
        help="write the synthetic demo corpus and its manifest")),
    "verify": (_verify_command, dict(
        help="check a store's integrity",
        description="Read every clip of a store and report what is wrong "
        "(exit 1 when anything is).")),
    "merge": (_merge_command, dict(
        help="merge shard stores into one store",
        description="Merge shard stores of one extraction. Refuses shards with "
        "different fingerprints or overlapping clips.")),
    "corrupt": (_corrupt_command, dict(
        help="write corrupted copies of a manifest's clips",
        description="Write corrupted copies of every clip (the same per-clip draws "
        "as extract --noise) and a manifest for them.")),
    "manifest": (_manifest_command, dict(
        help="build a manifest from a corpus's release layout")),
}


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` is accepted after the command too (``mer-features extract ... --debug``);
    each command knows its parser (a ParameterError is reported with its usage)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("--debug" in a.option_strings for a in sub._actions):
                    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                     help="show the Python traceback of an error")
                sub.set_defaults(command_parser=sub)
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
        if not error.kept and not Path(error.store).exists():
            return (f"interrupted ({name}) before any clip was finished: nothing was written "
                    f"({error.store} was not created); run the same command again")
        return (f"interrupted ({name}): {error.kept} clips kept in {error.store}; run the same "
                "command again to resume")
    if getattr(args, "command", None) == "extract":
        store = getattr(args, "store_path", None)
        if store is None or not Path(store).exists():
            return (f"interrupted ({name}) before any clip was finished: nothing was written; "
                    "run the same command again")
        where = f" in {store}"
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
    from mer_features.console import quiet_third_party, safe_streams, utf8_mode

    if argv is None:
        utf8_mode()  # LC_ALL=C: restart in UTF-8 mode, so any file name and text works
    safe_streams()  # and any text prints, whatever the locale
    quiet_third_party()  # no "Loading weights" bars from transformers
    words = sys.argv[1:] if argv is None else [str(a) for a in argv]
    # The command is the first word that is not an option (mer-features' own take no value).
    command = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(words)
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


def _flag_message(e: ParameterError) -> str:
    """A ParameterError's message as the command line says it: its parameters named by their
    flags, the flag put first (as argparse does) when the message does not name it."""
    flags = _flags()
    message = with_flags(str(e), flags)
    flag = flags.get(e.parameter or "")
    if flag and flag not in message:
        message = f"argument {flag}: {message}"
    return message


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
    if isinstance(e, ParameterError):  # a bad argument, as argparse reports one
        parser = getattr(args, "command_parser", None)
        if parser is not None:
            parser.print_usage(sys.stderr)
        prog = parser.prog if parser is not None else "mer-features"
        print(f"{prog}: error: {_flag_message(e)}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(e, MerFeaturesError):
        print(f"error: {cli_message(str(e))}", file=sys.stderr)
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
