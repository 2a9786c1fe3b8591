"""``mer-heads``: the command line. Each command parses arguments and calls one library function;
torch and scikit-learn are imported inside the commands so ``--help`` is instant.

Exit codes: 0 done; 2 the command line is wrong, found before any file is read (argparse's
usage and one error line: an unknown or misspelt option, named first with the option it
resembles; a missing option; a value of the wrong type, out of range, or contradicting
another option, as the settings classes of :mod:`mer_heads.config` refuse them); 1 an error
found afterwards (one line on stderr: what is wrong and what to do; an unexpected one says
"internal error", and ``--debug`` shows its traceback); 130 interrupted; 141 the output pipe
was closed (``mer-heads ... | head``).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from mer_heads import __version__
from mer_heads.config import (ConsoleConfig, DataConfig, HeadConfig, SemiSettings, cli_help,
                              parameter_flag)
from mer_heads.errors import MerHeadsError, ParameterError
from mer_heads.heads import heads_using


INTEGER = re.compile(r"[+-]?[0-9]+")
NEGATIVE_NUMBER = re.compile(r"-[0-9]+|-[0-9]*\.[0-9]+")
"""A token argparse takes as a value, not an option (its own rule, for parsers without options
that look like negative numbers)."""


def _int(text: str) -> int:
    """argparse type: an integer in plain digits (``1_000``, ``2.0`` and `` 3`` are refused,
    though Python's int() takes some of them)."""
    if not INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}")
    return int(text)


def _float(text: str) -> float:
    """argparse type: a decimal number (``1e-3``, ``.5``; ``inf`` and ``nan`` pass, so that the
    option's range says why they are refused). ``0_5`` is refused, not read as 5."""
    from mer_heads.data.labels import parse_number

    try:
        return parse_number(text, finite=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the range is said in the usage error)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def add_options(parser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """One option per field of the settings dataclass ``cls`` (or of the fields ``only``):
    flag, type, choices and help (with the default) come from the field. An option not given
    is left out of the parsed arguments, so the dataclass's own default applies."""
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("flag") or (only is not None and f.name not in only):
            continue
        if meta.get("switch") is not None:
            parser.add_argument(meta["flag"], dest=f.name, action="store_const",
                                const=meta["switch"], default=argparse.SUPPRESS,
                                help=cli_help(f, heads_using))
            continue
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        kind = {"int": _int, "float": _float}.get(str(f.type).split(" |")[0])
        parser.add_argument(meta["flag"], dest=f.name, type=kind, choices=choices,
                            metavar=meta["metavar"], default=argparse.SUPPRESS,
                            help=cli_help(f, heads_using))


def _given(args: argparse.Namespace, cls: type) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}


def _configs(args: argparse.Namespace) -> dict:
    """The head's and the loading's settings of a command's arguments (checked: a value out of
    range raises :class:`ParameterError`, which :func:`parse_args` turns into exit 2)."""
    from mer_heads.heads.layers import check_learned

    given = _given(args, HeadConfig)
    if "folds" in given and "folds_from" in given:
        raise ParameterError("--folds-from takes the folds from the column (one per value); "
                             "--folds would draw others. Give one of the two.", "folds_from")
    head, loading = HeadConfig(**given), DataConfig(**_given(args, DataConfig))
    check_learned(head.model, loading.layers)
    return dict(head=head, loading=loading)


def _semi_settings(args: argparse.Namespace) -> SemiSettings | None:
    """--semi's settings, None without --semi and --hide-labels; its other options alone are
    refused (they would do nothing)."""
    given = _given(args, SemiSettings)
    if "strategy" not in given and "hide_labels" not in given:
        if given:
            flags = ", ".join(f.metadata["flag"] for f in fields(SemiSettings) if f.name in given)
            raise ParameterError(f"{flags} only act(s) with --semi STRATEGY (threshold, "
                                 "class-quantile, weak-reinforce) or --hide-labels; add one, "
                                 "or drop the option.")
        return None
    return SemiSettings(**given)


def _sweep_values(strategy: str, text: str) -> list[float]:
    """--values of ``semi-sweep``: comma-separated numbers, each a valid threshold (a quantile
    for class-quantile), as :class:`SemiSettings` checks it; a bad one names --values."""
    words = [w.strip() for w in text.split(",")]
    values = []
    for word in words:
        try:
            values.append(_float(word))
        except argparse.ArgumentTypeError:
            raise ParameterError(f"--values must be comma-separated numbers, e.g. 0.5,0.7,0.9; "
                                 f"got {word!r} in {text!r}.") from None
    if len(set(values)) < len(values):
        raise ParameterError(f"--values lists a value twice ({text}); give each once.")
    quantile = strategy == "class-quantile"
    for value in values:
        try:
            SemiSettings(strategy=strategy, **{"quantile" if quantile else "threshold": value})
        except ParameterError:
            what, bounds = (("a class quantile", "[0, 1]") if quantile else
                            ("a confidence threshold", "(0, 1]"))
            raise ParameterError(f"--values: {value:g} is not {what} in {bounds} (--semi "
                                 f"{strategy}); give values in {bounds}, e.g. "
                                 "0.5,0.7,0.9.") from None
    return values


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Everything a command's options alone decide, checked before any file is read."""
    settings: dict[str, Any] = {}
    if getattr(args, "head_options", False):
        settings.update(_configs(args))
        settings["progress"] = ConsoleConfig(**_given(args, ConsoleConfig)).progress
    if args.command == "fit":
        settings["semi"] = _semi_settings(args)
    if args.command == "compare":
        settings["compare"] = _compare_settings(args)
    if args.command == "semi-sweep":
        settings["values"] = _sweep_values(args.semi, args.values)
        semi = _given(args, SemiSettings)
        SemiSettings(strategy=args.semi, **semi)  # --hide-labels, --semi-rounds ... in range
        settings["semi"] = semi
    return settings


def _compare_settings(args: argparse.Namespace) -> Any:
    """compare's settings; fewer than two runs is a command-line error."""
    from mer_heads.config import CompareSettings

    if len(args.runs) < 2:
        raise ParameterError(f"compare needs at least two runs (RUN_A RUN_B ...); got "
                             f"{len(args.runs)}.")
    return CompareSettings(**_given(args, CompareSettings))


def _print_notes(notes: list[str]) -> None:
    """Notes on stderr, one line each (``warning: ...`` notes as they are)."""
    for note in notes:
        print(note if note.startswith("warning: ") else f"note: {note}", file=sys.stderr)


def _print_report(result: Any, paths: list[Path], seconds: float | None = None) -> None:
    """A report command's output: its markdown table on stdout, its notes on stderr, then the
    files it wrote (and the seconds it took) on one line."""
    print(result.markdown(), end="")
    _print_notes(result.notes)
    print(", ".join(str(path) for path in paths)
          + (f" ({seconds:.1f} s)" if seconds is not None else ""))


def cmd_fit(args: argparse.Namespace) -> int:
    from mer_heads.experiments.fit import fit_run

    settings = args.settings
    result = fit_run(args.features, args.out, settings["head"], settings["loading"],
                     train_split=args.train_split, test_split=args.test_split,
                     semi=settings["semi"], augment=args.augment or (),
                     overwrite=args.overwrite, progress=settings["progress"],
                     figures=args.figures)
    print(result.table())
    _print_notes(result.metrics["notes"])
    png = "confusion.png, " if args.figures else ""
    print(f"{result.run_dir}: metrics.json, report.md, {png}models/ ({result.seconds:.1f} s)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mer_heads.experiments.fit import predict_run

    result = predict_run(args.run, args.out, args.features, join=args.join,
                         manifest=args.manifest)
    _print_notes(result.notes)
    print(f"{result.path}: {result.n} clips")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from mer_heads.metrics import evaluate_files

    scores, notes = evaluate_files(args.pred, args.labels, split=args.split, run=args.run)
    if args.json:
        print(json.dumps({**scores.to_json(), "notes": notes,
                          "training_clips_scored": any(n.startswith("warning: ") and
                                                       "trained on" in n for n in notes)},
                         indent=2, sort_keys=True))
        _print_notes([n for n in notes if n.startswith("warning: ")])
        return 0
    _print_notes(notes)
    print(f"clips          {scores.n} ({scores.n_valence} with valence)")
    print(f"weighted F1    {scores.f1:.4f}")
    print(f"accuracy       {scores.accuracy:.4f}")
    if scores.mse is not None:
        print(f"valence MSE    {scores.mse:.4f}")
        print(f"F1 - 0.25 MSE  {scores.metric:.4f}")
    print(f"UA             {scores.ua:.4f}")
    print(f"WA             {scores.wa:.4f}")
    print(f"macro F1       {scores.macro_f1:.4f}")
    for target, values in scores.targets.items():
        print(f"{'CCC ' + target:<15}{values['ccc']:.4f} ({values['n']} clips, MSE "
              f"{values['mse']:.4f})")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from mer_heads.experiments.ablation import ablate

    result = ablate(args.features, args.out, train_split=args.train_split,
                    overwrite=args.overwrite, **args.settings)
    _print_report(result, [result.csv_path, result.markdown_path], result.seconds)
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from mer_heads.experiments.robustness import robustness

    result = robustness(args.features or [], args.condition or [], args.out, sweep=args.sweep,
                        augment=args.augment or (), sets=args.sets,
                        train_split=args.train_split, test_split=args.test_split,
                        overwrite=args.overwrite, **args.settings)
    _print_report(result, [result.csv_path, result.markdown_path, result.json_path,
                           result.png_path], result.seconds)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from mer_heads.experiments.leaderboard import leaderboard

    result = leaderboard(args.features, args.out, seeds=args.seeds, top_n=args.top_n,
                         fusion=args.fusion, train_split=args.train_split,
                         overwrite=args.overwrite, **args.settings)
    _print_report(result, [result.markdown_path, result.csv_path, result.json_path,
                           result.png_path], result.seconds)
    return 0


def cmd_semi_sweep(args: argparse.Namespace) -> int:
    from mer_heads.experiments.semi_sweep import semi_sweep

    settings = dict(args.settings)
    semi = settings.pop("semi")
    result = semi_sweep(args.features, args.out, strategy=args.semi,
                        values=settings.pop("values"), hide_labels=semi.get("hide_labels"),
                        rounds=semi.get("rounds", 1), teacher=semi.get("teacher", "fold"),
                        baseline_seeds=args.baseline_seeds,
                        train_split=args.train_split, overwrite=args.overwrite, **settings)
    _print_report(result, [result.markdown_path, result.csv_path, result.json_path,
                           result.png_path], result.seconds)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from mer_heads.experiments.describe import describe

    result = describe(args.out, features=args.features, manifest=args.manifest,
                      labels=args.labels, join=args.join, overwrite=args.overwrite)
    _print_report(result, [result.markdown_path, result.csv_path, result.json_path,
                           result.png_path])
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mer_heads.experiments.compare import compare_runs

    result = compare_runs(args.runs, args.out, args.settings["compare"],
                          overwrite=args.overwrite)
    _print_report(result, [result.markdown_path, result.csv_path, result.json_path,
                           result.png_path], result.seconds)
    return 0


def _add_head_arguments(p: argparse.ArgumentParser, features_required: bool = True,
                        skip: tuple[str, ...] = ()) -> None:
    p.add_argument("--features", action="append", required=features_required,
                   metavar="[KEY=]STORE",
                   help="feature store of one modality (repeat per modality); KEY names the "
                   "modality (default: the store's modality)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier result in --out (otherwise refused)")
    add_options(p, DataConfig)
    p.add_argument("--train-split", help="train on clips of this split only (default: every "
                   "split)")
    add_options(p, HeadConfig, tuple(f.name for f in fields(HeadConfig) if f.name not in skip))
    add_options(p, ConsoleConfig)
    p.set_defaults(head_options=True)


def _add_augment(p: argparse.ArgumentParser, more: str = "") -> None:
    p.add_argument("--augment", action="append", metavar="KEY=STORE",
                   help="multi-condition training: a corrupted copy of the --features store "
                   "KEY (`mer-features extract --noise SPEC --seed N`, same clips and encoder); "
                   "each fold also trains on its training clips' copies, never a held-out "
                   "clip's. Repeat for several copies (5-10 dB white, pink, babble, blur)" + more
                   + " (default: none)")


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations: ``--feature`` is not taken for ``--features``, so an
    option added later can never change what an old command line means."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """mer-heads' parser. ``command``: build only that command's options (:func:`parse_args`
    passes the command it runs: all of them take ~12 ms to build, most of a failing command's
    start); every command is still listed, for the help and for a misspelt command's hint.
    None: every command's options (the help pages, docs/cli.md)."""
    parser = _Parser(
        prog="mer-heads",
        description="Fusion and multi-task heads on cached features, with the MER 2023 protocol.")
    parser.add_argument("--version", action="version", version=f"mer-heads {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (build, kwargs) in COMMANDS.items():
        p = sub.add_parser(name, **kwargs)
        if command is None or command == name:
            build(p)
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)  # --debug also after the command
    return parser


def _fit_command(p: argparse.ArgumentParser) -> None:
    _add_head_arguments(p)
    p.add_argument("--test-split", help="also predict (and score, if labelled) this split "
                   "(default: none)")
    _add_augment(p)
    p.add_argument("--no-figures", dest="figures", action="store_false",
                   help="write no PNG (confusion, reliability, layer weights; report.md then "
                   "links none), for scripts fitting many heads: drawing them takes ~0.8 CPU s "
                   "a run; every other file is the same (default: write them)")
    add_options(p.add_argument_group("semi-supervised (MER-SEMI): pseudo-label unlabelled "
                                     "clips"), SemiSettings)
    p.set_defaults(func=cmd_fit)


def _predict_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory written by `mer-heads fit`")
    p.add_argument("--features", action="append", metavar="[KEY=]STORE",
                   help="stores to predict, one per modality in the run's order (default: the "
                   "run's training stores)")
    p.add_argument("--out", required=True, help="CSV to write; an existing file is replaced "
                   "only if it is a prediction file that predict wrote (never a store, a "
                   "manifest or a label file)")
    p.add_argument("--join", default="exact", choices=DataConfig.__dataclass_fields__[
        "join"].metadata["choices"], help="exact: stores must hold the same clips; inner: use "
        "the common ones (default exact)")
    p.add_argument("--manifest", help="a manifest supplying the group column of a run fitted "
                   "with --normalize-by (default: the column the stores copied at extraction)")
    p.set_defaults(func=cmd_predict)


def _evaluate_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="CSV name,discrete[,valence] (a MER 2023 "
                   "submission), or the name,discrete,...,p_<class> predictions of another "
                   "label set")
    p.add_argument("--labels", required=True, help="CSV name,discrete[,valence] (a manifest or "
                   "MER 2023 train-label.csv)")
    p.add_argument("--split", help="score only the labelled clips of this split of --labels "
                   "(its 'split' column), e.g. test (default: every labelled clip)")
    p.add_argument("--run", help="the run directory the predictions came from, to warn when "
                   "scored clips are clips it trained on (default: the run named in PRED's "
                   "provenance file, PRED.run.json, which predict writes)")
    p.add_argument("--json", action="store_true", help="machine-readable output (default: a "
                   "table)")
    p.set_defaults(func=cmd_evaluate)


def _ablate_command(p: argparse.ArgumentParser) -> None:
    _add_head_arguments(p)
    p.set_defaults(func=cmd_ablate)


def _robustness_command(p: argparse.ArgumentParser) -> None:
    _add_head_arguments(p, features_required=False)
    p.add_argument("--condition", action="append", nargs="+", metavar="[LABEL] KEY=STORE",
                   help="one corrupted version of the data: an optional label (default: from "
                   "the stores' noise spec, e.g. '10 dB pink') and the corrupted store of each "
                   "modality it changes; the others keep their clean store. Repeat per level "
                   "(default: none; give --condition or --sweep)")
    p.add_argument("--sweep", metavar="FILE",
                   help="the JSON file `mer-features sweep` writes: each of its levels is a "
                   "condition (labelled as the file says), and its clean store is the swept "
                   "modality's unless --features names that modality (default: none)")
    p.add_argument("--sets", default="all", choices=["all", "minimal"],
                   help="modality sets: every combination (default), or each modality alone "
                   "and all together")
    p.add_argument("--test-split", help="score the fold ensemble on this split instead of "
                   "held-out folds (default: none, the held-out folds)")
    _add_augment(p, "; a multi-condition head per modality set is scored beside each "
                 "clean-trained one (their noise draws must differ from every condition's)")
    p.set_defaults(func=cmd_robustness)


def _leaderboard_command(p: argparse.ArgumentParser) -> None:
    from mer_heads.heads import known_heads

    _add_head_arguments(p, skip=("seeds",))
    p.add_argument("--seeds", type=_positive_int, default=3, metavar="N",
                   help="repeat with seeds --seed .. --seed+N-1 (folds and training); rows give "
                   "mean ± std over them (default 3)")
    p.add_argument("--top-n", type=_positive_int, default=1, metavar="K",
                   help="fuse the top 1..K stores of each modality (default 1)")
    p.add_argument("--fusion", default="attention", choices=known_heads(),
                   help="the head fusing the top-K stores (default attention)")
    p.set_defaults(func=cmd_leaderboard)


def _semi_sweep_command(p: argparse.ArgumentParser) -> None:
    from mer_heads.config import STRATEGIES

    swept = tuple(s for s in STRATEGIES if s != "none")  # semi_sweep.SWEPT, without numpy
    BASELINE_SEEDS = 5  # semi_sweep.BASELINE_SEEDS, without numpy
    _add_head_arguments(p)
    p.add_argument("--semi", required=True, choices=swept, metavar="STRATEGY",
                   help=f"the strategy swept: {', '.join(swept)}")
    p.add_argument("--values", required=True, metavar="V1,V2,...",
                   help="comma-separated thresholds T in (0, 1] (class-quantile: quantiles Q "
                   "in [0, 1]), e.g. 0.5,0.6,0.7,0.8,0.9,0.95")
    add_options(p, SemiSettings, ("rounds", "teacher", "hide_labels"))
    p.add_argument("--baseline-seeds", type=_positive_int, default=BASELINE_SEEDS, metavar="N",
                   help="fit the supervised head with N training seeds (--seed ..) on its folds "
                   "and mark values whose CV metric is within 2 std of their mean: changes the "
                   f"folds cannot tell from noise; 1: no spread (default {BASELINE_SEEDS})")
    p.set_defaults(func=cmd_semi_sweep)


def _describe_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", action="append", metavar="[KEY=]STORE",
                   help="take the labels of these stores (repeatable; joined by clip name) "
                   "(default: none; give one of --features, --manifest, --labels)")
    p.add_argument("--manifest", help="take the labels of this manifest CSV (default: none)")
    p.add_argument("--labels", help="take the labels of this name,discrete,valence CSV (MER "
                   "2023 train-label.csv) (default: none)")
    p.add_argument("--join", default="exact", choices=DataConfig.__dataclass_fields__[
        "join"].metadata["choices"], help="with several --features: exact (same clips) or "
        "inner (the common ones) (default exact)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier description in --out (otherwise refused)")
    p.set_defaults(func=cmd_describe)


def _compare_command(p: argparse.ArgumentParser) -> None:
    from mer_heads.config import CompareSettings

    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories of `mer-heads fit` (or their oof_predictions.csv); "
                   "the first is a, the reference")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier comparison in --out (otherwise refused)")
    flags = [f for f in fields(CompareSettings) if f.metadata.get("flag")]
    add_options(p, CompareSettings, tuple(f.name for f in flags if f.type != "bool"))
    for f in flags:
        if f.type == "bool":
            p.add_argument(f.metadata["flag"], dest=f.name, action="store_true",
                           default=argparse.SUPPRESS, help=cli_help(f))
    p.set_defaults(func=cmd_compare)


# Each command: the function adding its options, and add_parser's help and description.
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], dict[str, str]]] = {
    "fit": (_fit_command, dict(
        help="cross-validate a head and write a run directory",
        description="K-fold cross-validation with the best epoch per fold; writes "
        "RUN_DIR/metrics.json, the models, report.md and confusion.png.")),
    "predict": (_predict_command, dict(
        help="MER 2023 submission (name,discrete,valence) from a run",
        description="Average the fold models' probabilities and valence. A run "
        "on MER 2023's classes writes the MER 2023 submission format; a run on "
        "another label set (or other targets) writes name,discrete, a column per "
        "target and a p_<class> column per class.")),
    "evaluate": (_evaluate_command, dict(
        help="official scores of a prediction file",
        description="Weighted F1 over the classes, valence MSE, and "
        "F1 - 0.25 * MSE (F1 only when there is no valence); UA, WA, macro F1, "
        "and the CCC of each target column both files have.")),
    "ablate": (_ablate_command, dict(
        help="every modality combination under one protocol",
        description="Cross-validate every unimodal, bimodal, ... combination with "
        "shared folds; writes OUT/ablation.md, .csv and .json.")),
    "robustness": (_robustness_command, dict(
        help="train on clean features, score corrupted ones (F1 "
        "against SNR)",
        description="Cross-validate every modality set on the clean --features; "
        "score each --condition (stores extracted with `mer-features extract "
        "--noise`) on the held-out clips, each predicted by the fold model that "
        "never saw it. Writes OUT/robustness.md, .csv, .json and .png.")),
    "leaderboard": (_leaderboard_command, dict(
        help="rank every store per modality, then fuse the top-K",
        description="Cross-validate every --features store alone on shared folds "
        "(one assignment per seed), N seeds; rank the stores per modality (KEY; "
        "several stores per KEY), then fuse the top-K of each modality for K = "
        "1..--top-n. Writes OUT/leaderboard.md, .csv, .json and .png.")),
    "semi-sweep": (_semi_sweep_command, dict(
        help="one pseudo-label strategy over a list of thresholds",
        description="Cross-validate the supervised head once, then run the "
        "--semi strategy for each of --values on the same folds: clips added per "
        "class, pseudo-label accuracy (with --hide-labels) and the CV change. "
        "Writes OUT/semi_sweep.md, .csv, .json and .png.")),
    "describe": (_describe_command, dict(
        help="valence per discrete class: statistics, eta², "
        "point-biserial r, overlaps",
        description="Per class the valence count, mean, std and quartiles; the "
        "correlation ratio eta² (class vs valence); per-class point-biserial "
        "correlations with p-values; where the classes' interquartile ranges "
        "overlap; a violin/box figure. Writes OUT/describe.md, .csv, .json, "
        ".png.")),
    "compare": (_compare_command, dict(
        help="paired tests between runs on the same clips: deltas, "
        "bootstrap intervals, permutation p-values",
        description="Compare the held-out predictions of two or more runs of "
        "`mer-heads fit` on the same clips and folds: per metric the values, "
        "delta = b - a, its 95% paired-bootstrap interval (over clips, or the "
        "groups the folds were grouped by) and a paired permutation p-value; "
        "with more than two runs, Holm-adjusted p-values. Writes "
        "OUT/compare.md, .csv, .json and .png.")),
}


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def error_text(e: BaseException) -> str:
    """The one line an error of the library is shown as (after ``error: `` at exit 1, or in
    argparse's usage error at exit 2). mer_features' errors name its parameters in backticks
    (`` `storage_dtype` ``): shown as mer-features' flags (``--storage-dtype``)."""
    from mer_features.errors import MerFeaturesError

    if isinstance(e, MerFeaturesError):
        from mer_features.cli import cli_message

        return _one_line(cli_message(str(e)))
    return _one_line(e)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs is None or action.nargs == 1


def _unknown_options(parser: argparse.ArgumentParser, tokens: list[str]) -> list[str]:
    """The option-like tokens of ``tokens`` that ``parser`` does not know, in order. A token in
    the value slot of an option that takes one value is left to argparse (``--lr -inf``:
    "expected one argument"), as are negative numbers and anything after ``--``."""
    known = parser._option_string_actions
    unknown: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token == "--":
            break
        if not token.startswith("-") or token == "-" or NEGATIVE_NUMBER.fullmatch(token):
            continue
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if name in known:
            skip_next = "=" not in token and _takes_value(known[name])
        elif not token.startswith("--") and token[:2] in known:
            continue  # a short option with its value attached: -C0.5
        else:
            unknown.append(name)
    return unknown


def _refuse_unknown_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Name a misspelt or unknown option (with the option it resembles) before argparse would
    complain about something else, such as a required option it hides (``--feature x.h5``
    says so, not "required: --features")."""
    if "-h" in argv or "--help" in argv:
        return
    commands = _subparsers(parser).choices
    at = next((i for i, token in enumerate(argv) if not token.startswith("-")), len(argv))
    scopes = [(parser, argv[:at])]
    if at < len(argv):
        command = argv[at]
        if command not in commands:
            close = difflib.get_close_matches(command, list(commands), n=1)
            parser.error(f"unknown command {command!r}"
                         + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" (choose from {', '.join(commands)})")
        scopes.append((commands[command], argv[at + 1:]))
    for scope, tokens in scopes:
        unknown = _unknown_options(scope, tokens)
        if unknown:
            options = [o for o in scope._option_string_actions
                       if scope._option_string_actions[o].help != argparse.SUPPRESS]
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
                hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
            scope.error(f"unrecognized argument{'s' if len(unknown) > 1 else ''}: "
                        f"{', '.join(hints)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line, with ``args.settings`` (:func:`_settings`) built and checked.
    Anything wrong with the command line itself exits 2 with argparse's usage and one line:
    an unknown option (named first), a missing one, a value of the wrong type, or a value the
    settings classes refuse (out of range, contradicting another option)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    # The command is the first word that is not an option (mer-heads' own options take no value).
    command = next((token for token in argv if not token.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    _refuse_unknown_options(parser, argv)
    args = parser.parse_args(argv)
    try:
        args.settings = _settings(args)
    except ParameterError as e:
        if e.parameter:  # the library names parameters; the command line, its flags
            e = e.with_flag(parameter_flag(e.parameter))
        _subparsers(parser).choices[args.command].error(error_text(e))
    return args


def main(argv: list[str] | None = None) -> int:
    from mer_features.console import quiet_third_party

    from mer_heads.progress import route_warnings

    quiet_third_party()  # no hub progress bars
    route_warnings()  # scikit-learn's, torch's warnings: one line each, once
    args = parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be shown, and Python's own flush
        # of stdout at exit must not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except Exception as e:
        if args.debug:
            raise
        from mer_features.errors import MerFeaturesError

        if isinstance(e, (MerHeadsError, MerFeaturesError)):
            if isinstance(e, ParameterError) and e.parameter:  # the library names parameters
                e = e.with_flag(parameter_flag(e.parameter))
            print(f"error: {error_text(e)}", file=sys.stderr)
        elif isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
            print(f"error: out of memory ({type(e).__name__}: {_one_line(e)[:200]}); lower "
                  "--hidden, --seeds, --batch-size or --max-frames, or use fewer clips",
                  file=sys.stderr)
        else:
            print(f"error: internal error: {type(e).__name__}: {_one_line(e)} (re-run with "
                  "--debug for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
