"""Does a batch give a token the numbers decoding gives it? (why lossless speculation can change text)

Loads a GGUF as arbitrage loads it (this machine's weight layout and flash-attention setting), decodes
``--generate`` tokens one at a time after a chat prompt, then re-evaluates ``b`` of those tokens in one
batch from several cached lengths and compares each row's logits with decoding's (max |Δlogit|; 0 means
bit-identical). With ``--compare DIR`` it also reads a ``vs_llama_server.py`` output folder and reports
where each ``speculate`` text first leaves the ``target`` text, in generated tokens.

    .venv/bin/python benchmarks/batch_vs_decode.py --out benchmarks/results/batch_vs_decode \\
        --compare benchmarks/results/vs_llama_server/gsm8k

Writes ``OUT/batch_vs_decode.json`` and ``OUT/batch_vs_decode.png``; prints a summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.backends.llamacpp import LlamaCppGenerator
from arbitrage.backends.llamacpp_eval import KVEvaluator
from arbitrage.models.registry import DEFAULT_TARGET
from arbitrage.models.store import resolve_model_path

QUESTION = (
    "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest at $2 each. How much does she make?"
)


def probe(model: str, generate: int, cached: list[int], batches: list[int]) -> dict[str, Any]:
    gen = LlamaCppGenerator(resolve_model_path(model), name=model, n_ctx=1024, determinism="off")
    kv = KVEvaluator(gen.llm, None)  # on the generator's model: its weight layout, flash attention, threads
    try:
        prompt = gen.tokenize_prompt(gen.render_prompt(QUESTION))
        reference = [kv.evaluate(prompt, 0, [len(prompt) - 1])[0].copy()]  # logits after prompt + i tokens
        tokens = list(prompt)
        for _ in range(generate):
            token = int(np.argmax(reference[-1]))
            tokens.append(token)
            reference.append(kv.feed(token).copy())
        table: dict[str, dict[str, float]] = {}
        # longest first: truncating keeps decoding's own cache for the shorter lengths
        for start in sorted(
            (c for c in cached if len(prompt) <= c <= len(tokens) - max(batches)), reverse=True
        ):
            table[str(start)] = {}
            for b in batches:
                kv.truncate(start)
                rows = kv.evaluate(tokens[: start + b], start, list(range(start, start + b)))
                diff = max(
                    float(np.max(np.abs(rows[i] - reference[start + 1 + i - len(prompt)]))) for i in range(b)
                )
                table[str(start)][str(b)] = diff
        return {
            "model": model,
            "extra_bufts": gen.extra_bufts,
            "prompt_tokens": len(prompt),
            "generated": generate,
            "max_abs_logit_diff": table,
        }
    finally:
        kv.close()
        gen.close()


def divergences(folder: Path, model: str, config: str = "speculate") -> dict[str, Any]:
    """First generated token where each ``config`` text leaves the ``target`` text."""
    import llama_cpp

    llm = llama_cpp.Llama(str(resolve_model_path(model)), vocab_only=True, verbose=False)
    target = {r["id"]: r for r in map(json.loads, (folder / "target.jsonl").read_text().splitlines())}
    spec = {r["id"]: r for r in map(json.loads, (folder / f"{config}.jsonl").read_text().splitlines())}
    first: list[int] = []
    for pid, row in spec.items():
        a = llm.tokenize(target[pid]["text"].encode(), add_bos=False)
        b = llm.tokenize(row["text"].encode(), add_bos=False)
        if a != b:
            first.append(next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b))))
    return {
        "folder": str(folder),
        "config": config,
        "problems": len(spec),
        "differing": len(first),
        "first_divergence": sorted(first),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_TARGET)
    parser.add_argument("--generate", type=int, default=234)
    parser.add_argument("--cached", default="116,240,260,300", help="cached lengths to batch from")
    parser.add_argument("--batches", default="2,3,4,5", help="batch sizes")
    parser.add_argument("--compare", type=Path, default=None, help="a vs_llama_server.py folder")
    parser.add_argument(
        "--compare-config", default="speculate", help="the configuration compared with target"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cached = [int(c) for c in args.cached.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    result = probe(args.model, args.generate, cached, batches)
    if args.compare is not None:
        result["divergences"] = divergences(args.compare, args.model, args.compare_config)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_vs_decode.json").write_text(json.dumps(result, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["max_abs_logit_diff"]
    starts = sorted(table, key=int)
    grid = np.array([[table[s][str(b)] for b in batches] for s in starts])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_yticks(range(len(starts)), starts)
    ax.set_xlabel("batch size")
    ax.set_ylabel("cached tokens")
    ax.set_title(f"{args.model}: max |Δlogit|, batch vs decoding")
    for i in range(len(starts)):
        for j in range(len(batches)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(args.out / "batch_vs_decode.png", dpi=120)
    plt.close(fig)

    print(
        f"{args.model} (repacked weights: {result['extra_bufts']}), prompt {result['prompt_tokens']} tokens"
    )
    print("cached | " + " | ".join(f"b={b}" for b in batches))
    for s in starts:
        print(f"{s:>6} | " + " | ".join(f"{table[s][str(b)]:.4f}" for b in batches))
    if "divergences" in result:
        d = result["divergences"]
        early = sum(1 for n in d["first_divergence"] if n < 100)
        print(f"{d['differing']}/{d['problems']} {d['config']} texts differ from target; first divergence "
              f"within 100 generated tokens: {early}, later: {d['differing'] - early}")  # fmt: skip


if __name__ == "__main__":
    main()
