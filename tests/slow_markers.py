"""CPU seconds per test, and which tests break the ``slow`` marker's rule (pyproject.toml: "over
~1 s on 2 cores, or needs a fixture that is").

Wall-clock durations (``--durations``) grow with the machine's load; CPU seconds (this process,
all its threads, plus the child processes it waited for) do not, so the rule is checked on them.
As a pytest plugin it writes ``{test id: [cpu s, wall s, marked slow]}`` (setup, call and
teardown together) to the file named by $SLOW_MARKERS_OUT::

    SLOW_MARKERS_OUT=durations.json PYTHONPATH=.:tests .venv/bin/python -m pytest -p slow_markers tests
    .venv/bin/python tests/slow_markers.py durations.json [--threshold 1.0]

The second command lists the tests over the threshold that are not marked slow, then those
marked slow that took under a tenth of it (a slow test may be cheap because a module fixture it
needs was already set up by another test: check before unmarking one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import pytest

_rows: dict[str, list] = {}


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu(), time.perf_counter()
    yield
    _rows[item.nodeid] = [round(_cpu() - cpu, 3), round(time.perf_counter() - wall, 3),
                          item.get_closest_marker("slow") is not None]


def pytest_sessionfinish(session):
    out = os.environ.get("SLOW_MARKERS_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(_rows, f, indent=0)


def mismarked(rows: dict[str, list], threshold: float) -> tuple[list, list]:
    """(tests over ``threshold`` CPU seconds not marked slow, tests marked slow under a tenth
    of it), each as (cpu s, test id), slowest first."""
    unmarked = sorted(((cpu, name) for name, (cpu, _, slow) in rows.items()
                       if cpu > threshold and not slow), reverse=True)
    cheap = sorted(((cpu, name) for name, (cpu, _, slow) in rows.items()
                    if slow and cpu < threshold / 10), reverse=True)
    return unmarked, cheap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("durations", help="the file written with $SLOW_MARKERS_OUT")
    parser.add_argument("--threshold", type=float, default=1.0, help="CPU seconds (default 1)")
    args = parser.parse_args()
    with open(args.durations, encoding="utf-8") as f:
        rows = json.load(f)
    unmarked, cheap = mismarked(rows, args.threshold)
    total = sum(cpu for cpu, _, _ in rows.values())
    print(f"{len(rows)} tests, {total:.0f} CPU s in all")
    print(f"over {args.threshold:g} CPU s, not marked slow: {len(unmarked)}")
    for cpu, name in unmarked:
        print(f"  {cpu:7.2f}  {name}")
    print(f"marked slow, under {args.threshold / 10:g} CPU s: {len(cheap)}")
    for cpu, name in cheap:
        print(f"  {cpu:7.2f}  {name}")
    return 1 if unmarked else 0


if __name__ == "__main__":
    raise SystemExit(main())
