"""Run every benchmark of the toolkit and write one table to benchmarks/RESULTS.md.

Each benchmark script prints its figures and writes benchmarks/out/<name>.json; this runner
runs them one after the other (each in its own process, side by side comparisons inside each
run), then writes the table under the machine's kind (CPU model and instruction sets, see
benchmarks/machine.py). Sections of other machines (another CPU kind, a GPU run) and
hand-written notes are kept when the table is rewritten. `make bench` runs it; `make bench
BENCH_ARGS=--quick` with small sizes, a smoke test whose table is printed and written to
benchmarks/out/RESULTS-quick.md, never into RESULTS.md.
Usage: python benchmarks/run_all.py [--only NAME ...] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

# name -> (script, full arguments, quick arguments, rows: (label, json path, target), whether
# `make bench` runs it); a target is (comparison, value) from the issues, or None for a figure
# reported as measured. Sizes are chosen so that `make bench` takes under 15 minutes on a 2-core
# AVX2 machine and `--quick` under 3; heads-100 (the 100-epoch comparison: the DataLoader loop
# alone takes about 11 minutes there) runs with `run_all.py --only heads-100`, and its last
# figures are kept in the table, marked with their date.
AT_LEAST, AT_MOST = ">=", "<="
BENCHMARKS = {
    "audio": ("bench_audio.py", ["--clips", "40", "--repeats", "2", "--path-clips", "8"],
              ["--clips", "8", "--repeats", "1", "--path-clips", "4"], [
        ("audio: per-clip loop fp32 (s)", "per_clip_loop_fp32_s", None),
        ("audio: pipeline fp32 (s)", "pipeline_fp32_s", None),
        ("audio: fp32 speed-up vs per-clip loop (x)", "speedup_fp32", (AT_LEAST, 1.0)),
        ("audio: --dtype auto chose", "auto_path", None),
        ("audio: --dtype auto speed-up vs per-clip loop (x)", "speedup_auto", (AT_LEAST, 1.0)),
        ("audio: path fast-fp32 vs loop, same clips (x)", "paths.fast-fp32.speedup", None),
        ("audio: path stock-fp32 vs loop, same clips (x)", "paths.stock-fp32.speedup", None),
        ("audio: path fast-bf16 vs loop, same clips (x)", "paths.fast-bf16.speedup", None),
        ("audio: path stock-bf16 vs loop, same clips (x)", "paths.stock-bf16.speedup", None),
        ("audio: bf16 vs fp32 utterance cosine, min", "paths.fast-bf16.cosine_min_to_fast_fp32",
         (AT_LEAST, 0.99)),
        ("audio: compute-path probe, once per machine (s)", "probe.seconds", None),
        ("audio: re-run over a complete store (% of first run)", "rerun_percent_of_first",
         (AT_MOST, 3.0)),
    ], True),
    # bench_text.py belongs to the text encoders (e5, MiniLM); its JSON keys are read here.
    "text": ("bench_text.py", ["--clips", "1000"], ["--quick"], [
        ("text: MiniLM per-transcript loop, English (transcripts/s)", "minilm_loop_en.per_s", None),
        ("text: MiniLM pipeline, English (transcripts/s)", "minilm_pipeline_en.per_s", None),
        ("text: MiniLM pipeline vs loop (x)", "ratios.minilm_vs_loop_en", (AT_LEAST, 1.0)),
        ("text: e5 pipeline, English (transcripts/s)", "e5_pipeline_en.per_s", None),
        ("text: e5 pipeline vs loop, English (x)", "ratios.e5_vs_loop_en", (AT_LEAST, 1.0)),
        ("text: e5 pipeline vs loop, Chinese (x)", "ratios.e5_vs_loop_zh", (AT_LEAST, 1.0)),
        ("text: e5 vs MiniLM pipeline, English (x)", "ratios.e5_vs_minilm_en", None),
    ], True),
    "video": ("bench_video.py", [], ["--clips", "6", "--repeats", "1"], [
        ("video: per-clip loop (s)", "per_clip_loop_s", None),
        ("video: pipeline (s)", "pipeline_s", None),
        ("video: speed-up vs per-clip loop (x)", "speedup", (AT_LEAST, 2.0)),
    ], True),
    "heads": ("bench_heads.py", ["--epochs", "30", "--skip-seeds"],
              ["--epochs", "30", "--clips", "600", "--skip-seeds"], [
        ("heads, 30 epochs: per-fold DataLoader loop, 5 folds (s)", "baseline.seconds", None),
        ("heads, 30 epochs: batched trainer, 5 folds (s)", "mer_heads.seconds", None),
        ("heads, 30 epochs: precision (auto, measured)", "mer_heads.precision", None),
        ("heads, 30 epochs: speed-up (x)", "speedup", (AT_LEAST, 10.0)),
        ("heads, 30 epochs: CV metric, baseline loop", "baseline.metric", None),
        ("heads, 30 epochs: CV metric, batched trainer", "mer_heads.metric", None),
        ("heads, 30 epochs: CV metric, batched - baseline (>= 0)", "metric_gain", (AT_LEAST, 0.0)),
        ("heads, 30 epochs: floor of the batched trainer on this machine (s)",
         "floor.seconds", None),
    ], True),
    "heads-100": ("bench_heads.py", ["--epochs", "100", "--skip-seeds",
                                     "--out", "benchmarks/out/bench_heads-100.json"],
                  ["--epochs", "100", "--clips", "600", "--skip-seeds",
                   "--out", "benchmarks/out/bench_heads-100.json"], [
        ("heads, 100 epochs: per-fold DataLoader loop, 5 folds (s)", "baseline.seconds", None),
        ("heads, 100 epochs: batched trainer, 5 folds (s)", "mer_heads.seconds", None),
        ("heads, 100 epochs: precision (auto, measured)", "mer_heads.precision", None),
        ("heads, 100 epochs: speed-up (x)", "speedup", (AT_LEAST, 10.0)),
        ("heads, 100 epochs: CV metric, baseline loop", "baseline.metric", None),
        ("heads, 100 epochs: CV metric, batched trainer", "mer_heads.metric", None),
        ("heads, 100 epochs: CV metric, batched - baseline (>= 0)", "metric_gain",
         (AT_LEAST, 0.0)),
        ("heads, 100 epochs: floor of the batched trainer on this machine (s)",
         "floor.seconds", None),
        ("heads: 10 seeds / 1 seed time (x)", "seeds_time_ratio", (AT_MOST, 2.0)),
        ("heads: 10-seed floor on this machine, first-layer products + Adam alone (s)",
         "seeds_floor.seconds", None),
        ("heads: that floor / 1 seed's whole run (x)", "seeds_floor_ratio", None),
    ], False),
    "semi": ("bench_semi.py", ["--quick"], ["--quick", "--pool", "3000"], [
        ("semi: one threshold round, 3,373 labelled + unlabelled pool, 3 x 1024-d (s)",
         "fit_semi_s", None),
        ("semi: unlabelled pool (clips)", "pool", None),
        ("semi: streamed fold predictions over the pool (s)", "pool_predict_s", None),
        ("semi: pseudo-labelled clips added per fold", "added_per_fold", None),
        ("semi: generated arrays (GB)", "data_gb", None),
        ("semi: peak RSS (GB)", "peak_rss_gb", None),
    ], True),
    "stats": ("bench_stats.py", [], ["--clips", "2000", "--resamples", "200",
                                     "--permutations", "1000", "--loop", "10"], [
        ("stats: clips / resamples / permutations (full: 10000 / 1000 / 10000)",
         "sizes", None),
        ("stats: bootstrap over clips, every metric (s)", "bootstrap_clips_s", None),
        ("stats: same, CPU seconds of the process", "bootstrap_clips_cpu_s", None),
        ("stats: same, resampling 100 speakers (s)", "bootstrap_groups_s", None),
        ("stats: same resamples, one all_metrics call each (s)",
         "loop_all_metrics_s", None),
        ("stats: bootstrap vs per-resample loop (x)", "speedup_vs_loop", (AT_LEAST, 1.0)),
        ("stats: paired test, resamples + permutations (s)", "compare_pair_s", None),
    ], True),
    "store": ("bench_store.py", [], ["--clips", "5000"], [
        ("store: all utterances of 73k clips from the store, cold cache (s)", "cold.store_s", None),
        ("store: same from one .npy per clip, cold cache (s)", "cold.npy_s", None),
        ("store: speed-up, cold cache (x)", "cold.speedup", (AT_LEAST, 10.0)),
        ("store: speed-up, warm cache (x)", "warm.speedup", None),
    ], True),
}


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def verdict(value, target) -> str:
    if target is None or not isinstance(value, (int, float)):
        return ""
    op, bound = target
    met = value >= bound if op == AT_LEAST else value <= bound
    return f"{op} {bound:g}: {'met' if met else 'NOT met'}"


def lookup(data: dict, path: str):
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    args = parser.parse_args()
    names = args.only or [n for n, spec in BENCHMARKS.items() if spec[4]]
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine

    print(machine.line(), flush=True)
    started = time.perf_counter()
    ran, took = {}, {}
    for name in names:
        script, full, quick, _, _ = BENCHMARKS[name]
        if not (ROOT / "benchmarks" / script).exists():
            print(f"== {name}: {script} not present, skipped")
            continue
        print(f"== {name}: {script} {' '.join(quick if args.quick else full)}", flush=True)
        t = time.perf_counter()
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script),
                                 *(quick if args.quick else full)], cwd=ROOT)
        ran[name], took[name] = result.returncode, time.perf_counter() - t
        _mode_file(name).write_text("quick\n" if args.quick else "full\n")
        print(f"== {name}: {took[name]:.0f} s", flush=True)
    total = time.perf_counter() - started
    this = machine.kind()
    intro, sections = _read_sections()
    rows, earlier = [], []
    for name, spec in BENCHMARKS.items():
        path = _json_path(name)
        if name in ran and ran[name] != 0 or not path.exists():
            continue
        if name not in ran and _mode(name) != ("quick" if args.quick else "full"):
            continue  # a smoke test's figures never stand in a full table, nor the reverse
        if name not in ran:  # not run this time: its last result, marked with its date
            day = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
            earlier.append(f"{name} ({day})")
        data = json.loads(path.read_text())
        for label, key, target in spec[3]:
            value = lookup(data, key)
            if value is not None:
                rows.append(f"| {label} | {fmt(value)} | {verdict(value, target)} |")
    stamp = datetime.date.today().isoformat()
    mode = " (quick sizes)" if args.quick else ""
    again = f" Not run this time, from earlier runs: {', '.join(earlier)}." if earlier else ""
    timing = ", ".join(f"{n} {t:.0f} s" for n, t in took.items())
    command = " ".join(["benchmarks/run_all.py", *sys.argv[1:]])
    sections[this] = (f"## {this}\n\nRun {stamp}{mode} with `{command}` in {total / 60:.1f} "
                      f"min ({timing}); every ratio is measured side by "
                      f"side in one run.{again}\n\n| figure | value | target |\n|---|---|---|\n"
                      + "\n".join(rows) + "\n")
    if args.quick:  # a smoke test: its table goes to benchmarks/out, never into RESULTS.md
        target = OUT / "RESULTS-quick.md"
        target.write_text(sections[this])
    else:
        target = RESULTS
        text = intro or ("# Benchmark results\n\nWritten by `benchmarks/run_all.py`; one section "
                         "per machine kind.\n\n")
        RESULTS.write_text(text + "\n".join(s.rstrip("\n") + "\n" for s in sections.values()))
    print(sections[this])
    print(f"wrote {target} ({total / 60:.1f} min)")
    if any(code != 0 for code in ran.values()):
        failed = [n for n, code in ran.items() if code]
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


def _mode_file(name: str) -> Path:
    return OUT / f"{name}.mode"


def _mode(name: str) -> str:
    """``full`` or ``quick``: the sizes of the last run of benchmark ``name`` (``unknown``)."""
    try:
        return _mode_file(name).read_text().strip()
    except OSError:
        return "unknown"


def _json_path(name: str) -> Path:
    """Where a benchmark's figures are: its --out if given, else benchmarks/out/bench_<name>.json."""
    full = BENCHMARKS[name][1]
    if "--out" in full:
        return ROOT / full[full.index("--out") + 1]
    return OUT / f"bench_{name}.json"


def _read_sections() -> tuple[str, dict[str, str]]:
    """The text before the first section, and every section by its heading, in file order."""
    if not RESULTS.exists():
        return "", {}
    intro, sections, current, lines = [], {}, None, []
    for line in RESULTS.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            if current:
                sections[current] = "".join(lines)
            current, lines = line[3:].strip(), [line]
        elif current:
            lines.append(line)
        else:
            intro.append(line)
    if current:
        sections[current] = "".join(lines)
    return "".join(intro), sections


if __name__ == "__main__":
    main()
