"""hf: decoder-only LLMs as text encoders, on tiny random checkpoints of each family saved with
save_pretrained and a tiny byte-level BPE tokenizer trained here (no weights from a hub)."""

from pathlib import Path

import numpy as np
import pytest

from features.encoders.tiny_models import LLM_FAMILIES, SENTENCES, make_tiny_llm
from mer_features.decode.inputs import TextInput
from mer_features.encoders import create_encoder
from mer_features.encoders.hf_llm import parameter_count
from mer_features.errors import ClipError, EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


PROMPT = 'This sentence: "{text}" means in one word:"'


@pytest.fixture(scope="module")
def llms(tmp_path_factory: pytest.TempPathFactory):
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            made[family] = make_tiny_llm(tmp_path_factory.mktemp(family), family)
        return made[family]

    return get


def items(texts=SENTENCES):
    return [TextInput(f"t{i}", t) for i, t in enumerate(texts)]


def reference(folder: Path, text: str, prompt: str | None = None):
    """What the model gives for one text alone, with transformers only: hidden states of the
    whole input (tuple of (T, dim)), and which tokens are the text's own."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    full = text if prompt is None else prompt.replace("{text}", text)
    start = 0 if prompt is None else prompt.index("{text}")
    enc = tokenizer(full, return_offsets_mapping=True, return_special_tokens_mask=True)
    own = np.array([not s and b < start + len(text) and e > start and e > b
                    for (b, e), s in zip(enc["offset_mapping"], enc["special_tokens_mask"])])
    with torch.no_grad():
        out = model(torch.tensor([enc["input_ids"]]), output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states], own


@pytest.mark.slow
@pytest.mark.parametrize("family", LLM_FAMILIES)
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_batched_equals_one_by_one_and_the_model_alone(llms, family: str, pooling: str):
    """Right padding, positions from 0: each text's features are what the model gives for it
    alone (within 1e-5, fp32 CPU products blocked by batch), frames are its own tokens."""
    folder = llms(family)
    enc = create_encoder("text", f"hf:{folder}", {"pooling": pooling, "layer": "last"})
    assert type(enc).__name__ == "HFLLMEncoder"
    enc.load("cpu", "fp32")
    batch = items()
    batched = enc.encode_batch(batch)
    for item, b in zip(batch, batched):
        (one,) = enc.encode_batch([item])
        assert np.abs(b.frames - one.frames).max() <= 1e-5
        assert np.abs(b.utterance - one.utterance).max() <= 1e-5
    states, own = reference(folder, SENTENCES[2])
    out = batched[2]
    assert out.frames.shape == (own.sum(), 32) and out.info == {"tokens": int(own.sum())}
    np.testing.assert_allclose(out.frames, states[-1][own], atol=1e-5)
    expected = states[-1][own].mean(0) if pooling == "mean" else states[-1][-1]
    np.testing.assert_allclose(out.utterance, expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_prompt_template_frames_are_the_texts_tokens_and_last_is_the_prompts_end(llms, family):
    folder = llms(family)
    enc = create_encoder("text", f"hf:{folder}", {"pooling": "last", "prompt": PROMPT,
                                                  "layer": "last"})
    enc.load("cpu", "fp32")
    batch = items()
    outs = enc.encode_batch(batch)
    for item, out in zip(batch, outs):
        states, own = reference(folder, item.text, PROMPT)
        assert 0 < own.sum() < len(own)  # the prompt's tokens are not frames
        np.testing.assert_allclose(out.frames, states[-1][own], atol=1e-5)
        np.testing.assert_allclose(out.utterance, states[-1][-1], atol=1e-5)
    mean = create_encoder("text", f"hf:{folder}", {"prompt": PROMPT, "layer": "last"})
    mean.load("cpu", "fp32")
    (out,) = mean.encode_batch(batch[:1])
    states, own = reference(folder, batch[0].text, PROMPT)
    np.testing.assert_allclose(out.utterance, states[-1][own].mean(0), atol=1e-5)


@pytest.mark.slow
def test_layers_by_name_and_index(llms):
    folder = llms("llama")
    outs = {}
    for layer in ("last", "-1", "0", "1", "mean-last-4", "all"):
        enc = create_encoder("text", f"hf:{folder}", {"layer": layer})
        enc.load("cpu", "fp32")
        (outs[layer],) = enc.encode_batch(items()[:1])
    states, own = reference(folder, SENTENCES[0])
    np.testing.assert_array_equal(outs["last"].utterance, outs["-1"].utterance)
    np.testing.assert_allclose(outs["0"].utterance, states[0][own].mean(0), atol=1e-5)
    np.testing.assert_allclose(outs["1"].utterance, states[1][own].mean(0), atol=1e-5)
    np.testing.assert_allclose(outs["mean-last-4"].frames,
                               np.mean(states[-4:], axis=0)[own], atol=1e-5)
    assert outs["all"].utterance.shape == (4, 32)  # embeddings + 3 layers
    np.testing.assert_allclose(outs["all"].utterance[-1], outs["last"].utterance, atol=1e-6)
    with pytest.raises(EncoderError, match="must be an index from -4 to 3"):
        create_encoder("text", f"hf:{folder}", {"layer": "4"})
    with pytest.raises(EncoderError, match="or a hidden-state index"):
        create_encoder("text", f"hf:{folder}", {"layer": "middle"})


def test_long_texts_keep_the_whole_prompt(llms):
    folder = llms("llama")
    options = {"prompt": PROMPT, "pooling": "last", "layer": "last"}
    prompt_tokens = len(create_encoder("text", f"hf:{folder}", options)._encode_one("")[0])
    with pytest.raises(EncoderError, match=f"takes {prompt_tokens} tokens, which leaves none"):
        create_encoder("text", f"hf:{folder}", {**options, "max_length": prompt_tokens})
    limit = prompt_tokens + 8
    enc = create_encoder("text", f"hf:{folder}", {**options, "max_length": limit})
    enc.load("cpu", "fp32")
    long_text = " ".join(SENTENCES[:4])
    (out,) = enc.encode_batch([TextInput("long", long_text)])
    ids, content, total, truncated = enc._tokenize(long_text)
    assert truncated and len(ids) <= limit and out.info["truncated"] is True
    assert 0 < content.sum()
    assert out.info["tokens"] == total > content.sum() == len(out.frames)
    suffix = enc.tokenizer('" means in one word:"', add_special_tokens=False)["input_ids"]
    assert ids[-len(suffix):] == suffix  # the prompt's end is still there, read last


@pytest.mark.parametrize("options, words", [
    ({"pooling": "max"}, "pooling must be one of mean, last"),
    ({"prompt": "no placeholder"}, "prompt must hold '{text}' exactly once"),
    ({"max_length": "100000"}, "must be at most the model's limit of 256"),
    ({"pool_special_tokens": "true"}, "has no option.*pool_special_tokens"),
])
def test_bad_options_are_one_line(llms, options: dict, words: str):
    with pytest.raises(EncoderError, match=words) as e:
        create_encoder("text", f"hf:{llms('qwen2')}", options)
    assert "\n" not in str(e.value)


def test_text_with_no_tokens_fails_alone(llms):
    enc = create_encoder("text", f"hf:{llms('qwen2')}")
    enc.load("cpu", "fp32")
    bad, good = enc.encode_batch([TextInput("bad", ""), TextInput("ok", "Fine.")])
    assert isinstance(bad, ClipError) and "gives no tokens" in str(bad)
    assert good.frames.shape[0] > 0


def test_custom_code_runs_only_with_trust_remote_code(llms, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """A checkpoint with its own modelling code (auto_map): refused with one line, then run
    with -o trust_remote_code=true, its code hashed into the fingerprint."""
    import json
    import shutil

    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = tmp_path / "custom"
    shutil.copytree(llms("llama"), folder)
    (folder / "configuration_custom.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n"
        "    model_type = 'custom-llama'\n")
    (folder / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM, LlamaModel\n\n"
        "from .configuration_custom import CustomConfig\n\n\n"
        "class CustomModel(LlamaModel):\n    config_class = CustomConfig\n\n\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-llama", architectures=["CustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModel": "modeling_custom.CustomModel",
                            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="ships its own modelling code.*trust_remote_code=true") as e:
        create_encoder("text", f"hf:{folder}")
    assert "\n" not in str(e.value)
    enc = create_encoder("text", f"hf:{folder}", {"trust_remote_code": "true", "layer": "last"})
    assert set(enc.weights_identity()["code"]) == {"configuration_custom.py", "modeling_custom.py"}
    enc.load("cpu", "fp32")
    assert type(enc.model).__name__ == "CustomModel"
    plain = create_encoder("text", f"hf:{llms('llama')}", {"layer": "last"})
    plain.load("cpu", "fp32")
    (a,), (b,) = enc.encode_batch(items()[:1]), plain.encode_batch(items()[:1])
    np.testing.assert_allclose(a.utterance, b.utterance, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gemma"])
def test_parameter_count_from_the_config(llms, family: str):
    """The figure docs/encoders.md gives for 7-13B models comes from this count."""
    from transformers import AutoConfig, AutoModel

    folder = llms(family)
    model = AutoModel.from_pretrained(folder)
    assert parameter_count(AutoConfig.from_pretrained(folder)) == model.num_parameters()


def test_extract_text_store_with_an_llm(llms, tmp_path: Path):
    from synthetic_media import write_manifest
    from mer_features.pipeline.extraction import extract
    from mer_features.store import FeatureStore

    rows = [{"name": f"t{i}", "text": t, "discrete": "happy"} for i, t in enumerate(SENTENCES)]
    rows.append({"name": "empty", "text": "", "discrete": "sad"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    summary = extract(manifest, tmp_path / "llm.h5", modality="text",
                      encoder=f"hf:{llms('gemma')}", encoder_options={"pooling": "last"},
                      device="cpu", progress=False, log=lambda m: None)
    assert summary.done == len(SENTENCES) and summary.empty == 1
    with FeatureStore(tmp_path / "llm.h5") as store:
        assert store.fields["compute_dtype"] == "fp32"
        assert store.fields["config"]["pooling"] == "last"
        assert store.utterances().shape == (len(SENTENCES) + 1, 32)
