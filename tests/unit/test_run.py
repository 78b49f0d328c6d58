"""The run context and the Python API: what a Run loads, that it closes everything (also when a load
fails), that the PRM loads only for policies that need one, and the README's ten lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import arbitrage
from arbitrage.backends.loader import GeneratorOptions
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.errors import ConfigError, ModelNotFoundError, PolicyOptionError
from arbitrage.policies.reward import RSDPolicy
from arbitrage.prm.base import StepScores
from arbitrage.prm.registry import ScorerOptions

DRAFT = ["d: 3 + 4 = 8", "d: so \\boxed{8}"]
TARGET = ["t: 3 + 4 = 7", "t: so \\boxed{7}"]


class Models:
    """A model loader for Run: scripted generators by spec; "missing" fails like an unknown model."""

    def __init__(self) -> None:
        self.loaded: list[ScriptedGenerator] = []

    def __call__(self, spec: str, options: GeneratorOptions) -> ScriptedGenerator:
        if spec == "missing":
            raise ModelNotFoundError("Unknown model 'missing'")
        model = ScriptedGenerator(spec, DRAFT if spec == "draft" else TARGET)
        self.loaded.append(model)
        return model


class Scorer:
    """A PRM that likes target steps; records whether it was closed."""

    name = "likes-t"

    def __init__(self) -> None:
        self.closed = False
        self.calls = 0

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        self.calls += 1
        reward = 0.9 if steps[-1].startswith("t") else 0.1
        return StepScores(rewards=(reward,), first=len(steps) - 1, seconds=0.001, scorer=self.name)

    def close(self) -> None:
        self.closed = True


class Scorers:
    def __init__(self) -> None:
        self.loaded: list[tuple[str, Scorer]] = []

    def __call__(self, spec: str, options: ScorerOptions) -> Scorer:
        scorer = Scorer()
        self.loaded.append((spec, scorer))
        return scorer


def test_the_python_api_in_ten_lines() -> None:
    models = Models()
    spec = arbitrage.RunSpec(
        draft="draft", target="target", policies=[("random", arbitrage.policy_options("random", p=1.0))]
    )
    with arbitrage.Run(spec, load_model=models) as run:
        trace = run.engine(config=arbitrage.EngineConfig(max_steps=4)).solve("What is 3 + 4?")
    assert isinstance(trace, arbitrage.SolveTrace)
    assert [s.text for s in trace.steps] == TARGET and trace.answer == "7"  # p = 1: every step escalated
    assert [m.name for m in models.loaded] == ["draft", "target"] and all(m.closed for m in models.loaded)


def test_policy_options_by_name_are_validated_and_name_the_option() -> None:
    assert arbitrage.policy_options("rsd", threshold="0.6").threshold == 0.6
    with pytest.raises(PolicyOptionError, match=r"^p must be within \[0, 1\]") as info:
        arbitrage.policy_options("random", p=2)
    assert info.value.options == ("p",)
    with pytest.raises(PolicyOptionError, match="Unknown policy option 'tau' for the random policy"):
        arbitrage.policy_options("random", tau=0.1)
    with pytest.raises(ConfigError, match="Unknown policy 'nope'"):
        arbitrage.policy_options("nope")
    with pytest.raises(ConfigError, match="takes RSDOptions, got RandomOptions"):
        arbitrage.build_policy("rsd", arbitrage.policy_options("random"))


def test_the_prm_loads_only_for_policies_that_need_one_and_is_closed() -> None:
    scorers = Scorers()
    with arbitrage.Run(arbitrage.RunSpec(policies=["random"]), load_model=Models(), load_prm=scorers) as run:
        assert run.scorer is None and scorers.loaded == []
        with pytest.raises(ConfigError, match=r"needs a process reward model \(prm\)"):
            run.build_policy("rsd")
    spec = arbitrage.RunSpec(draft="draft", target="target", policies=["rsd"], prm="my-prm")
    with arbitrage.Run(spec, load_model=Models(), load_prm=scorers) as run:
        assert isinstance(run.policy, RSDPolicy)
        trace = run.engine().solve("What is 3 + 4?")
    [(name, scorer)] = scorers.loaded
    assert name == "my-prm" and scorer.closed and scorer.calls > 0
    assert [s.role for s in trace.steps] == ["target", "target"]  # the PRM dislikes every draft step


def test_a_failed_load_closes_what_was_loaded_before_it() -> None:
    models, scorers = Models(), Scorers()
    spec = arbitrage.RunSpec(draft="draft", target="missing", policies=["oracle"])
    with pytest.raises(ModelNotFoundError):
        arbitrage.Run(spec, load_model=models, load_prm=scorers).open()
    assert [m.name for m in models.loaded] == ["draft"] and models.loaded[0].closed
    assert scorers.loaded[0][1].closed


def test_a_bad_router_folder_fails_before_any_model_loads(tmp_path: Path) -> None:
    models = Models()
    options = arbitrage.policy_options("router", path=tmp_path / "none", tau=0.5)  # a Path is fine
    assert options.path == str(tmp_path / "none")
    with pytest.raises(arbitrage.ArbitrageError, match="Router folder not found"):
        arbitrage.Run(arbitrage.RunSpec(policies=[("router", options)]), load_model=models).open()
    assert models.loaded == []


def test_a_cache_file_replays_steps_across_runs(tmp_path: Path) -> None:
    spec = arbitrage.RunSpec(draft="draft", target="target", policies=["target"], cache=tmp_path / "c.sqlite")
    first, second = Models(), Models()
    with arbitrage.Run(spec, load_model=first) as run:
        a = run.engine().solve("What is 3 + 4?")
    with arbitrage.Run(spec, load_model=second) as run:
        b = run.engine().solve("What is 3 + 4?")
    assert [s.text for s in a.steps] == [s.text for s in b.steps] == TARGET
    assert len(first.loaded[1].calls) == 2 and second.loaded[1].calls == []  # replayed, not generated
    assert all(m.closed for m in first.loaded + second.loaded)


def test_an_engine_needs_an_open_run_with_one_policy() -> None:
    run = arbitrage.Run(arbitrage.RunSpec(policies=["draft", "target"]), load_model=Models())
    with pytest.raises(ConfigError, match="Open the run first"):
        run.engine()
    with run:
        with pytest.raises(ConfigError, match="2 policies"):
            run.engine()
        assert run.engine(run.policies[1]).solve("q?").steps[0].role == "target"


class SpeculatingModels(Models):
    """Models whose target takes a token proposer and whose draft proposes (a shared vocabulary)."""

    def __call__(self, spec: str, options: GeneratorOptions) -> ScriptedGenerator:
        model = Speculating(spec, DRAFT if spec == "draft" else TARGET)
        self.loaded.append(model)
        return model


class Speculating(ScriptedGenerator):
    speculation: object = None

    def speculate_with(self, speculation: object) -> None:
        self.speculation = speculation

    def vocabulary_key(self) -> str:
        return "shared"

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        return []


def test_a_speculating_target_keeps_its_own_cache_entries(tmp_path: Path) -> None:
    from arbitrage.backends.speculation import SpeculationConfig

    cache = tmp_path / "c.sqlite"
    plain = arbitrage.RunSpec(draft="draft", target="target", policies=["target"], cache=cache)
    speculating = arbitrage.RunSpec(
        draft="draft", target="target", policies=["target"], cache=cache, speculation=SpeculationConfig()
    )
    fixed = arbitrage.RunSpec(
        draft="draft", target="target", policies=["target"], cache=cache,
        speculation=SpeculationConfig(adaptive=False),
    )  # fmt: skip
    first, second, third, fourth = (SpeculatingModels() for _ in range(4))
    for spec, models in ((plain, first), (speculating, second), (speculating, third), (fixed, fourth)):
        with arbitrage.Run(spec, load_model=models) as run:
            assert [s.text for s in run.engine().solve("What is 3 + 4?").steps] == TARGET
    assert first.loaded[1].speculation is None and second.loaded[1].speculation is not None
    # the plain run's steps do not replay for the speculating run; the speculating run's own ones do
    assert len(first.loaded[1].calls) == 2 and len(second.loaded[1].calls) == 2
    assert third.loaded[1].calls == []
    # another speculation (here: a fixed k instead of the adaptive controller) has entries of its own
    assert len(fourth.loaded[1].calls) == 2
