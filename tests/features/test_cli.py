import json
import subprocess
import sys
from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.pipeline import default_store_path


def test_help_is_instant_and_imports_no_torch():
    code = ("import sys; from mer_features.cli import build_parser; build_parser().format_help();"
            "print(sorted(m for m in ('torch', 'transformers', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_extract_info_and_exit_codes(audio_corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "s.h5"
    args = ["extract", "--modality", "audio", "--manifest", str(audio_corpus), "--out", str(out),
            "--workers", "0", "--no-progress"]
    assert main(args) == 0
    assert "8 extracted" in capsys.readouterr().out
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # the default audio encoder: whisper (tiny.en, mean and std of 384-d states)
    assert info["clips"] == 8 and info["encoder"] == "whisper" and info["utterance_shape"] == [768]
    assert info["fingerprint_fields"]["preprocessing"]["sample_rate"] == 16000
    assert main(["info", str(out)]) == 0
    assert "fingerprint" in capsys.readouterr().out

    (tmp_path / "clips" / "clip 0.wav").write_bytes(b"broken")
    assert main(args) == 3  # completed, with a recorded failure
    captured = capsys.readouterr()
    assert "1 failed" in captured.out
    assert main(["info", str(tmp_path / "nope.h5")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["extract", "--modality", "audio", "--manifest", str(tmp_path / "none.csv")]) == 1


def test_default_store_name():
    assert default_store_path("data/demo/manifest.csv", "audio", None) == Path("features/demo-audio-whisper.h5")
    assert default_store_path("x/ravdess/m.csv", "audio", "hf:/models/hubert-base/") == \
        Path("features/ravdess-audio-hf-hubert-base.h5")


def _walk(parser):
    import argparse

    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_every_option_has_help_and_shows_its_default():
    import argparse

    from mer_features.cli import build_parser

    missing = []
    for prog, parser in _walk(build_parser()):
        assert parser.allow_abbrev is False, prog
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                   argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue
            name = f"{prog} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{name}: no help")
            elif action.option_strings and action.nargs != 0 and not action.required \
                    and "default" not in action.help:
                missing.append(f"{name}: no default in '{action.help}'")
            elif action.option_strings and action.required and "(required)" not in action.help:
                missing.append(f"{name}: not said to be required")
    assert not missing, "\n".join(missing)


def test_batch_size_and_workers_help_give_every_modality_default(capsys):
    from mer_features.modalities import stages

    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for stage in stages():
        assert f"{stage.name} {stage.batch_size_help()}" in text
        assert f"{stage.name} {stage.workers_help}" in text
    assert "audio 1 on a CPU (8 in bf16), 32 on a GPU; text 64 on a CPU, 256 on a GPU; " \
           "video 4 on a CPU, 16 on a GPU" in text


def test_the_options_are_generated_from_extract_options(capsys):
    from dataclasses import fields

    from mer_features.modalities import stages
    from mer_features.options import flags_of
    from mer_features.pipeline.options import ExtractOptions, SweepOptions

    for command, skip in (("extract", ()), ("sweep", ("out", "noise", "shard"))):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        classes = [ExtractOptions, *(s.Options for s in stages())]
        classes += [SweepOptions] if command == "sweep" else []
        for cls in classes:
            for f in fields(cls):
                for flag in flags_of(f):
                    assert (flag in text) == (f.name not in skip), (command, flag)


def test_version():
    from mer_features import __version__

    out = subprocess.run([sys.executable, "-m", "mer_features.cli", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"mer-features {__version__}"


@pytest.mark.parametrize("argv, words", [
    # a misspelt flag is named first, even with a required flag missing, with the closest one
    (["extract", "--modalty", "audio"], "unrecognized argument --modalty; did you mean --modality?"),
    (["extract", "--modality", "audio", "--manifest", "m.csv", "--batch-sise", "2"],
     "did you mean --batch-size?"),
    # no prefixes: --modal is not --modality, --no-prog not --no-progress
    (["extract", "--modal", "audio", "--manifest", "m.csv"], "unrecognized argument --modal"),
    (["extract", "--modality", "audio", "--manifest", "m.csv", "--no-prog"],
     "unrecognized argument --no-prog"),
    (["extrct", "--modality", "audio"], "unknown command 'extrct'; did you mean extract?"),
    (["--debg", "extract"], "unrecognized argument --debg; did you mean --debug?"),
    (["info"], "the following arguments are required: store"),
])
def test_usage_errors_name_the_unknown_flag_first(argv, words, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--seed", "-1"], "--seed must be an integer >= 0; got -1."),
    (["--workers", "300"], "--workers must be an integer from 0 to 256; got 300."),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1; got 0."),
    (["--batch-seconds", "nan"], "--batch-seconds must be a number > 0; got nan."),
    (["--commit-every", "0"], "--commit-every must be an integer >= 1"),
    (["--shard", "3/2"], "Shard 3/2 does not exist: --shard must be I/N"),
    (["--noise", "snr=x"], "argument --noise: Noise spec 'snr=x': bad value 'x'"),
    (["--encoder", "wav2vec9"], "argument --encoder: Unknown audio encoder 'wav2vec9'"),
    (["-o", "a=1", "-o", "a=2"], "Encoder option 'a' is given twice in --option"),
    (["--fps", "0"], "--fps must be a number in (0, 60]; got 0.0."),  # checked, for audio too
    (["-o", "nope=1"], "argument --option: Encoder 'whisper' has no option(s) nope"),
])
def test_values_out_of_range_exit_2_naming_the_flag(extra, words, tmp_path: Path, capsys):
    """The exit-code rule: a value refused before any work is a bad argument (2), reported as
    argparse reports its own: the usage, then one line naming the flag."""
    manifest = tmp_path / "m.csv"
    (tmp_path / "a.wav").write_bytes(b"x")
    manifest.write_text("name,audio\na,a.wav\n")
    code = main(["extract", "--modality", "audio", "--manifest", str(manifest), "--out",
                 str(tmp_path / "s.h5"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("usage: mer-features extract"), err
    assert err.splitlines()[-1] == f"mer-features extract: error: {words}" or \
        err.splitlines()[-1].startswith(f"mer-features extract: error: {words}"), err
    assert "`" not in err and not (tmp_path / "s.h5").exists()


def test_video_bounds_are_the_options_own(tmp_path: Path, capsys):
    for extra, words in ((["--face-size", "2000"], "--face-size must be an integer from 16 to "
                                                   "1024; got 2000"),
                         (["--fps", "0"], "--fps must be a number in (0, 60]; got 0.0"),
                         (["--face-margin", "11"], "--face-margin must be a number in [0, 10]")):
        assert main(["extract", "--modality", "video", "--manifest", str(tmp_path / "m.csv"),
                     *extra]) == 2
        assert words in capsys.readouterr().err


def test_errors_while_working_exit_1_and_name_flags(tmp_path: Path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,audio\na,gone.wav\n")
    assert main(["extract", "--modality", "audio", "--manifest", str(manifest), "--out",
                 str(tmp_path / "s.h5")]) == 1
    err = capsys.readouterr().err
    assert "gone.wav' not found" in err and "pass --skip-missing" in err and "`" not in err
