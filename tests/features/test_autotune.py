"""The compute-path chooser's logic, with injected timings and outputs (never real timing)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mer_features import autotune

MACHINE = {"cpu": "Test CPU", "cpu_flags": "00", "flags_shown": ["avx2"], "torch": "2.x",
           "threads": 2, "device": "cpu"}
FIELDS = {"encoder": {"architecture": {"hidden_size": 32}}, "probe": {"clips": 2}}
PATHS = ["stock-fp32", "fast-fp32", "stock-bf16", "fast-bf16"]


def outputs_with_cosine(cos: float) -> np.ndarray:
    """Two rows whose least cosine to REFERENCE is ``cos``."""
    return np.array([[cos, math.sqrt(max(0.0, 1 - cos * cos))], [0.0, 1.0]])


REFERENCE = outputs_with_cosine(1.0)


class FakeProbe:
    """probe(path) -> (seconds, outputs) from tables; records every call."""

    def __init__(self, seconds: dict[str, float], cosine: dict[str, float] | None = None,
                 fails: tuple[str, ...] = ()):
        self.seconds, self.cosine, self.fails = seconds, cosine or {}, fails
        self.calls: list[str] = []

    def __call__(self, path: str):
        self.calls.append(path)
        if path in self.fails:
            raise RuntimeError(f"{path} cannot run here")
        return self.seconds[path], outputs_with_cosine(self.cosine.get(path, 1.0))


def run(probe, tmp_path, *, machine=MACHINE, fields=FIELDS, paths=PATHS, **kw):
    return autotune.measure(fields, paths, probe, machine=machine,
                            cache=tmp_path / "compute-paths.json", **kw)


def test_picks_the_fastest_accurate_path(tmp_path: Path):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.8, "stock-bf16": 0.5, "fast-bf16": 0.3})
    m = run(probe, tmp_path)
    assert probe.calls[0] == "stock-fp32"                       # the reference runs first
    assert m.choose(("fp32", "bf16")).path == "fast-bf16"
    assert m.choose(("fp32",)).path == "fast-fp32"
    assert m.choose(("bf16",), impls=("stock",)).path == "stock-bf16"
    assert m.trials["fast-bf16"].cosine == pytest.approx(1.0)


def test_rejects_a_faster_path_that_is_not_accurate(tmp_path: Path):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.8, "stock-bf16": 0.5, "fast-bf16": 0.3},
                      cosine={"fast-bf16": 0.99, "stock-bf16": 0.9995})
    m = run(probe, tmp_path)
    assert not m.trials["fast-bf16"].accurate and m.trials["stock-bf16"].accurate
    assert m.choose(("fp32", "bf16")).path == "stock-bf16"
    # asked for bf16 and none accurate: the fastest that ran, for the caller to warn about
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.8, "stock-bf16": 0.5, "fast-bf16": 0.3},
                      cosine={"fast-bf16": 0.9, "stock-bf16": 0.95})
    m = run(probe, tmp_path / "other")
    assert m.choose(("bf16",)).path == "fast-bf16"
    assert m.choose(("fp32", "bf16")).path == "fast-fp32"


def test_another_dtype_must_beat_the_reference_dtype_by_a_margin(tmp_path: Path):
    # bf16 5% faster than fp32 is within a busy machine's noise: fp32 (exact) stays
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.8, "stock-bf16": 0.9, "fast-bf16": 0.77})
    m = run(probe, tmp_path)
    assert m.choose(("fp32", "bf16")).path == "fast-fp32"
    assert m.choose(("bf16",)).path == "fast-bf16"              # asked for bf16: bf16
    # clearly faster (under DTYPE_MARGIN of fp32's time): bf16
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.8, "stock-bf16": 0.9, "fast-bf16": 0.7})
    assert run(probe, tmp_path / "b").choose(("fp32", "bf16")).path == "fast-bf16"
    # fp32 implementations compete without a margin (same numbers)
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.97, "stock-bf16": 5.0, "fast-bf16": 5.0})
    assert run(probe, tmp_path / "c").choose(("fp32", "bf16")).path == "fast-fp32"


def test_a_failing_path_is_never_chosen(tmp_path: Path):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.1}, fails=("fast-fp32",))
    m = run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"])
    assert m.trials["fast-fp32"].seconds is None and "cannot run here" in m.trials["fast-fp32"].error
    assert m.choose(("fp32",)).path == "stock-fp32"
    assert "fast-fp32 failed" in m.table()


def test_reference_failing_leaves_nothing_accurate(tmp_path: Path):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.5}, fails=("stock-fp32",))
    m = run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"])
    assert m.fastest(("fp32",)) is None
    assert m.trials["fast-fp32"].cosine is None
    assert m.choose(("fp32",)).path == "fast-fp32"  # ran, unchecked: the caller's fallback


def test_warm_up_then_best_timed_run_and_early_give_up(tmp_path: Path):
    times = {"stock-fp32": iter([5.0, 1.0, 1.2]), "fast-bf16": iter([30.0, 0.1])}
    calls = []

    def probe(path):
        calls.append(path)
        return next(times[path]), REFERENCE

    m = run(probe, tmp_path, paths=["stock-fp32", "fast-bf16"], max_runs=3, min_seconds=2.0)
    assert m.trials["stock-fp32"].seconds == 1.0                # warm-up (5.0) does not count
    assert calls.count("stock-fp32") == 3
    assert calls.count("fast-bf16") == 1                        # 30 s > 3 x 1 s: not run again
    assert m.trials["fast-bf16"].seconds == 30.0


def test_cached_per_machine_torch_and_shape(tmp_path: Path):
    seconds = {"stock-fp32": 1.0, "fast-fp32": 0.5, "stock-bf16": 9.0, "fast-bf16": 8.0}
    probe = FakeProbe(seconds)
    first = run(probe, tmp_path)
    n = len(probe.calls)
    again = run(probe, tmp_path)
    assert len(probe.calls) == n and again.cached and not first.cached
    assert again.key == first.key
    assert {k: t.seconds for k, t in again.trials.items()} == {k: t.seconds for k, t in first.trials.items()}
    for changed in ({**MACHINE, "cpu": "Other CPU"}, {**MACHINE, "cpu_flags": "ff"},
                    {**MACHINE, "torch": "3.0"}, {**MACHINE, "threads": 8}):
        before = len(probe.calls)
        other = run(probe, tmp_path, machine=changed)
        assert len(probe.calls) > before and not other.cached and other.key != first.key
    before = len(probe.calls)
    other = run(probe, tmp_path, fields={**FIELDS, "encoder": {"architecture": {"hidden_size": 64}}})
    assert len(probe.calls) > before and other.key != first.key
    # every entry stays in the one file
    data = json.loads((tmp_path / "compute-paths.json").read_text())
    assert len(data["entries"]) == 6
    # refresh measures again
    before = len(probe.calls)
    run(probe, tmp_path, refresh=True)
    assert len(probe.calls) > before


def test_paths_asked_for_later_are_added_to_the_entry(tmp_path: Path):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.5, "stock-bf16": 9.0, "fast-bf16": 8.0},
                      cosine={"fast-bf16": 0.99})
    fp32 = run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"])
    assert probe.calls and "fast-bf16" not in probe.calls
    probe.calls.clear()
    both = run(probe, tmp_path)                                  # bf16 too: only it is new
    assert not both.cached and both.key == fp32.key
    assert set(probe.calls) == {"stock-fp32", "stock-bf16", "fast-bf16"}  # reference again
    assert not both.trials["fast-bf16"].accurate and list(both.trials) == PATHS
    probe.calls.clear()
    for paths in (PATHS, ["stock-fp32", "fast-fp32"], ["stock-fp32", "fast-bf16"]):
        m = run(probe, tmp_path, paths=paths)
        assert m.cached and list(m.trials) == paths
    assert probe.calls == []
    assert run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"]).trials["fast-fp32"].seconds == 0.5


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[]", b'{"version": 1}',
                                     b'{"version": 1, "entries": {"KEY": {"order": ["x"]}}}',
                                     b'{"version": 1, "entries": []}', b'{"version": 99, "entries": {}}'])
def test_a_damaged_cache_file_is_measured_again_and_rewritten(tmp_path: Path, content: bytes):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.5})
    key = run(probe, tmp_path / "probe", paths=["stock-fp32", "fast-fp32"]).key
    cache = tmp_path / "compute-paths.json"
    cache.write_bytes(content.replace(b"KEY", key.encode()))
    m = run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"])
    assert not m.cached and m.choose(("fp32",)).path == "fast-fp32"
    assert key in json.loads(cache.read_text())["entries"]


def test_a_cached_entry_with_bad_numbers_is_measured_again(tmp_path: Path):
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.5})
    m = run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"])
    cache = tmp_path / "compute-paths.json"
    data = json.loads(cache.read_text())
    data["entries"][m.key]["trials"]["fast-fp32"]["seconds"] = "fast"
    cache.write_text(json.dumps(data))
    calls = len(probe.calls)
    assert not run(probe, tmp_path, paths=["stock-fp32", "fast-fp32"]).cached
    assert len(probe.calls) > calls


def test_an_unwritable_cache_only_costs_time(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    probe = FakeProbe({"stock-fp32": 1.0, "fast-fp32": 0.5})
    m = autotune.measure(FIELDS, ["stock-fp32", "fast-fp32"], probe, machine=MACHINE,
                         cache=blocker / "sub" / "compute-paths.json")
    assert m.choose(("fp32",)).path == "fast-fp32"
    m = autotune.measure(FIELDS, ["stock-fp32", "fast-fp32"], probe, machine=MACHINE, cache=False)
    assert not m.cached


def test_default_cache_follows_mer_features_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MER_FEATURES_CACHE", str(tmp_path / "c"))
    assert autotune.cache_file() == tmp_path / "c" / "compute-paths.json"


def test_min_cosine():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert autotune.min_cosine(a, a * 3) == pytest.approx(1.0)
    assert autotune.min_cosine(a, np.array([[1.0, 1.0], [0.0, 1.0]])) == pytest.approx(math.sqrt(0.5))
    assert autotune.min_cosine(a, a[:1]) == -1.0                     # shapes differ
    assert autotune.min_cosine(a, np.full_like(a, np.nan)) == -1.0   # not finite
    assert autotune.min_cosine(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0
    assert autotune.min_cosine(np.zeros((2, 4, 3)), np.ones((2, 4, 3))) == 0.0


def test_machine_fields_name_the_cpu_and_torch():
    import torch

    fields = autotune.machine_fields("cpu")
    assert fields["torch"] == torch.__version__ and fields["threads"] == torch.get_num_threads()
    assert fields["cpu"] and len(fields["cpu_flags"]) == 16


def test_path_names():
    assert autotune.path_name("fast", "bf16") == "fast-bf16"
    assert autotune.split_path("stock-fp32") == ("stock", "fp32")
    with pytest.raises(ValueError):
        autotune.measure(FIELDS, [], FakeProbe({}), machine=MACHINE, cache=False)
    with pytest.raises(ValueError):
        autotune.measure(FIELDS, ["fast-fp32"], FakeProbe({}), machine=MACHINE, cache=False,
                         reference="stock-fp32")
