"""From a validated request to a :class:`SolveJob`: the model it names, its policy and its limits.

Per-request overrides are checked against the server settings:

- ``model``: the served id (the configured policy), ``<id>/draft`` (draft-only decoding) or
  ``<id>/target`` (target-only decoding); anything else is a 404, as with OpenAI.
- ``arbitrage.policy``: one of the server's ``policy`` + ``allowed_policies``.
- ``arbitrage.policy_params``: numeric options of the request's policy (its options dataclass in
  :mod:`arbitrage.policies.options`) that the server lists in ``param_limits``, within their ranges.
  Nothing here names a policy: a parameter becomes settable as soon as a registered policy has the
  option and the server lists a range for it.
- ``max_tokens``/``max_completion_tokens``, ``arbitrage.max_steps``, ``arbitrage.max_step_tokens``: at
  most the server's ``*_limit`` settings.

Policies are built in the worker thread through :class:`PolicyCache` (a policy may load a model).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from arbitrage.backends.base import StepParams
from arbitrage.engine import EngineConfig
from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.policies import (
    POLICIES,
    POLICY_NAMES,
    RoutingPolicy,
    build_policy,
    needs_scorer,
    policy_entry,
    policy_options,
)
from arbitrage.policies.options import option_types, override
from arbitrage.server.errors import APIError, bad_request, unsupported
from arbitrage.server.schemas import ArbitrageOptions, ChatCompletionRequest, CompletionRequest
from arbitrage.server.settings import ServerSettings
from arbitrage.server.text import chat_question, completion_question, stop_sequences

if TYPE_CHECKING:
    from arbitrage.prm.base import StepScorer
    from arbitrage.run import RunSpec

Kind = Literal["chat", "completion"]


@dataclass(frozen=True, slots=True)
class SolveJob:
    """One request, validated and resolved: everything the worker needs to solve it."""

    kind: Kind  # which endpoint (decides the response shape)
    model: str  # the model id the request named, echoed in the response
    question: str
    policy: str  # policy name for build_policy
    policy_options: Any  # that policy's options object (arbitrage.policies.options), validated
    config: EngineConfig
    stops: tuple[str, ...]  # stop sequences (answer ends before the first)
    timeout: float  # seconds from arrival, queue wait included
    stream: bool
    include_usage: bool  # streaming: send a final usage chunk
    include_steps: bool  # per-step details in the arbitrage extension


def all_option_names() -> dict[str, None]:
    """Every option name of every registered policy, in registry order (a set that keeps order)."""
    return {name: None for entry in POLICIES.values() for name in option_types(entry.options)}


def settings_field(option: str) -> str:
    """How the server spells a policy option in its settings (``policy_options.tau``)."""
    return f"policy_options.{option}"


def make_policy_options(policy: str, values: Mapping[str, Any], base: Any = None) -> Any:
    """The options of ``policy``: ``base`` (or the policy's defaults) with ``values`` set, each coerced
    to its field's type and validated (:class:`~arbitrage.errors.PolicyOptionError` if not); a value
    replaces its alternative in ``base`` (a request's ``tau`` replaces the server's ``target_rate``)."""
    return policy_options(policy, values) if base is None else override(policy, base, values)


def base_policy_options(settings: ServerSettings) -> dict[str, Any]:
    """The options of every policy the server may run, from its ``policy_options``.

    Each policy takes the keys it has an option for (and ``seed`` from the settings unless they set
    one); a key that no served policy has is an error, so a misspelt option never goes unnoticed.
    """
    names = dict.fromkeys((*settings.served_policies, "draft", "target"))
    fields = {name: option_types(policy_entry(name).options) for name in names}
    known = {option for options in fields.values() for option in options}
    unknown = sorted(set(settings.policy_options) - known)
    if unknown:
        served = ", ".join(sorted(known)) or "none"
        raise PolicyOptionError(
            f"Unknown policy option {unknown[0]!r} (the served policies' options: {served})"
        )
    result = {}
    for name, options in fields.items():
        values = {k: v for k, v in settings.policy_options.items() if k in options}
        if "seed" in options:
            values.setdefault("seed", settings.seed)
        result[name] = policy_options(name, values)
    return result


def check_policies(settings: ServerSettings) -> None:
    """Fail at startup on policies the server cannot build or options they do not take (before any
    model loads); option errors name their ``policy_options`` fields."""
    ServerPlan.resolve(settings)


@dataclass(frozen=True, slots=True)
class ServerPlan:
    """Server settings resolved once: every servable policy checked and its options built, before any
    model loads. Read by :func:`~arbitrage.server.app.create_app` and ``arbitrage serve``."""

    settings: ServerSettings
    base_options: dict[str, Any]  # policy name -> the server's options of it (base_policy_options)

    @classmethod
    def resolve(cls, settings: ServerSettings, option_name: Callable[[str], str] | None = None) -> ServerPlan:
        """Check ``settings``' policies; a bad option is a ConfigError naming it by ``option_name`` (as
        given, without a prefix), or by default as its ``policy_options`` field of the settings."""
        for name in settings.served_policies:
            if name not in POLICY_NAMES:
                raise ConfigError(f"Unknown policy {name!r} (known: {', '.join(POLICY_NAMES)})")
        try:
            return cls(settings, base_policy_options(settings))
        except PolicyOptionError as exc:
            if option_name is not None:
                raise ConfigError(exc.render(option_name)) from None
            raise ConfigError(f"Invalid server settings: {exc.render(settings_field)}") from None

    @property
    def served(self) -> tuple[str, Any]:
        """The policy served under the model id, with its options."""
        return self.settings.policy, self.base_options[self.settings.policy]

    def run_spec(self) -> RunSpec:
        """What the server's :class:`~arbitrage.run.Run` loads: the draft and target with the server's
        prompt style, the served policy, and the PRM (once, shared by the solve slots) when a servable
        policy needs one."""
        from arbitrage.prompts import PromptStyle
        from arbitrage.run import RunSpec

        s = self.settings
        return RunSpec(
            draft=s.draft,
            target=s.target,
            policies=[self.served],
            with_prm=needs_scorer_for(s),
            prm=s.prm,
            n_ctx=s.n_ctx,
            seed=s.seed,
            prompt_style=PromptStyle(system=s.system_prompt, user_template=s.user_template),
            shared_scorer=True,  # one PRM for every solve slot: its calls are serialised
        )


def needs_scorer_for(settings: ServerSettings) -> bool:
    """Whether a policy the server may run scores steps with a PRM (then the PRM is loaded once)."""
    return any(needs_scorer(name) for name in settings.served_policies)


class PolicyCache:
    """Policies built per (name, options) and shared by requests (bounded, least recently used first out).

    Building happens under a lock, so a policy that loads a model is never loaded twice at once. Policies
    that score steps get ``scorer`` (the server's one PRM; its calls are serialised, see
    :class:`arbitrage.run.SerialScorer`).
    """

    def __init__(self, size: int = 8, scorer: StepScorer | None = None) -> None:
        self.size = size
        self.scorer = scorer  # the PRM handed to policies that need one
        self._items: OrderedDict[tuple[str, Any], RoutingPolicy] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, name: str, options: Any, policy: RoutingPolicy) -> None:
        """Keep a policy built elsewhere (e.g. by a :class:`~arbitrage.run.Run`) for ``(name, options)``."""
        with self._lock:
            self._items[(name, options)] = policy

    def get(self, name: str, options: Any) -> RoutingPolicy:
        key = (name, options)
        with self._lock:
            policy = self._items.get(key)
            if policy is None:
                policy = build_policy(name, options, scorer=self.scorer)
                self._items[key] = policy
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
            return policy


def resolve_model(model: str, requested_policy: str | None, settings: ServerSettings) -> str:
    """The policy name a request gets from its ``model`` and ``arbitrage.policy``."""
    roles = {f"{settings.model_id}/draft": "draft", f"{settings.model_id}/target": "target"}
    if model in roles:
        fixed = roles[model]
        if requested_policy not in (None, fixed):
            raise bad_request(
                f"Model '{model}' always uses the {fixed!r} policy; to choose a policy, ask for "
                f"'{settings.model_id}'",
                param="arbitrage.policy",
            )
        return fixed
    if model != settings.model_id:
        known = ", ".join([settings.model_id, *roles])
        raise APIError(
            404,
            f"The model '{model}' does not exist on this server (available: {known})",
            param="model",
            code="model_not_found",
        )
    policy = requested_policy or settings.policy
    if policy not in settings.served_policies:
        raise bad_request(
            f"Policy '{policy}' is not served here (allowed: {', '.join(settings.served_policies)})",
            param="arbitrage.policy",
        )
    return policy


def request_policy_options(
    policy: str, params: Mapping[str, float | int], seed: int | None, base: Any, settings: ServerSettings
) -> Any:
    """``base`` (the server's options of ``policy``) with the request's policy parameters (within the
    server's limits) and seed."""
    types = all_option_names()
    own = option_types(policy_entry(policy).options)
    settable = [n for n in settings.param_limits if n in types]
    values: dict[str, Any] = {}
    for name, value in params.items():
        param = f"arbitrage.policy_params.{name}"
        limit = settings.param_limits.get(name)
        if name not in types or limit is None:
            reason = "is not a parameter of this version's policies" if name not in types else "is fixed"
            raise bad_request(
                f"Policy parameter '{name}' {reason} on this server "
                f"(settable per request: {', '.join(settable) or 'none'})",
                param=param,
            )
        if not limit.min <= value <= limit.max:
            raise bad_request(
                f"Policy parameter '{name}' = {value:g} is outside this server's range "
                f"[{limit.min:g}, {limit.max:g}]",
                param=param,
            )
        if name not in own:
            raise bad_request(
                f"Policy parameter '{name}' does not apply to the {policy} policy "
                f"(its options: {', '.join(own) or 'none'})",
                param=param,
            )
        values[name] = value
    if seed is not None and "seed" in own:
        values["seed"] = seed
    try:
        return make_policy_options(policy, values, base)
    except PolicyOptionError as exc:
        field = f"arbitrage.policy_params.{exc.options[0]}" if exc.options else "arbitrage.policy_params"
        raise bad_request(exc.render(lambda n: f"arbitrage.policy_params.{n}"), param=field) from None


def _limited(value: int | None, default: int, limit: int, param: str) -> int:
    if value is None:
        return default
    if value > limit:
        raise bad_request(f"'{param}' = {value} exceeds this server's limit of {limit}", param=param)
    return value


def _refuse_unsupported(request: ChatCompletionRequest | CompletionRequest) -> None:
    if request.n not in (None, 1):
        raise unsupported("n", "one choice per request (n = 1)")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise unsupported(name, "sampling penalties are not applied by the step loop")
    if request.logit_bias:
        raise unsupported("logit_bias", "draft and target have different vocabularies")
    if request.stream_options is not None and not request.stream:
        raise bad_request("'stream_options' is only allowed with stream = true", param="stream_options")
    if isinstance(request, ChatCompletionRequest):
        if request.logprobs or request.top_logprobs:
            raise unsupported("logprobs", "token logprobs are not returned")
        if request.tools or request.functions:
            raise unsupported("tools", "tool and function calling")
        if request.tool_choice not in (None, "none", "auto") or request.function_call not in (None, "none"):
            raise unsupported("tool_choice", "tool and function calling")
        if request.response_format and request.response_format.get("type") != "text":
            raise unsupported("response_format", "only text answers")
        if request.modalities not in (None, ["text"]) or request.audio:
            raise unsupported("modalities", "only text answers")
        if request.prediction:
            raise unsupported("prediction", "predicted outputs")
    else:
        if request.echo:
            raise unsupported("echo", "the prompt is not echoed")
        if request.suffix:
            raise unsupported("suffix", "insertion (suffix)")
        if request.best_of not in (None, 1):
            raise unsupported("best_of", "one candidate per request")
        if request.logprobs:
            raise unsupported("logprobs", "token logprobs are not returned")


def build_job(
    request: ChatCompletionRequest | CompletionRequest, settings: ServerSettings, base: Mapping[str, Any]
) -> SolveJob:
    """Validate ``request`` against the server's settings and resolve it into a job (APIError if not)."""
    _refuse_unsupported(request)
    if isinstance(request, ChatCompletionRequest):
        kind: Kind = "chat"
        question = chat_question(request.messages, settings.context_messages)
        if None not in (request.max_tokens, request.max_completion_tokens) and (
            request.max_tokens != request.max_completion_tokens
        ):
            raise bad_request("Give max_completion_tokens or max_tokens, not both", param="max_tokens")
        max_tokens = request.max_completion_tokens or request.max_tokens
    else:
        kind = "completion"
        question = completion_question(request.prompt)
        max_tokens = request.max_tokens
    options = request.arbitrage or ArbitrageOptions()
    policy = resolve_model(request.model, options.policy, settings)
    policy_options = request_policy_options(
        policy, options.policy_params, request.seed, base[policy], settings
    )
    total = _limited(max_tokens, settings.max_tokens, settings.max_tokens_limit, "max_tokens")
    per_step = _limited(
        options.max_step_tokens,
        settings.max_step_tokens,
        settings.max_step_tokens_limit,
        "arbitrage.max_step_tokens",
    )
    temperature = settings.temperature if request.temperature is None else request.temperature
    seed = settings.seed if request.seed is None else request.seed
    if options.timeout is not None and options.timeout > settings.request_timeout:
        raise bad_request(
            f"'arbitrage.timeout' = {options.timeout:g} s exceeds this server's limit of "
            f"{settings.request_timeout:g} s",
            param="arbitrage.timeout",
        )
    config = EngineConfig(
        step=StepParams(
            separator=settings.separator,
            max_step_tokens=min(per_step, total),
            temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            # any integer a client sends (OpenAI's are int64), folded into what the samplers take, [0, 2**64)
            seed=seed % 2**64 if temperature > 0 else None,
        ),
        max_steps=_limited(
            options.max_steps, settings.max_steps, settings.max_steps_limit, "arbitrage.max_steps"
        ),
        max_total_tokens=total,
        stop_on_boxed=settings.stop_on_boxed if options.stop_on_boxed is None else options.stop_on_boxed,
    )
    return SolveJob(
        kind=kind,
        model=request.model,
        question=question,
        policy=policy,
        policy_options=policy_options,
        config=config,
        stops=stop_sequences(request.stop),
        timeout=options.timeout or settings.request_timeout,
        stream=request.stream,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        include_steps=options.include_steps,
    )
