"""Tiny transformers models built inside the tests: no hub, a few hundred KB, built in well under a second.

- :func:`build_tokenizer`: a byte-level BPE trained on a small corpus, with a ChatML chat template and
  ``<|im_end|>`` as end of sequence. A blank line is its own pre-token, so ``"\\n\\n"`` is one token.
- :func:`build_random_model`: a randomly initialised 2-layer Llama (hidden size 32).
- :func:`build_chain_model`: the same architecture with its weights set so that greedy decoding after the
  ChatML prompt always writes ``"The answer."``, a blank line, ``"Done"`` and end of sequence: attention
  and MLP outputs are zeroed, so the next token depends only on the current one, and the embeddings and
  output rows encode that chain.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The answer.\n\nDone",
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Solve this step by step. Write each step as one short paragraph, separate steps with a blank line",
    "First step.\n\nSecond step.\n\nSo the answer is 8.",
]
CHAIN_TEXT = "The answer.\n\nDone"


def build_tokenizer(folder: Path) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf_tok.chat_template = CHATML
    folder.mkdir(parents=True, exist_ok=True)
    hf_tok.save_pretrained(folder)
    return hf_tok


def _config(tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def build_random_model(folder: Path, seed: int) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer(folder)
    torch.manual_seed(seed)
    LlamaForCausalLM(_config(tokenizer)).save_pretrained(folder)
    return folder


def build_chain_model(folder: Path) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer(folder)
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    chain = [*newline, *tokenizer(CHAIN_TEXT, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
    assert len(set(chain)) == len(chain) == 7, tokenizer.convert_ids_to_tokens(chain)
    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(tokenizer))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for i, (current, following) in enumerate(itertools.pairwise(chain)):
            model.model.embed_tokens.weight[current] = 0.0
            model.model.embed_tokens.weight[current, i] = 1.0
            model.lm_head.weight[following, i] = 20.0
    model.save_pretrained(folder)
    return folder
