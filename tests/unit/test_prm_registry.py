"""PRM spec strings: what each builds, and clear errors for bad specs (before any model loads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.errors import ConfigError
from arbitrage.prm.arithmetic import ArithmeticVerifier
from arbitrage.prm.judge import JUDGE_PROMPTS, JudgePrompt, resolve_prompt
from arbitrage.prm.registry import ScorerOptions, load_scorer
from arbitrage.prm.remote import RemoteScorer


def test_arith_and_http_specs() -> None:
    assert isinstance(load_scorer("arith"), ArithmeticVerifier)
    scorer = load_scorer("http:http://127.0.0.1:9/v1#Qwen/Qwen2.5-Math-PRM-7B")
    assert isinstance(scorer, RemoteScorer)
    assert scorer.base_url == "http://127.0.0.1:9" and scorer.model == "Qwen/Qwen2.5-Math-PRM-7B"
    scorer.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "Empty PRM spec"),
        ("nope:x", "Unknown PRM 'nope:x'"),
        ("arith:x", "takes no argument"),
        ("judge:", "needs a model"),
        ("judge:smollm2-135m#nope", "Unknown judge prompt 'nope'"),
        ("http:http://host:8000", "http:URL#MODEL"),
        ("http:ftp://host#m", "Not an http(s) URL"),
        ("hf:", "needs a checkpoint folder"),
        ("mc:smollm2-135m", "need gold answers"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_scorer(spec, ScorerOptions())


def test_judge_prompts(tmp_path: Path) -> None:
    assert resolve_prompt(None) is JUDGE_PROMPTS["basic"]
    assert set(JUDGE_PROMPTS) >= {"basic", "strict", "fewshot", "recompute"}
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"system": None, "head": "Q: {question}\n", "step": "- {text}\n",
                                  "ask": "Step {n} right? Yes or No."}))  # fmt: skip
    prompt = resolve_prompt(str(custom))
    assert prompt == JudgePrompt("mine", None, "Q: {question}\n", "- {text}\n", "Step {n} right? Yes or No.")
    custom.write_text(json.dumps({"head": "no question", "step": "{text}", "ask": "?", "system": None}))
    with pytest.raises(ConfigError, match="must contain"):
        resolve_prompt(str(custom))
    custom.write_text(json.dumps({"colour": "red"}))
    with pytest.raises(ConfigError, match="unknown keys"):
        resolve_prompt(str(custom))
