"""Prefill and decode speed of each model through llama.cpp, and how much of each step call's context
the KV cache serves when draft and target alternate.

    python benchmarks/model_speed.py --out benchmarks/results/model_speed

1. Speed: a ~500-token prompt is prefilled cold (prefill tok/s), then 64 tokens are decoded greedily
   without stopping (decode tok/s). Repeated ``--repeats`` times, median reported.
2. KV reuse: ``random(p=0.5)`` solves of the first ``--problems`` GSM8K test questions with the default
   pair; for every step call, the context tokens, the tokens actually prefilled, and the tokens that were
   new to that model since its previous call (the other model's steps plus separators).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from arbitrage.backends.base import StepContext, StepParams
from arbitrage.backends.loader import GeneratorOptions, load_generator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.evaluation.datasets import load_dataset
from arbitrage.policies import RandomPolicy

ROOT = Path(__file__).resolve().parents[1]


def speed(name: str, repeats: int) -> dict[str, float | str]:
    t0 = time.perf_counter()
    gen = load_generator(name, GeneratorOptions(n_ctx=2048))
    load_s = time.perf_counter() - t0
    problems = load_dataset("gsm8k").problems
    prefill, decode = [], []
    for r in range(repeats):
        question = " ".join(p.question for p in problems[r * 6 : r * 6 + 6])  # ~500 tokens, new every repeat
        out = gen.generate_step(StepContext(question), StepParams(separator="@@none@@", max_step_tokens=64))
        prefill.append(out.prefill_tokens / out.prefill_seconds)
        decode.append(out.tokens / out.decode_seconds)
        prompt_tokens = out.prompt_tokens
    gen.close()
    return {"model": name, "load_s": load_s, "prompt_tokens": prompt_tokens,
            "prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode)}  # fmt: skip


def kv_reuse(draft: str, target: str, problems: int) -> list[dict[str, int | str]]:
    options = GeneratorOptions()
    d, t = load_generator(draft, options), load_generator(target, options)
    engine = Engine(d, t, RandomPolicy(0.5, seed=0), EngineConfig(max_steps=12))
    calls: list[dict[str, int | str]] = []
    for problem in load_dataset("gsm8k").problems[:problems]:
        trace = engine.solve(problem.question)
        seen: dict[str, int] = {}  # role -> number of accepted steps at its previous call
        for step in trace.steps:
            for role, output in (("draft", step.draft), ("target", step.target)):
                if output is None:
                    continue
                calls.append({"problem": problem.id, "step": step.index, "role": role,
                              "context_tokens": output.prompt_tokens, "prefill_tokens": output.prefill_tokens,
                              "first_call": int(role not in seen)})  # fmt: skip
                seen[role] = step.index
    d.close()
    t.close()
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--models",
        nargs="+",
        default=["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"],
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--problems", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "model_speed")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    speeds = [speed(m, args.repeats) for m in args.models]
    calls = kv_reuse("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", args.problems)
    later = [c for c in calls if not c["first_call"]]
    reuse = {
        "calls": len(calls),
        "context_tokens": sum(int(c["context_tokens"]) for c in calls),
        "prefill_tokens": sum(int(c["prefill_tokens"]) for c in calls),
        "later_calls_context_tokens_mean": statistics.mean(int(c["context_tokens"]) for c in later),
        "later_calls_prefill_tokens_mean": statistics.mean(int(c["prefill_tokens"]) for c in later),
    }
    (args.out / "results.json").write_text(
        json.dumps({"speed": speeds, "kv_reuse": reuse, "calls": calls}, indent=2)
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(speeds))
    ax.bar([x - 0.2 for x in xs], [s["prefill_tok_s"] for s in speeds], width=0.4, label="prefill tok/s")
    ax.bar([x + 0.2 for x in xs], [s["decode_tok_s"] for s in speeds], width=0.4, label="decode tok/s")
    ax.set_xticks(list(xs), [str(s["model"]) for s in speeds], fontsize=8)
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("llama.cpp speed on this machine")
    fig.tight_layout()
    fig.savefig(args.out / "speed.png", dpi=120)
    for s in speeds:
        print(f"{s['model']:<20} load {s['load_s']:.1f}s  prefill {s['prefill_tok_s']:.0f} tok/s "
              f"({s['prompt_tokens']} tokens)  decode {s['decode_tok_s']:.1f} tok/s")  # fmt: skip
    print(f"KV reuse over {reuse['calls']} step calls: {reuse['prefill_tokens']} of {reuse['context_tokens']} context "
          f"tokens prefilled ({reuse['prefill_tokens'] / reuse['context_tokens']:.1%}); later calls prefill "
          f"{reuse['later_calls_prefill_tokens_mean']:.1f} of {reuse['later_calls_context_tokens_mean']:.0f} tokens on average")  # fmt: skip


if __name__ == "__main__":
    main()
