"""Tiny random checkpoints of real architectures, written with save_pretrained, for the tests
of the hf: encoders (no weights from a hub)."""

from pathlib import Path


def make_tiny_whisper(folder: Path, n_mels: int = 80, safetensors: bool = True) -> Path:
    """A tiny random Whisper; ``safetensors=False`` keeps its weights as pytorch_model.bin only."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=100, d_model=32, encoder_layers=3, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=n_mels,
                           max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).eval().save_pretrained(folder)
    if not safetensors:  # transformers 5 writes safetensors only
        from safetensors.torch import load_file

        torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return folder


def make_tiny_qwen2_audio(folder: Path) -> Path:
    import torch
    from transformers import (Qwen2AudioConfig, Qwen2AudioEncoderConfig,
                              Qwen2AudioForConditionalGeneration, Qwen2Config)

    audio = Qwen2AudioEncoderConfig(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2,
                                    encoder_ffn_dim=64, d_model=32)
    text = Qwen2Config(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(1)
    Qwen2AudioForConditionalGeneration(Qwen2AudioConfig(
        audio_config=audio.to_dict(), text_config=text.to_dict(), audio_token_index=150)
    ).eval().save_pretrained(folder)
    return folder


SENTENCES = ("Kids are talking by the door.", "Dogs are sitting by the door.",
             "I can't believe you did that again, after everything we talked about!",
             "Honestly, this is the best news I've heard all year.", "Fine.",
             "We waited for hours and nobody came to tell us what was going on.",
             "你好，今天天气很好。", "Très bien, merci beaucoup.")


def make_tiny_tokenizer(bos: bool = True) -> object:
    """A byte-level BPE tokenizer (vocabulary < 300) trained on a few sentences, wrapped as a
    transformers fast tokenizer; ``bos`` adds <s> before every text (Llama, Gemma), else none
    (Qwen2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 4, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   model_max_length=512)


LLM_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "bloom")


def make_tiny_llm(folder: Path, family: str = "llama", seed: int = 0) -> Path:
    """A tiny random decoder-only LLM of ``family`` (ForCausalLM, saved with save_pretrained)
    and its tokenizer; Qwen2/Qwen3/BLOOM without a BOS token, the others with one."""
    import torch
    import transformers as t

    common = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kinds = {
        "llama": (t.LlamaConfig, t.LlamaForCausalLM, {}),
        "mistral": (t.MistralConfig, t.MistralForCausalLM, dict(sliding_window=None)),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM, {}),
        "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM, dict(head_dim=8)),
        "gemma": (t.GemmaConfig, t.GemmaForCausalLM, dict(head_dim=8)),
        "gemma2": (t.Gemma2Config, t.Gemma2ForCausalLM, dict(head_dim=8, sliding_window=4)),
        "bloom": (t.BloomConfig, t.BloomForCausalLM, dict(n_layer=3, n_head=4)),
    }
    config_cls, model_cls, extra = kinds[family]
    options = {**common, **extra}
    if family == "bloom":
        for key in ("intermediate_size", "num_key_value_heads", "max_position_embeddings",
                    "num_hidden_layers", "num_attention_heads"):
            options.pop(key)
    torch.manual_seed(seed)
    model_cls(config_cls(**options)).eval().save_pretrained(folder)
    make_tiny_tokenizer(bos=family not in ("qwen2", "qwen3", "bloom")).save_pretrained(folder)
    return folder
