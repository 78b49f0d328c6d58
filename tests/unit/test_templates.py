"""Client-side chat templates: the built-in names, Jinja files and tokenizer_config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.backends.templates import TEMPLATE_NAMES, PromptTemplate
from arbitrage.errors import ConfigError
from arbitrage.prompts import PromptStyle

STYLE = PromptStyle(system="Be brief.", user_template="Q: {question}")
NO_SYSTEM_JINJA = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_names() -> None:
    assert TEMPLATE_NAMES[0] == "chatml" and {"gemma", "plain"} <= set(TEMPLATE_NAMES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "chatml",
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nQ: 2+2?<|im_end|>\n<|im_start|>assistant\n",
        ),
        ("gemma", "<start_of_turn>user\nBe brief.\n\nQ: 2+2?<end_of_turn>\n<start_of_turn>model\n"),
        ("plain", "Question: Be brief.\n\nQ: 2+2?\nAnswer:\n"),
    ],
)
def test_builtin_templates(name: str, expected: str) -> None:
    assert PromptTemplate.load(name).render(STYLE, "2+2?") == expected


def test_chatml_without_system() -> None:
    text = PromptTemplate.load("chatml").render(PromptStyle(system=None, user_template="{question}"), "Hi")
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_jinja_file_folds_the_system_text_when_the_template_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "gemma.jinja"
    path.write_text(NO_SYSTEM_JINJA)
    text = PromptTemplate.load(str(path)).render(STYLE, "2+2?")
    assert text == "<start_of_turn>user\nBe brief.\n\nQ: 2+2?<end_of_turn>\n<start_of_turn>model\n"


def test_tokenizer_config_json(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer_config.json"
    template = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}{% endfor %}"
    )
    path.write_text(
        json.dumps({"chat_template": template, "bos_token": "<s>", "eos_token": {"content": "</s>"}})
    )
    # bos_token renders empty: the server adds BOS itself
    assert PromptTemplate.load(str(path)).render(STYLE, "x") == "[system]Be brief.</s>[user]Q: x</s>"


def test_named_templates_in_tokenizer_config(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(
        json.dumps(
            {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}
        )
    )
    assert PromptTemplate.load(str(path)).render(STYLE, "x") == "D"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps({"eos_token": "</s>"}), "has no chat_template"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_bad_tokenizer_configs(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        PromptTemplate.load(str(path))


def test_invalid_jinja(tmp_path: Path) -> None:
    path = tmp_path / "bad.jinja"
    path.write_text("{% for m in messages %}")
    with pytest.raises(ConfigError, match="Invalid Jinja"):
        PromptTemplate.load(str(path))


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match="Unknown chat template 'llama9'"):
        PromptTemplate.load("llama9")
