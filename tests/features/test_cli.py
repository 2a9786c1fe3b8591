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
