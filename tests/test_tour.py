"""Every shell command of the README and docs/*.md runs as written (issue 22).

The ```bash blocks are cut into commands (continuation lines joined, a ``for`` loop kept whole,
comments dropped). Each command is either run here or named in :data:`EXEMPT`, the one list of
commands that cannot run in a test, each with its reason; a command that is neither fails
:func:`test_every_doc_command_is_run_or_exempt`, so nothing is skipped silently.

The commands run in one workspace shared by the session (:func:`tour`): the README's tour first,
in its quick variant as the README states it (``demo --clips 18``, ``--folds 2`` on every
``mer-heads`` command that has no ``--folds``, ``FOLDS=2`` for make), then the other pages'
commands in page order, on the demo corpus and stores the tour made. The rewriting is
:func:`runnable`, nothing else: programs come from this checkout's .venv and ``make`` uses this
checkout's Makefile and .venv without re-running ``make setup``. The placeholder files of
schematic examples (``A.h5``, ``T.h5``, ``m.csv``) are links to the demo's files (:data:`ALIASES`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Command:
    page: str   # "README.md", "docs/cli.md"
    line: int   # of its first line in the page
    text: str   # one shell command line (a loop: its lines joined by "; ")

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _uncommented(line: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", line).rstrip()


def doc_commands(path: Path) -> list[Command]:
    """The commands of the page's ```bash blocks, in page order."""
    text = path.read_text(encoding="utf-8")
    page = str(path.relative_to(ROOT))
    out: list[Command] = []
    for block in FENCE.finditer(text):
        if block.group("lang") not in ("bash", "sh", "shell", "console"):
            continue
        first = text[:block.start("body")].count("\n") + 1
        parts: list[str] = []
        start = 0
        for i, raw in enumerate(block.group("body").splitlines()):
            line = _uncommented(raw)
            if not line.strip():
                continue
            if not parts:
                start = first + i
            parts.append(line.strip().removesuffix("\\").strip())
            joined = " ".join(parts)
            loops = len(re.findall(r"(?:^|[\s;])for\s", joined))
            open_loop = loops > len(re.findall(r"(?:^|[\s;])done\b", joined))
            if not line.endswith("\\") and not open_loop:
                out.append(Command(page, start, joined))
                parts = []
    return out


ALL = [c for page in PAGES for c in doc_commands(page)]

# The one list of commands not run here: (page, start of the command, reason). Every entry must
# match a command of the docs (test_the_exempt_list_is_current).
REAL_DATA = "a real corpus at a path of the user's machine (/data/..., manifests/*.csv of it)"
HUB = "a model directory (hf:/models/..., hf:MODEL_DIR) a clone does not have (no hub here)"
HOURS = ("a measurement of docs/findings.md on a real corpus (RAVDESS, MER 2023): hours on 2 "
         "cores; its numbers are in findings.md")
COMPARE = ("compares the run folders of a study (runs/egemaps, runs/compare, ...) that the docs "
           "do not build; the command is run on real runs by tests/heads/test_compare.py")
MER2023 = ("the MER 2023 release's label file: run by test_describe_mer2023_labels_as_written "
           "(shared_data) on ../shared/data/mer2023")
EXEMPT: list[tuple[str, str, str]] = [
    ("README.md", "make setup", "installs .venv: CI runs it before the suite"),
    ("README.md", "make test", "the suite itself (and make test-quick, a part of it)"),
    ("README.md", "make extract MODALITY=audio MANIFEST=manifests/ravdess.csv", HUB),
    ("README.md", "mer-features extract --modality audio --manifest manifests/ravdess.csv", HUB),
    ("README.md", "mer-features info features/ravdess-audio-hubert-large.h5",
     "the store of the exempt HuBERT extraction above"),
    ("docs/cli.md", "mer-features extract --modality audio --manifest manifests/ravdess.csv", HUB),
    ("docs/cli.md", "mer-features manifest ", REAL_DATA),
    ("docs/cli.md", "mer-heads fit --features audio=features/ravdess-audio-egemaps.h5",
     REAL_DATA + ": RAVDESS stores with actors"),
    ("docs/cli.md", "make extract MODALITY=audio MANIFEST=manifests/ravdess.csv", HUB),
    ("docs/cli.md", "make robustness MANIFEST=manifests/ravdess.csv", REAL_DATA),
    ("docs/corpora.md", "", REAL_DATA + ": every command of corpora.md imports, extracts or "
     "trains on one of the corpora it describes"),
    ("docs/manifests.md", "mer-features manifest ", REAL_DATA),
    ("docs/findings.md", "", HOURS),
    ("docs/guarantees.md", "make test", "the suite itself"),
    ("docs/guarantees.md", ".venv/bin/python -m pytest", "tests of the suite itself"),
    ("docs/heads.md", "mer-features extract --modality audio --manifest data/demo/manifest.csv "
     "--encoder hf:MODEL_DIR", HUB),
    ("docs/heads.md", "mer-heads fit --features features/demo-audio-hubert-all.h5",
     "the store of the exempt HuBERT extraction above"),
    ("docs/heads.md", "mer-heads describe --labels /data/MER2023/", MER2023),
    ("docs/cli.md", "mer-heads describe --labels /data/MER2023/", MER2023),
    ("docs/noise.md", "mer-features extract --modality audio --manifest m.csv --out a-musan.h5",
     "a MUSAN speech folder (/data/musan) a clone does not have"),
    ("docs/heads.md", "mer-heads fit --features A.h5 --features T.h5 --out runs/semi --semi",
     "needs stores with unlabelled clips (MER 2023's unlabelled set): the demo labels every clip "
     "(refused with that message); the next line, the --hide-labels simulation, runs the same "
     "rounds on the 60-clip demo"),
    ("docs/cli.md", "mer-heads robustness --features audio=A.h5 --features video=V.h5",
     "schematic conditions of two modalities (A-snr10.h5, A-snr00.h5, V-blur4.h5); its form "
     "(--condition, a named condition) runs on synthetic stores in tests/heads/experiments/"
     "test_robustness.py::test_outputs_cli_and_determinism"),
    ("docs/cli.md", "mer-heads compare runs/", COMPARE),
    ("docs/heads.md", "mer-heads compare runs/", COMPARE),
    ("docs/statistics.md", "mer-heads compare ", COMPARE),
    ("docs/heads.md", "mer-features manifest emobox --data EmoBox/", REAL_DATA),
    ("docs/heads.md", "mer-features extract --modality audio --encoder whisper --manifest "
     "ravdess-emobox.csv", REAL_DATA + ": the EmoBox RAVDESS manifest above"),
    ("docs/heads.md", "mer-heads fit --features ravdess-audio-whisper.h5", REAL_DATA),
    ("docs/encoders.md", "", "RAVDESS measurements (ravdess.csv, a real corpus; minutes to "
     "hours on 2 cores); its numbers are in encoders.md"),
    ("docs/store.md", "torchrun ", "torchrun over 8 GPUs and a HuBERT model directory"),
    ("docs/store.md", "sbatch ", "SLURM"),
]


def exemption(command: Command) -> str | None:
    reasons = [r for page, start, r in EXEMPT
               if command.page == page and command.text.startswith(start)]
    return reasons[0] if reasons else None


RUN = [c for c in ALL if exemption(c) is None]

ALIASES = {"A.h5": "features/demo-audio.h5", "T.h5": "features/demo-text.h5",
           "V.h5": "features/demo-video.h5", "m.csv": "speakers.csv"}
"""Placeholders of schematic examples -> the demo's files they stand for in the workspace;
``m.csv`` (noise.md: a corpus with speakers, ``--groups actor``) is the demo's manifest with an
``actor`` column of three made-up speakers (:func:`_with_speakers`)."""


def _with_speakers(manifest: Path, out: Path) -> None:
    import csv

    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    folder = manifest.parent.relative_to(out.parent)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, [*rows[0], "actor"])
        writer.writeheader()
        for i, row in enumerate(rows):
            row["video"] = str(folder / row["video"])
            writer.writerow({**row, "actor": f"speaker{i % 3}"})


TRAINING = ("fit", "ablate", "robustness", "leaderboard", "semi-sweep")


def runnable(command: Command) -> str:
    """The command as this test runs it: the README's quick variant and this checkout's make;
    on the docs pages (not the README's tour) heads train for 5 epochs: this test checks that a
    command runs (its options, its corpus), not its scores, and `leaderboard --seeds 3` of
    100-epoch heads alone would take minutes."""
    text = command.text
    if command.page != "README.md" and text.startswith("mer-heads ") and \
            text.split()[1] in TRAINING:
        text = re.sub(r"--epochs \d+", "--epochs 5", text)
        if "--epochs" not in text:
            text += " --epochs 5"
    text = text.replace("mer-features demo --out data/demo",
                        "mer-features demo --clips 18 --out data/demo")
    text = re.sub(r"--folds 5\b", "--folds 2", text)
    text = re.sub(r"\bFOLDS=5\b", "FOLDS=2", text)
    if text.startswith("mer-heads ") and "--folds" not in text and \
            text.split()[1] in TRAINING:
        text += " --folds 2"
    if text.startswith("make "):
        text = (f"make --no-print-directory -f {shlex.quote(str(ROOT / 'Makefile'))} -o setup "
                f"VENV={shlex.quote(str(BIN.parent))} " + text[len("make "):])
        if "robustness" in text and "FOLDS=" not in text:
            text += " FOLDS=2"
    return text


@dataclass
class Workspace:
    path: Path
    env: dict[str, str]
    seconds: dict[str, float]

    def run(self, command: Command, timeout: float = 600) -> subprocess.CompletedProcess:
        text = runnable(command)
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", "set -eo pipefail\n" + text], cwd=self.path,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        self.seconds[str(command)] = time.perf_counter() - start
        assert done.returncode in (0, 3) if "extract" in text or "sweep" in text \
            else done.returncode == 0, (
            f"{command}\nran as: {text}\nexit {done.returncode}\nstdout: {done.stdout[-1500:]}\n"
            f"stderr: {done.stderr[-3000:]}")
        return done


def workspace(path: Path) -> Workspace:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return Workspace(path, env, {})


def main_job(command: Command) -> bool:
    """The README's main job (`make extract`, on the 60-clip demo it writes on first use)."""
    return command.page == "README.md" and command.text.startswith("make extract")


@pytest.fixture(scope="session")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace where the README's tour ran (quick variant), every command of it."""
    work = workspace(tmp_path_factory.mktemp("tour"))
    commands = [c for c in RUN if c.page == "README.md" and not main_job(c)]
    assert [c.text.split()[:2] for c in commands][:2] == [["mer-features", "demo"],
                                                          ["mer-features", "extract"]]
    for command in commands:
        work.run(command)
    _with_speakers(work.path / "data" / "demo" / "manifest.csv", work.path / "speakers.csv")
    for alias, target in ALIASES.items():
        (work.path / alias).symlink_to(work.path / target)
    return work


@pytest.fixture(scope="session")
def demo60(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace where the README's main job ran as written (`make extract MODALITY=audio`:
    the 60-clip demo, then its audio features), and the tour's text extraction, as written."""
    work = workspace(tmp_path_factory.mktemp("demo60"))
    (job,) = [c for c in RUN if main_job(c)]
    text = next(c for c in RUN if c.page == "README.md" and "--modality text" in c.text)
    for command in (job, text):
        work.run(command)
    assert len((work.path / "data" / "demo" / "manifest.csv").read_text().splitlines()) == 61
    (work.path / "T.h5").symlink_to(work.path / "features" / "demo-text.h5")
    return work


def test_every_doc_command_is_run_or_exempt() -> None:
    assert len(ALL) > 60, "the docs lost their shell blocks, or the parser broke"
    pages = {c.page for c in RUN}
    tested = {"README.md", "docs/cli.md", "docs/heads.md", "docs/noise.md"}
    assert pages <= tested, (f"commands of {sorted(pages - tested)} are neither run by a test "
                             "of tests/test_tour.py nor listed in EXEMPT")


def test_the_exempt_list_is_current() -> None:
    stale = [(page, start) for page, start, _ in EXEMPT
             if not any(c.page == page and c.text.startswith(start) for c in ALL)]
    assert stale == [], "EXEMPT names commands the docs no longer have"


def test_commands_are_cut_as_the_shell_reads_them() -> None:
    readme = [c for c in ALL if c.page == "README.md"]
    fit = next(c for c in readme if c.text.startswith("mer-heads fit"))
    assert fit.text.endswith("--train-split train --test-split test") and "\\" not in fit.text
    loop = next(c for c in ALL if c.page == "docs/findings.md" and c.text.startswith("for s"))
    assert loop.text.count("done") == 2 and "mer-heads" in loop.text
    assert all("#" not in c.text for c in ALL if c.page == "README.md")
    assert runnable(Command("README.md", 1, "mer-heads ablate --features A.h5 --out x")) == \
        "mer-heads ablate --features A.h5 --out x --folds 2"
    assert runnable(Command("docs/cli.md", 1, "mer-heads fit --features A.h5 --epochs 100 "
                            "--folds 5 --out x")) == \
        "mer-heads fit --features A.h5 --epochs 5 --folds 2 --out x"


@pytest.mark.slow
def test_readme_tour_runs_and_scores_held_out_clips(tour: Workspace) -> None:
    run = tour.path / "runs" / "demo"
    assert (run / "metrics.json").exists() and (tour.path / "preds.csv").exists()
    report = (run / "report.md").read_text()
    assert "test: 0" not in report
    robustness = tour.path / "runs" / "robustness-audio"
    assert (robustness / "robustness.png").stat().st_size > 1000
    import json

    assert json.loads((robustness / "robustness.json").read_text())["params"]["folds"] == 2
    evaluate = next(c for c in RUN if c.page == "README.md" and "evaluate" in c.text)
    done = tour.run(evaluate)
    assert "warning" not in done.stderr.lower(), done.stderr
    print({k: round(v, 1) for k, v in tour.seconds.items()})


def on_the_60_clip_demo(command: Command) -> bool:
    """Commands the docs run on the 60-clip demo: pseudo-labelling, which needs a pool of
    unlabelled clips and two labelled clips per class and fold (the quick demo has 3 a class)."""
    return command.text.startswith("mer-heads semi-sweep ") or " --semi " in command.text


ORDER = ["docs/heads.md", "docs/noise.md", "docs/cli.md"]
"""Pages in the order they run: docs/cli.md's leaderboard reads the stores heads.md extracts."""


@pytest.mark.slow
def test_doc_commands_run_as_written(tour: Workspace) -> None:
    """Each page in its own folder (its own runs/: pages reuse output names) that shares the
    tour's data/ and features/; every command runs, and every failure is reported."""
    assert {c.page for c in RUN} - {"README.md"} == set(ORDER)
    failures = []
    for page in ORDER:
        folder = tour.path / "pages" / Path(page).stem
        folder.mkdir(parents=True)
        for name in ("data", "features", "speakers.csv", *ALIASES):
            (folder / name).symlink_to(tour.path / name)
        work = Workspace(folder, tour.env, tour.seconds)
        for command in (c for c in RUN if c.page == page and not on_the_60_clip_demo(c)):
            try:
                work.run(command)
            except AssertionError as exc:
                failures.append(str(exc))
    assert failures == [], "\n\n".join(failures)


@pytest.mark.slow
def test_main_job_and_semi_sweep_examples_run_on_the_60_clip_demo(demo60: Workspace) -> None:
    """The README's main job wrote the 60-clip demo and its audio store; the docs' semi-sweep
    examples run on its text store: the issue's case (text, 70% of the labels hidden, 3 folds)."""
    assert (demo60.path / "features" / "demo-audio-whisper.h5").exists()
    commands = [c for c in RUN if on_the_60_clip_demo(c)]
    assert {c.page for c in commands} == {"docs/cli.md", "docs/heads.md"}
    ran: set[str] = set()
    for command in commands:
        if command.text in ran:  # cli.md repeats heads.md's example: the same run
            continue
        ran.add(command.text)
        done = demo60.run(command)
        if "semi-sweep" in command.text:
            assert "| 0.95 |" in done.stdout and "Noise:" in done.stdout, done.stdout
    assert len(ran) == 2
    assert (demo60.path / "runs" / "sim" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("page", ["docs/heads.md", "docs/cli.md"])
def test_describe_mer2023_labels_as_written(tmp_path: Path, page: str) -> None:
    from real_data import shared_data

    labels = shared_data("mer2023", "train-label.csv")
    (command,) = [c for c in ALL if c.page == page and c.text.startswith("mer-heads describe "
                                                                           "--labels")]
    work = workspace(tmp_path)
    work.run(Command(page, command.line,
                     command.text.replace("/data/MER2023/train-label.csv", str(labels))))
    assert (tmp_path / "runs" / "describe-mer2023" / "describe.md").stat().st_size > 0
