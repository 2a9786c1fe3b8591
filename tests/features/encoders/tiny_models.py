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
