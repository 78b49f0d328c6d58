"""HF PRM formats on tiny randomly initialised transformers models built here (no hub download).

Checks, per format: the exact input text, that rewards are read at the step-tag positions (compared
with a manual forward pass), one reward per step in [0, 1], causality (a later step never changes an
earlier step's reward), batching equal to one-by-one scoring, and loading a checkpoint folder written in
the published layout (weights named as in the real checkpoints, format detected from config.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from arbitrage.errors import ConfigError, ModelFileError, ScorerError  # noqa: E402
from arbitrage.prm.hf import (  # noqa: E402
    QWEN_PRM_SYSTEM,
    HFStepScorer,
    ShepherdModel,
    TrunkWithHead,
    detect_format,
    load_hf_prm,
    shepherd_candidates,
    shepherd_tag_id,
    shepherd_text,
)
from arbitrage.prm.registry import load_scorer  # noqa: E402

QUESTION = "Tom has 3 apples and buys 5 more . How many apples ?"
STEPS = ["He buys 5 apples .", "So 3 + 5 = 8 apples .", "The answer is 8 ."]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<s>", "</s>", "<pad>", "[UNK]", "<|im_start|>", "<|im_end|>", "<extra_0>"]


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (the Qwen2 tokenizer's kind) trained on the test texts, with the PRMs' specials."""
    corpus = [QUESTION, *STEPS, QWEN_PRM_SYSTEM, "system user assistant Step 1: 2: 3: + - ки ки ки\n\n"] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="[UNK]"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<extra_0>"]})
    fast.chat_template = CHATML
    return fast


def tiny_qwen_config(tokenizer: PreTrainedTokenizerFast, arch: str) -> Qwen2Config:
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    config.architectures = [arch]
    return config


def write_trunk_checkpoint(folder: Path, kind: str) -> tuple[TrunkWithHead, Any]:
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    arch = "Qwen2ForPrmModel" if kind == "skywork" else "Qwen2ForProcessRewardModel"
    config = tiny_qwen_config(tokenizer, arch)
    model = TrunkWithHead.from_config(config, kind).eval()
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == "skywork":  # the published Skywork checkpoint also holds the LM head
        state["lm_head.weight"] = torch.randn(config.vocab_size, config.hidden_size)
    save_file(state, str(folder / "model.safetensors"))
    config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return model, AutoTokenizer.from_pretrained(str(folder))  # as a user loads it (Qwen2's tokenizer class)


def manual_rewards(model: TrunkWithHead, ids: list[int], positions: list[int]) -> list[float]:
    with torch.inference_mode():
        t = torch.tensor([ids])
        hidden = model.trunk(input_ids=t).last_hidden_state[0]
        if model.kind == "skywork":
            values = torch.sigmoid(model.head.summary(hidden).squeeze(-1))
            return [float(values[p]) for p in positions]
        probs = torch.softmax(model.head(hidden), dim=-1)
        return [float(probs[p, 1]) for p in positions]


@pytest.mark.parametrize("kind", ["skywork", "qwen"])
def test_trunk_formats_read_rewards_at_step_tags(tmp_path: Path, kind: str) -> None:
    model, tokenizer = write_trunk_checkpoint(tmp_path / kind, kind)
    scorer = HFStepScorer(model, tokenizer, kind, "tiny")
    encoded = scorer.encode(QUESTION, STEPS)
    text = tokenizer.decode(encoded.input_ids)
    if kind == "skywork":
        assert text == "<s>" + QUESTION + "\n" + "".join(s + "\n" for s in STEPS)
        tag = tokenizer.encode("\n", add_special_tokens=False)[-1]
    else:
        expected = (
            f"<|im_start|>system\n{QWEN_PRM_SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
            f"<|im_start|>assistant\n{'<extra_0>'.join(STEPS)}<extra_0><|im_end|>\n"
        )
        assert text == expected
        tag = tokenizer.convert_tokens_to_ids("<extra_0>")
    tags = [i for i, t in enumerate(encoded.input_ids) if t == tag]
    assert encoded.positions == (
        tags[1:] if kind == "skywork" else tags
    )  # skywork: the question's "\n" is not a step
    result = scorer.score(QUESTION, STEPS)
    assert len(result.rewards) == len(STEPS) and result.first == 0
    assert all(0.0 <= r <= 1.0 for r in result.rewards)
    assert result.rewards == pytest.approx(
        manual_rewards(model, encoded.input_ids, encoded.positions), abs=1e-6
    )
    # causal: appending a step leaves the earlier steps' rewards unchanged
    shorter = scorer.score(QUESTION, STEPS[:2])
    assert shorter.rewards == pytest.approx(result.rewards[:2], abs=1e-5)
    assert shorter.last != pytest.approx(result.last, abs=1e-9)


@pytest.mark.parametrize("kind", ["skywork", "qwen"])
def test_batching_equals_one_by_one(tmp_path: Path, kind: str) -> None:
    model, tokenizer = write_trunk_checkpoint(tmp_path / kind, kind)
    scorer = HFStepScorer(model, tokenizer, kind, "tiny", batch_size=2)
    items = [(QUESTION, STEPS[:1]), (QUESTION, STEPS), (QUESTION, STEPS[:2])]
    batched = scorer.score_batch(items)
    assert [len(r) for r in batched] == [1, 3, 2]
    for (q, steps), rewards in zip(items, batched, strict=True):
        assert rewards == pytest.approx(scorer.score(q, steps).rewards, abs=1e-5)


@pytest.mark.parametrize("kind", ["skywork", "qwen"])
def test_checkpoint_folder_loads_in_detected_format(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / kind
    model, tokenizer = write_trunk_checkpoint(folder, kind)
    assert detect_format(folder) == kind
    scorer = load_scorer(f"hf:{folder}")
    assert scorer.name == f"hf({kind}, {kind})"
    reference = HFStepScorer(model, tokenizer, kind, "tiny")
    assert scorer.score(QUESTION, STEPS).rewards == pytest.approx(
        reference.score(QUESTION, STEPS).rewards, abs=1e-5
    )


def write_shepherd_checkpoint(folder: Path) -> tuple[Qwen2ForCausalLM, Any]:
    """Math-Shepherd is a plain causal LM: a tiny Qwen2ForCausalLM here (detected as shepherd)."""
    torch.manual_seed(1)
    tokenizer = make_tokenizer()
    lm = Qwen2ForCausalLM(tiny_qwen_config(tokenizer, "Qwen2ForCausalLM")).eval()
    lm.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return lm, AutoTokenizer.from_pretrained(str(folder))


def test_shepherd_format_reads_plus_over_minus_at_tags(tmp_path: Path) -> None:
    lm, tokenizer = write_shepherd_checkpoint(tmp_path / "shepherd")
    good, bad = shepherd_candidates(tokenizer)
    assert tokenizer.decode([good]).strip() == "+" and tokenizer.decode([bad]).strip() == "-"
    scorer = HFStepScorer(ShepherdModel(lm, good, bad), tokenizer, "shepherd", "tiny")
    encoded = scorer.encode(QUESTION, STEPS)
    assert encoded.input_ids == tokenizer.encode(shepherd_text(QUESTION, STEPS))
    assert shepherd_text(QUESTION, STEPS) == (
        f"{QUESTION} Step 1: {STEPS[0]} ки\nStep 2: {STEPS[1]} ки\nStep 3: {STEPS[2]} ки"
    )
    tag = shepherd_tag_id(tokenizer)
    assert tokenizer.decode([tag]).strip().endswith("и")
    assert encoded.positions == [i for i, t in enumerate(encoded.input_ids) if t == tag]
    with torch.inference_mode():
        logits = lm(input_ids=torch.tensor([encoded.input_ids])).logits[0]
    expected = [float(torch.softmax(logits[p, [good, bad]], dim=-1)[0]) for p in encoded.positions]
    assert scorer.score(QUESTION, STEPS).rewards == pytest.approx(expected, abs=1e-6)
    loaded = load_scorer(f"hf:{tmp_path / 'shepherd'}")  # LlamaForCausalLM: detected as Math-Shepherd
    assert loaded.score(QUESTION, STEPS).rewards == pytest.approx(expected, abs=1e-5)


def test_step_containing_the_tag_is_a_clear_error(tmp_path: Path) -> None:
    model, tokenizer = write_trunk_checkpoint(tmp_path / "q", "qwen")
    scorer = HFStepScorer(model, tokenizer, "qwen", "tiny")
    assert (
        len(scorer.score(QUESTION, ["So 3 + 5 <extra_0> = 8 apples ."]).rewards) == 1
    )  # the tag is stripped
    lm, tok = write_shepherd_checkpoint(tmp_path / "s")
    bad = HFStepScorer(ShepherdModel(lm, *shepherd_candidates(tok)), tok, "shepherd", "tiny")
    with pytest.raises(ScorerError, match="reward positions"):
        bad.encode("How many ки apples ?", STEPS)


def test_bad_folders_and_formats(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_hf_prm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match=r"no config\.json"):
        load_hf_prm(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ConfigError, match="Cannot tell the PRM format"):
        load_hf_prm(tmp_path / "bert")
    with pytest.raises(ConfigError, match="Unknown HF PRM format"):
        load_hf_prm(tmp_path / "bert", "nope")
