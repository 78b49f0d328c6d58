"""The lm router on a real pretrained backbone: smollm2-135m's GGUF file, de-quantized by transformers, on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arbitrage.router.base import RouterExample
from arbitrage.router.data import read_pairs
from arbitrage.router.lm import LMOptions
from arbitrage.router.store import load_router, save_router
from arbitrage.router.train import TrainOptions, train_router
from tests.router_synth import synthetic_pairs, write_pairs

pytestmark = pytest.mark.slow
pytest.importorskip("gguf")
pytest.importorskip("accelerate")


def test_named_gguf_model_as_lm_router_backbone(tmp_path: Path) -> None:
    rows = read_pairs(write_pairs(tmp_path / "pairs", synthetic_pairs(questions=6, steps=3, signal="text")))
    lm = LMOptions(backbone="smollm2-135m", max_steps=1, batch_size=2, max_length=96, device="cpu")
    trained = train_router(rows, TrainOptions(kind="lm", lm=lm))
    info = trained.router.config()
    assert info["model_type"] == "llama" and info["parameters"] > 100_000_000
    assert info["backbone"] == "smollm2-135m" and info["backbone_path"].endswith(".gguf")
    assert all(0.0 <= s <= 1.0 for s in trained.val_scores)
    path = save_router(tmp_path / "router", trained.router, trained.config, trained.split)
    loaded = load_router(path, device="cpu")
    examples = [RouterExample.from_pair(r) for r in rows[:3]]
    assert np.allclose(loaded.router.score_batch(examples), trained.router.score_batch(examples), atol=1e-5)
