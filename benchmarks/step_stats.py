"""How many steps do the default models write per GSM8K solution, and at what speed?

Runs each model alone (draft-only / target-only policy) on the first N GSM8K test problems under one or
more prompt styles and reports steps per solution, tokens per step, stop reasons, accuracy (numeric
match of the extracted answer), decode/prefill speed and KV reuse. Resumable: one JSON line per
(model, prompt, problem) in ``OUT/records.jsonl``; a rerun skips what is there.

    python benchmarks/step_stats.py --limit 10 --out benchmarks/results/step_stats
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from arbitrage.backends.loader import GeneratorOptions, load_generator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.policies import DraftOnlyPolicy
from arbitrage.prompts import DEFAULT_SYSTEM, PromptStyle

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = {
    "paragraph-steps": PromptStyle(),  # the default: asks for one short paragraph per step
    "plain-cot": PromptStyle(system=None, user_template="{question}\n" + DEFAULT_SYSTEM),
}


def gsm8k(limit: int) -> list[tuple[str, str]]:
    path = ROOT.parent / "shared" / "datasets" / "gsm8k_test.jsonl"
    rows = [json.loads(line) for line in path.open()][:limit]
    return [(r["question"], r["answer"].split("####")[-1].strip().replace(",", "")) for r in rows]


def numeric_match(pred: str | None, gold: str) -> bool:
    if pred is None:
        return False
    cleaned = pred.replace(",", "").replace("$", "").replace("\\%", "").strip()
    try:
        return abs(float(cleaned) - float(gold)) < 1e-6
    except ValueError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    ap.add_argument("--prompts", nargs="+", default=list(PROMPTS), choices=list(PROMPTS))
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--max-step-tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "step_stats")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records_path = args.out / "records.jsonl"
    done = set()
    if records_path.exists():
        for line in records_path.open():
            r = json.loads(line)
            done.add((r["model"], r["prompt"], r["problem"]))
    problems = gsm8k(args.limit)
    from tqdm import tqdm

    for model in args.models:
        for prompt in args.prompts:
            todo = [i for i in range(len(problems)) if (model, prompt, i) not in done]
            if not todo:
                continue
            gen = load_generator(model, GeneratorOptions(prompt_style=PROMPTS[prompt]))
            engine = Engine(gen, gen, DraftOnlyPolicy(), EngineConfig())
            for i in tqdm(todo, desc=f"{model} / {prompt}"):
                question, gold = problems[i]
                trace = engine.solve(question)
                usage = trace.usage["draft"]
                first = trace.steps[0].draft if trace.steps else None
                record = {
                    "model": model,
                    "prompt": prompt,
                    "problem": i,
                    "steps": len(trace.steps),
                    "step_tokens": [s.tokens for s in trace.steps],
                    "stop_reason": trace.stop_reason,
                    "answer": trace.answer,
                    "gold": gold,
                    "correct": numeric_match(trace.answer, gold),
                    "generated_tokens": usage.generated_tokens,
                    "decode_seconds": usage.decode_seconds,
                    "prefill_tokens": usage.prefill_tokens,
                    "prompt_tokens": usage.prompt_tokens,
                    "prefill_seconds": usage.prefill_seconds,
                    "first_prefill_tokens": first.prefill_tokens if first else 0,
                    "first_prefill_seconds": first.prefill_seconds if first else 0.0,
                    "wall_seconds": trace.wall_seconds,
                }
                with records_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
            gen.close()
    summarize(records_path, args.out)


def summarize(records_path: Path, out: Path) -> None:
    records = [json.loads(line) for line in records_path.open()]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["prompt"]), []).append(r)
    summary = []
    for (model, prompt), rows in sorted(groups.items()):
        steps = [r["steps"] for r in rows]
        tok_per_step = [t for r in rows for t in r["step_tokens"]]
        summary.append(
            {
                "model": model,
                "prompt": prompt,
                "problems": len(rows),
                "accuracy": sum(r["correct"] for r in rows) / len(rows),
                "steps_mean": statistics.mean(steps),
                "steps_median": statistics.median(steps),
                "single_step_solutions": sum(1 for s in steps if s <= 1),
                "tokens_per_step_median": statistics.median(tok_per_step) if tok_per_step else 0,
                "tokens_per_solution_mean": statistics.mean(r["generated_tokens"] for r in rows),
                "decode_tok_per_s": sum(r["generated_tokens"] for r in rows)
                / sum(r["decode_seconds"] for r in rows),
                "first_prefill_tok_per_s": sum(r["first_prefill_tokens"] for r in rows)
                / max(1e-9, sum(r["first_prefill_seconds"] for r in rows)),
                "kv_reuse_rate": 1
                - sum(r["prefill_tokens"] for r in rows) / sum(r["prompt_tokens"] for r in rows),
                "stop_reasons": {
                    k: sum(1 for r in rows if r["stop_reason"] == k) for k in {r["stop_reason"] for r in rows}
                },
                "wall_seconds_mean": statistics.mean(r["wall_seconds"] for r in rows),
            }
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (model, prompt), rows in sorted(groups.items()):
        ax.hist([r["steps"] for r in rows], bins=range(0, 42, 2), alpha=0.5, label=f"{model} / {prompt}")
    ax.set_xlabel("steps per solution")
    ax.set_ylabel("problems")
    ax.set_title("GSM8K test: steps per solution (greedy, separator \\n\\n)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "steps_hist.png", dpi=120)
    for s in summary:
        print(
            f"{s['model']:<20} {s['prompt']:<16} n={s['problems']:<3} acc={s['accuracy']:.2f} "
            f"steps mean={s['steps_mean']:.1f} median={s['steps_median']} "
            f"single={s['single_step_solutions']} "
            f"tok/step={s['tokens_per_step_median']} decode={s['decode_tok_per_s']:.1f} tok/s "
            f"prefill={s['first_prefill_tok_per_s']:.0f} tok/s kv_reuse={s['kv_reuse_rate']:.2f} "
            f"stops={s['stop_reasons']}"
        )


if __name__ == "__main__":
    main()
