"""``mer-heads``: the command line. Each command parses arguments and calls one library function;
torch and scikit-learn are imported inside the commands so ``--help`` is instant.

Exit codes: 0 done; 1 an error stopped the command (one line on stderr: what is wrong and what
to do; an unexpected one says "internal error", and ``--debug`` shows its traceback); 2 bad
arguments; 130 interrupted; 141 the output pipe was closed (``mer-heads ... | head``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mer_heads.errors import MerHeadsError, ParameterError

MODELS = ("attention", "concat", "fbp", "logreg", "svm")


def _head_params(args: argparse.Namespace) -> dict:
    return dict(model=args.model, folds=args.folds, epochs=args.epochs, seed=args.seed,
                seeds=args.seeds, hidden=args.hidden, dropout=args.dropout, lr=args.lr,
                weight_decay=args.weight_decay, batch_size=args.batch_size,
                valence_weight=args.valence_weight, C=args.C, precision=args.precision,
                device=args.device)


def _data_params(args: argparse.Namespace) -> dict:
    return dict(manifest=args.manifest, input=args.input, join=args.join, layers=args.layers,
                max_frames=args.max_frames)


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


SEMI_OPTIONS = {"semi_rounds": ("--semi-rounds", "rounds"),
                "semi_threshold": ("--semi-threshold", "threshold"),
                "semi_quantile": ("--semi-quantile", "quantile"),
                "semi_teacher": ("--semi-teacher", "teacher")}
"""Options of --semi (parsed as None when absent, so a stray one can be refused) and the
:class:`~mer_heads.semi.SemiSettings` field each sets."""


def _semi_settings(args: argparse.Namespace):
    from mer_heads.semi import SemiSettings

    given = {dest: getattr(args, dest) for dest in SEMI_OPTIONS if getattr(args, dest) is not None}
    if args.semi is None and args.hide_labels is None:
        if given:
            raise ParameterError(f"{', '.join(SEMI_OPTIONS[d][0] for d in given)} only act(s) "
                                 "with --semi STRATEGY (threshold, class-quantile, "
                                 "weak-reinforce) or --hide-labels; add one, or drop the option.")
        return None
    return SemiSettings(strategy=args.semi or "none", hide_labels=args.hide_labels,
                        **{SEMI_OPTIONS[d][1]: v for d, v in given.items()}).check()


def cmd_fit(args: argparse.Namespace) -> int:
    from mer_heads.experiment import fit_run

    semi = _semi_settings(args)
    _set_threads(args)
    result = fit_run(args.features, args.out, train_split=args.train_split,
                     test_split=args.test_split, semi=semi, overwrite=args.overwrite,
                     **_data_params(args), **_head_params(args))
    print(result.table())
    for note in result.metrics["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"{result.run_dir}: metrics.json, report.md, confusion.png, models/ "
          f"({result.seconds:.1f} s)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mer_heads.experiment import predict_run

    result = predict_run(args.run, args.out, args.features, join=args.join)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{result.path}: {result.n} clips")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mer_heads.metrics import evaluate_files

    scores, notes = evaluate_files(args.pred, args.labels)
    if args.json:
        print(json.dumps({**scores.to_json(), "notes": notes}, indent=2, sort_keys=True))
        return 0
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"clips          {scores.n} ({scores.n_valence} with valence)")
    print(f"weighted F1    {scores.f1:.4f}")
    print(f"accuracy       {scores.accuracy:.4f}")
    if scores.mse is not None:
        print(f"valence MSE    {scores.mse:.4f}")
        print(f"F1 - 0.25 MSE  {scores.metric:.4f}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from mer_heads.ablation import ablate

    _set_threads(args)
    result = ablate(args.features, args.out, train_split=args.train_split,
                    overwrite=args.overwrite, **_data_params(args), **_head_params(args))
    print(result.markdown(), end="")
    print(f"{result.csv_path}, {result.markdown_path} ({result.seconds:.1f} s)")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from mer_heads.robustness import robustness

    _set_threads(args)
    result = robustness(args.features, args.condition or [], args.out, sets=args.sets,
                        train_split=args.train_split, test_split=args.test_split,
                        overwrite=args.overwrite, **_data_params(args), **_head_params(args))
    print(result.markdown(), end="")
    print(f"{result.csv_path}, {result.markdown_path}, {result.json_path}, {result.png_path} "
          f"({result.seconds:.1f} s)")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the range is said in the usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def _add_head_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", action="append", required=True, metavar="[KEY=]STORE",
                   help="feature store of one modality (repeat per modality); KEY names the "
                   "modality (default: the store's modality)")
    p.add_argument("--manifest", help="take labels and splits from this CSV instead of the stores")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier result in --out (otherwise refused)")
    p.add_argument("--model", default="attention", choices=MODELS,
                   help="attention (MER 2023 baseline), concat, fbp (factorised bilinear "
                   "pooling), logreg, svm (default attention)")
    p.add_argument("--input", default="utterance", choices=["utterance", "frames"],
                   help="utterance vectors, or frame matrices with a temporal head")
    p.add_argument("--layers", default="mean", choices=["mean", "flatten"],
                   help="utterance arrays of shape (layers, dim): average the layers or flatten")
    p.add_argument("--max-frames", type=int, default=64,
                   help="frame input: at most this many frames per clip (segment means)")
    p.add_argument("--join", default="exact", choices=["exact", "inner"],
                   help="exact: stores must hold the same clips; inner: use the common ones")
    p.add_argument("--train-split", help="train on clips of this split only")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="models per fold (an ensemble)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.3, help="in [0, 1) (default 0.3)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's step size, > 0 "
                   "(default 0.001)")
    p.add_argument("--weight-decay", type=float, default=1e-5,
                   help="Adam's L2 weight decay, >= 0 (default 1e-5)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="clips per step per model (default: a fold's training clips / 4, "
                   "within 32-1024)")
    p.add_argument("--valence-weight", type=float, default=1.0,
                   help="weight of the valence MSE in the training loss, >= 0 (default 1)")
    p.add_argument("-C", type=float, default=1.0, dest="C",
                   help="inverse regularisation of logreg/svm, > 0 (default 1)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="bf16: matrix products in bfloat16; auto: bf16 where native (default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu); "
                   "the neural models' device")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch (default: torch's, i.e. all cores; small runs "
                   "use one). On a machine shared with other jobs, 1 is often faster")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mer-heads",
        description="Fusion and multi-task heads on cached features, with the MER 2023 protocol.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="cross-validate a head and write a run directory",
                       description="K-fold cross-validation with the best epoch per fold; writes "
                       "RUN_DIR/metrics.json, the models, report.md and confusion.png.")
    _add_head_arguments(p)
    p.add_argument("--test-split", help="also predict (and score, if labelled) this split")
    semi = p.add_argument_group("semi-supervised (MER-SEMI): pseudo-label unlabelled clips")
    semi.add_argument("--semi", metavar="STRATEGY",
                      help="none, threshold (confidence >= T), class-quantile (per predicted "
                      "class, confidence >= its Q-quantile), weak-reinforce (threshold, only "
                      "classes below the mean training frequency)")
    semi.add_argument("--semi-rounds", type=int, default=None, metavar="R",
                      help="pseudo-label and retrain R times (default 1)")
    semi.add_argument("--semi-threshold", type=float, default=None, metavar="T",
                      help="confidence threshold in (0, 1] (default 0.8)")
    semi.add_argument("--semi-quantile", type=float, default=None, metavar="Q",
                      help="class-quantile: quantile in [0, 1] (default 0.8)")
    semi.add_argument("--semi-teacher", default=None, metavar="fold|ensemble",
                      help="fold: each fold's own models label its pool (no held-out label "
                      "leaks; default); ensemble: the mean of all fold models")
    semi.add_argument("--hide-labels", type=float, default=None, metavar="FRACTION",
                      help="simulation: hide this fraction of the labels (stratified, seeded), "
                      "use those clips as the pool and report the pseudo-labels' accuracy")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="MER 2023 submission (name,discrete,valence) from a run",
                       description="Average the fold models' probabilities and valence.")
    p.add_argument("--run", required=True, help="run directory written by `mer-heads fit`")
    p.add_argument("--features", action="append", metavar="[KEY=]STORE",
                   help="stores to predict, one per modality in the run's order (default: the "
                   "run's training stores)")
    p.add_argument("--out", required=True, help="CSV to write (replaced if it exists)")
    p.add_argument("--join", default="exact", choices=["exact", "inner"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="official scores of a prediction file",
                       description="Weighted F1 over the six classes, valence MSE, and "
                       "F1 - 0.25 * MSE (F1 only when there is no valence).")
    p.add_argument("--pred", required=True, help="CSV name,discrete[,valence]")
    p.add_argument("--labels", required=True, help="CSV name,discrete[,valence] (a manifest or "
                   "MER 2023 train-label.csv)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ablate", help="every modality combination under one protocol",
                       description="Cross-validate every unimodal, bimodal, ... combination with "
                       "shared folds; writes OUT/ablation.md, .csv and .json.")
    _add_head_arguments(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("robustness", help="train on clean features, score corrupted ones (F1 "
                       "against SNR)",
                       description="Cross-validate every modality set on the clean --features; "
                       "score each --condition (stores extracted with `mer-features extract "
                       "--noise`) on the held-out clips, each predicted by the fold model that "
                       "never saw it. Writes OUT/robustness.md, .csv, .json and .png.")
    _add_head_arguments(p)
    p.add_argument("--condition", action="append", nargs="+", metavar="[LABEL] KEY=STORE",
                   help="one corrupted version of the data: an optional label (default: from "
                   "the stores' noise spec, e.g. '10 dB pink') and the corrupted store of each "
                   "modality it changes; the others keep their clean store. Repeat per level")
    p.add_argument("--sets", default="all", choices=["all", "minimal"],
                   help="modality sets: every combination (default), or each modality alone "
                   "and all together")
    p.add_argument("--test-split", help="score the fold ensemble on this split instead of "
                   "held-out folds")
    p.set_defaults(func=cmd_robustness)
    for command in sub.choices.values():  # --debug also after the command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
    return parser


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            print(f"error: {_one_line(e)}", file=sys.stderr)
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
