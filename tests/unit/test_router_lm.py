"""The lm router on a tiny randomly initialised transformer, on CPU: fine-tuning, scoring, input text, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arbitrage.errors import RouterError
from arbitrage.router.base import RouterExample
from arbitrage.router.data import read_pairs
from arbitrage.router.lm import LMOptions, LMRouter
from arbitrage.router.store import load_router, save_router
from arbitrage.router.train import TrainOptions, train_router
from tests.router_synth import synthetic_pairs, write_pairs
from tests.router_tiny_lm import tiny_backbone

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def text_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("pairs") / "text"
    return read_pairs(write_pairs(folder, synthetic_pairs(questions=60, steps=4, signal="text")))


def lm_options(backbone: str, **changes: object) -> TrainOptions:
    lm = LMOptions(
        backbone=backbone, epochs=4, batch_size=16, learning_rate=2e-3, max_length=64, device="cpu"
    )
    return TrainOptions(kind="lm", lm=lm, **changes)  # type: ignore[arg-type]


def test_lm_router_learns_a_text_signal_on_cpu(text_rows: list[dict], tmp_path: Path) -> None:
    backbone = str(tiny_backbone(tmp_path / "llama", "llama"))
    trained = train_router(text_rows, lm_options(backbone))
    info = trained.router.config()
    assert info["model_type"] == "llama" and info["train_steps"] > 0
    assert info["train_loss_last"] < info["train_loss_first"]
    assert trained.metrics.roc_auc is not None and trained.metrics.roc_auc > 0.75
    assert all(0.0 <= s <= 1.0 for s in trained.val_scores)
    # save, load on CPU, same scores
    path = save_router(tmp_path / "router", trained.router, trained.config, trained.split)
    assert (path / "model" / "config.json").is_file()
    loaded = load_router(path, device="cpu")
    assert loaded.kind == "lm" and loaded.router.annotate
    examples = [RouterExample.from_pair(r) for r in text_rows[:8]]
    assert np.allclose(loaded.router.score_batch(examples), trained.router.score_batch(examples), atol=1e-5)


@pytest.mark.parametrize("classes", [2, 10])
def test_lm_router_on_an_encoder_backbone(text_rows: list[dict], tmp_path: Path, classes: int) -> None:
    backbone = str(tiny_backbone(tmp_path / "bert", "bert"))
    lm = LMOptions(backbone=backbone, max_steps=3, device="cpu", max_length=64)
    trained = train_router(text_rows, TrainOptions(kind="lm", lm=lm, classes=classes, annotate=False))
    assert trained.router.scheme.num_classes == classes
    assert trained.metrics.rows == len(trained.val_scores) > 0
    assert not trained.router.annotate


def test_input_text_tags_history_only_when_annotated(text_rows: list[dict], tmp_path: Path) -> None:
    backbone = str(tiny_backbone(tmp_path / "bert", "bert"))
    lm = LMOptions(backbone=backbone, max_steps=1, device="cpu")
    router = train_router(text_rows, TrainOptions(kind="lm", lm=lm, annotate=True)).router
    assert isinstance(router, LMRouter)
    row = next(r for r in text_rows if r["step_index"] == 3)
    example = RouterExample.from_pair(row)
    text = router.format(example)
    assert text.startswith(f"Question: {row['question']}")
    for step, role in zip(row["context"], row["history"], strict=True):
        assert f"[{role}] {step}" in text
    assert text.endswith(f"Draft step: {row['z_d']}")
    router.annotate = False
    plain = router.format(example)
    assert "[draft]" not in plain and "[target]" not in plain and row["context"][0] in plain


def test_long_inputs_are_fitted_to_max_length(text_rows: list[dict], tmp_path: Path) -> None:
    backbone = str(tiny_backbone(tmp_path / "bert", "bert"))
    lm = LMOptions(backbone=backbone, max_steps=1, device="cpu", max_length=40)
    router = train_router(text_rows, TrainOptions(kind="lm", lm=lm)).router
    assert isinstance(router, LMRouter)
    row = next(r for r in text_rows if r["step_index"] == 3)
    text = router.format(RouterExample.from_pair(row))
    assert len(router.tokenizer(text)["input_ids"]) <= 40
    assert "Draft step:" in text and text.startswith("Question:")
    assert "..." in text  # older steps gave way to the newest ones and the draft step
    assert row["context"][0] not in text


def test_lm_errors(tmp_path: Path, text_rows: list[dict]) -> None:
    with pytest.raises(RouterError, match="needs --backbone"):
        train_router(text_rows, TrainOptions(kind="lm"))
    with pytest.raises(RouterError, match=r"Backbone not found: .* or a named model: smollm2-135m"):
        train_router(text_rows, TrainOptions(kind="lm", lm=LMOptions(backbone=str(tmp_path / "none"))))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RouterError, match="not a Hugging Face model folder"):
        train_router(
            text_rows, TrainOptions(kind="lm", lm=LMOptions(backbone=str(tmp_path / "empty"), device="cpu"))
        )
    with pytest.raises(RouterError, match="--max-length"):
        LMOptions(max_length=4)
    with pytest.raises(RouterError, match="Unknown --device"):
        train_router(
            text_rows, TrainOptions(kind="lm", lm=LMOptions(backbone=str(tmp_path / "empty"), device="tpu"))
        )


def test_head_only_training_on_cached_features(text_rows: list[dict], tmp_path: Path) -> None:
    """train_layers=0 on a decoder: the backbone stays as it was, the head learns from cached vectors."""
    import torch

    # a random backbone's frozen features carry the last token best: end the steps to escalate with "hmm"
    rows = [{**r, "z_d": r["z_d"] + (" hmm" if r["y"] else "")} for r in text_rows]
    backbone = str(tiny_backbone(tmp_path / "llama", "llama"))
    lm = LMOptions(
        backbone=backbone, epochs=3, max_length=64, device="cpu", train_layers=0, head_learning_rate=5e-2
    )
    trained = train_router(rows, TrainOptions(kind="lm", lm=lm))
    router = trained.router
    assert isinstance(router, LMRouter)
    info = router.config()
    assert info["cached_features"] is True and info["train_steps"] == 300
    assert info["trainable_parameters"] == 32 * 2  # the llama head: hidden 32 -> 2 classes, no bias
    assert info["train_loss_last"] < info["train_loss_first"]
    assert trained.metrics.roc_auc is not None and trained.metrics.roc_auc > 0.9
    # the backbone's weights are untouched: they equal a fresh load of the same folder
    from arbitrage.router.lm_backbone import load_classifier

    _, fresh = load_classifier(Path(backbone), 2, "cpu")
    block = dict(router.model.named_parameters())
    for name, param in fresh.named_parameters():
        if not name.startswith("score"):
            assert torch.equal(param, block[name]), name
    # saved and reloaded like any lm router
    path = save_router(tmp_path / "router", router, trained.config, trained.split)
    loaded = load_router(path, device="cpu")
    examples = [RouterExample.from_pair(r) for r in rows[:8]]
    assert np.allclose(loaded.router.score_batch(examples), router.score_batch(examples), atol=1e-5)


def test_top_blocks_training_freezes_the_rest(text_rows: list[dict], tmp_path: Path) -> None:
    from arbitrage.router.lm_backbone import freeze_below, load_classifier

    _, model = load_classifier(tiny_backbone(tmp_path / "llama", "llama"), 2, "cpu")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == len(list(model.parameters()))
    freeze_below(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "score.weight" in trainable and "model.norm.weight" in trainable
    assert any(n.startswith("model.layers.1.") for n in trainable)
    assert not any(n.startswith("model.layers.0.") or "embed" in n for n in trainable)
    freeze_below(model, 0)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"score.weight"}
    # an encoder's head is not one linear layer for every model; the bert head falls back to training
    # with a frozen backbone and still works
    backbone = str(tiny_backbone(tmp_path / "bert", "bert"))
    lm = LMOptions(backbone=backbone, max_steps=2, max_length=64, device="cpu", train_layers=1)
    trained = train_router(text_rows, TrainOptions(kind="lm", lm=lm))
    assert trained.router.config()["trainable_parameters"] < trained.router.config()["parameters"]
    with pytest.raises(RouterError, match="--train-layers"):
        LMOptions(train_layers=-1)
