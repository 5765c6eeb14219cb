"""A tiny chat model made on the spot for the training tests: random weights, a byte-level BPE tokenizer trained
on the given texts, and a ChatML chat template. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

# The ChatML template of the Qwen2.5 family, reduced to what the IBEX examples use.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_tokenizer(texts: list[str], vocab_size: int = 400, chat_template: str | None = CHATML):
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def make_model(folder: Path, texts: list[str], *, context: int = 512, zero_head: bool = False,
               chat_template: str | None = CHATML, seed: int = 0, init_range: float = 0.02,
               vocab_size: int = 400) -> Path:
    """Save a tiny Qwen2-architecture model and its tokenizer into folder. zero_head: the output layer is all
    zeros, so every next token is equally likely (log V nats each), a model whose likelihoods are known."""
    tokenizer = make_tokenizer(texts, vocab_size=vocab_size, chat_template=chat_template)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context, tie_word_embeddings=False,
        initializer_range=init_range,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    if zero_head:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
