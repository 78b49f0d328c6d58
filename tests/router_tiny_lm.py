"""A tiny randomly initialised transformer backbone, built in the test (never downloaded)."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "question ann has apples and buys more how many now step we add hmm wait maybe draft target "
    "[draft] [target] : + = . ? ..."
)


def tiny_backbone(folder: Path, arch: str = "bert", extra_texts: tuple[str, ...] = ()) -> Path:
    """Save a 2-layer, 32-wide ``arch`` ("bert" or "llama") model and a word-level tokenizer to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[EOS]"])
    tok.train_from_iterator([WORDS, "0 1 2 3 4 5 6 7 8 9", *extra_texts], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", eos_token="[EOS]")  # fmt: skip
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=256)  # fmt: skip
    if arch == "bert":
        model = BertModel(BertConfig(vocab_size=len(fast), **size))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), num_key_value_heads=2, **size))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
