"""The ``router`` policy: escalate a draft step when a trained router's score ŷ exceeds τ.

The router reads only what the draft already produced (the question, the accepted steps and who wrote
them, the draft step with its token logprobs), so a step the router accepts costs no PRM call and no
target call; the target writes a step only when ``ŷ > τ``. τ is given directly, or chosen from the
router's saved τ table (measured on its validation rows) so that about ``target_rate`` of the steps
go to the target. The engine counts the router's time in each step's ``policy_seconds``.

A router with target-side inputs (its saved config's ``inputs`` is ``target`` or ``both``) also reads
the target's verification of the draft step: the policy asks the engine for it with
``view.verify_target()`` (computed once per step, its cost counted in the target's usage and in the
latency). Draft-only routers never ask for it.

Without a ``path`` the policy loads the router installed with the package, in ``arbitrage/data/router``
(written there by ``benchmarks/train_routers_v2.sh``): the combined router, on the draft's step and the
target's verification of it, trained on outcome labels.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from arbitrage.backends.base import Verification
from arbitrage.errors import ConfigError, PolicyOptionError, RouterError
from arbitrage.policies.base import StepView
from arbitrage.policies.options import RouterOptions, check_unit
from arbitrage.router.base import Router, RouterExample, VerificationSummary
from arbitrage.trace import Decision

WARM_UP = RouterExample(question="1 + 1?", steps=(), roles=(), draft_text="1 + 1 = 2", draft_logprobs=(-0.1,),
                        draft_entropies=(0.1,), draft_tokens=1)  # fmt: skip
PACKAGED_ROUTER = "router"  # the router installed with the package: a folder in the arbitrage.data package


class RouterPolicy:
    """Escalate when ``router.score(...) > tau``."""

    skip_draft = False

    def __init__(
        self,
        router: Router,
        tau: float,
        *,
        target_rate: float | None = None,
        source: str = "",
    ) -> None:
        check_unit("tau", tau, " for the router policy (ŷ is in [0, 1])")
        self.router = router
        # whether the router reads the target's verification of each draft step
        self.needs_verification = getattr(router, "inputs", "draft") != "draft"
        self.tau = tau
        self.target_rate = target_rate  # the rate τ was chosen for, when it was chosen from the table
        self.source = source  # where the router came from (its folder), for traces

    @property
    def name(self) -> str:
        rate = f",rate={self.target_rate:g}" if self.target_rate is not None else ""
        return f"router({self.router.kind},tau={self.tau:.4g}{rate})"

    def decide(self, view: StepView) -> Decision:
        if self.needs_verification:
            v = VerificationSummary.from_verification(self._verify(view), view.draft.token_logprobs)
            example = RouterExample.from_step(view.question, view.history, view.draft, v)
            score = float(self.router.score_batch([example])[0])
        else:
            score = self.router.score(view.question, view.history, view.draft)
        escalate = score > self.tau
        return Decision(
            escalate=escalate,
            score=score,
            threshold=self.tau,
            reason=f"ŷ {score:.3f} {'>' if escalate else '≤'} τ {self.tau:.3f}",
            info={"router": self.router.kind, "labels": self.router.scheme.name},
        )

    def _verify(self, view: StepView) -> Verification:
        """The target's verification of the draft step, from the engine (computed once per step, its cost
        in the target's usage)."""
        try:
            return view.verify_target()
        except ConfigError:
            raise RouterError(
                "This router reads the target's verification of each step, and the target cannot verify steps"
            ) from None


def packaged_router() -> Path:
    """The folder of the router installed with the package."""
    from arbitrage.router.store import CONFIG_FILE

    folder = resources.files("arbitrage.data").joinpath(PACKAGED_ROUTER)
    if not isinstance(folder, Path) or not (folder / CONFIG_FILE).is_file():
        raise PolicyOptionError(
            "No router is installed with the package: give the router policy {path} PATH "
            "(a folder from `arbitrage train-router`)",
            "path",
        )
    return folder


def build_router_policy(options: RouterOptions, device: str = "auto") -> RouterPolicy:
    """Load the router at ``options.path`` (or the packaged one) and fix τ: given, or from the τ table
    for ``target_rate``."""
    from arbitrage.router.store import load_router

    tau, target_rate = options.tau, options.target_rate  # validated: exactly one is set
    loaded = load_router(options.path if options.path is not None else packaged_router(), device=device)
    if target_rate is not None:
        tau = loaded.tau_for_rate(target_rate).tau
    assert tau is not None
    # one throw-away decision, so the first real step isn't charged one-off costs (lazy init, caches)
    loaded.router.score_batch([WARM_UP])
    return RouterPolicy(loaded.router, tau, target_rate=target_rate, source=str(loaded.path))
