"""Run every benchmark of the toolkit and write one table to benchmarks/RESULTS.md.

Each benchmark script prints its figures and writes benchmarks/out/<name>.json; this runner
runs them one after the other (each in its own process, side by side comparisons inside each
run), then writes the table with the machine it ran on. A section for another machine (e.g. a
GPU run) is kept when the table is rewritten: results are keyed by machine.
Usage: python benchmarks/run_all.py [--only NAME ...] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

# name -> (script, full arguments, quick arguments, rows: (label, json path, target)); a target
# is (comparison, value) from the issues, or None for a figure reported as measured.
AT_LEAST, AT_MOST = ">=", "<="
BENCHMARKS = {
    "audio": ("bench_audio.py", [], ["--clips", "16", "--repeats", "1"], [
        ("audio: per-clip loop fp32 (s)", "per_clip_loop_fp32_s", None),
        ("audio: pipeline fp32 (s)", "pipeline_fp32_s", None),
        ("audio: pipeline bf16 (s)", "pipeline_bf16_s", None),
        ("audio: fp32 speed-up vs per-clip loop (x)", "speedup_fp32", (AT_LEAST, 1.0)),
        ("audio: bf16 speed-up vs per-clip loop (x)", "speedup_bf16", (AT_LEAST, 2.5)),
        ("audio: bf16 vs fp32 utterance cosine, min", "bf16_cosine_min", (AT_LEAST, 0.99)),
        ("audio: re-run over a complete store (% of first run)", "rerun_percent_of_first",
         (AT_MOST, 3.0)),
    ]),
    "text": ("bench_text.py", [], ["--clips", "200"], [
        ("text: per-clip loop (s)", "per_clip_loop_s", None),
        ("text: pipeline (s)", "pipeline_s", None),
        ("text: speed-up vs per-clip loop (x)", "speedup", None),
    ]),
    "video": ("bench_video.py", [], ["--clips", "6"], [
        ("video: per-clip loop (s)", "per_clip_loop_s", None),
        ("video: pipeline (s)", "pipeline_s", None),
        ("video: speed-up vs per-clip loop (x)", "speedup", (AT_LEAST, 2.0)),
    ]),
    "heads": ("bench_heads.py", [], ["--epochs", "10"], [
        ("heads: per-fold DataLoader loop, 5 folds (s)", "baseline.seconds", None),
        ("heads: batched trainer, 5 folds (s)", "mer_heads.seconds", None),
        ("heads: speed-up (x)", "speedup", (AT_LEAST, 10.0)),
        ("heads: CV metric, baseline loop", "baseline.metric", None),
        ("heads: CV metric, batched trainer (>= the baseline's)", "mer_heads.metric", None),
        ("heads: 10 seeds / 1 seed time (x)", "seeds_time_ratio", (AT_MOST, 2.0)),
        ("heads: 10-seed floor on this machine, first-layer products + Adam alone (s)",
         "seeds_floor.seconds", None),
        ("heads: that floor / 1 seed's whole run (x)", "seeds_floor_ratio", None),
    ]),
    "semi": ("bench_semi.py", [], ["--quick"], [
        ("semi: one threshold round, 3,373 labelled + 73k unlabelled clips, 3 x 1024-d (s)",
         "fit_semi_s", None),
        ("semi: streamed fold predictions over the 73k pool (s)", "pool_predict_s", None),
        ("semi: pseudo-labelled clips added per fold", "added_per_fold", None),
        ("semi: generated arrays (GB)", "data_gb", None),
        ("semi: peak RSS (GB)", "peak_rss_gb", None),
    ]),
    "store": ("bench_store.py", [], ["--clips", "5000"], [
        ("store: all utterances of 73k clips from the store, cold cache (s)", "cold.store_s", None),
        ("store: same from one .npy per clip, cold cache (s)", "cold.npy_s", None),
        ("store: speed-up, cold cache (x)", "cold.speedup", (AT_LEAST, 10.0)),
        ("store: speed-up, warm cache (x)", "warm.speedup", None),
    ]),
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


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {gpu}"


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
    names = args.only or list(BENCHMARKS)
    OUT.mkdir(parents=True, exist_ok=True)
    ran = {}
    for name in names:
        script, full, quick, _ = BENCHMARKS[name]
        if not (ROOT / "benchmarks" / script).exists():
            print(f"== {name}: {script} not present, skipped")
            continue
        print(f"== {name}: {script}", flush=True)
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script),
                                 *(quick if args.quick else full)], cwd=ROOT)
        ran[name] = result.returncode
    this = machine()
    sections = _read_sections()
    rows, earlier = [], []
    for name in BENCHMARKS:
        path = OUT / f"bench_{name}.json"
        if name in ran and ran[name] != 0 or not path.exists():
            continue
        if name not in ran:  # not run this time: its last result, marked with its date
            day = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
            earlier.append(f"{name} ({day})")
        data = json.loads(path.read_text())
        for label, key, target in BENCHMARKS[name][3]:
            value = lookup(data, key)
            if value is not None:
                rows.append(f"| {label} | {fmt(value)} | {verdict(value, target)} |")
    stamp = datetime.date.today().isoformat()
    mode = " (quick sizes)" if args.quick else ""
    again = f" Not run this time, from earlier runs: {', '.join(earlier)}." if earlier else ""
    sections[this] = (f"## {this}\n\nRun {stamp}{mode} with `make bench`; every ratio is measured "
                      f"side by side in one run.{again}\n\n| figure | value | target |\n|---|---|---|\n"
                      + "\n".join(rows) + "\n")
    text = "# Benchmark results\n\nWritten by `benchmarks/run_all.py`; one section per machine.\n\n"
    RESULTS.write_text(text + "\n".join(sections[k] for k in sorted(sections)))
    print(f"wrote {RESULTS}")
    if any(code != 0 for code in ran.values()):
        failed = [n for n, code in ran.items() if code]
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


def _read_sections() -> dict[str, str]:
    if not RESULTS.exists():
        return {}
    sections, current, lines = {}, None, []
    for line in RESULTS.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            if current:
                sections[current] = "".join(lines)
            current, lines = line[3:].strip(), [line]
        elif current:
            lines.append(line)
    if current:
        sections[current] = "".join(lines)
    return sections


if __name__ == "__main__":
    main()
