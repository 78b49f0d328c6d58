"""What llama.cpp's CPU kernels cost and whether they are batch-invariant, per model and setting.

    .venv/bin/python benchmarks/llama_kernels.py --out benchmarks/results/llama_kernels

For each model and each combination of flash attention (``flash_attn``) and ggml's tiled K-quant
matmul (``GGML_CPU_TILED_MM``, read once per process: each combination runs in its own subprocess):

- prefill tokens/s (256 tokens in one batch), decode tokens/s (64 tokens one at a time after them),
  and the seconds of evaluating n = 2, 4, 8, 16 tokens in one batch after a cached context (what a
  token-level speculation round costs the target);
- batch invariance: the largest |Δlogit| between decoding positions one at a time and evaluating them
  in one batch: a small batch (4 tokens after 180 cached, and after 300: the split-KV decode path
  starts at 512 KV cells) and a large one (the whole 200-token context at once).

Writes ``kernels.json`` and ``kernels.png`` and prints a table. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m")


def measure(model: str, flash_attn: bool, threads: int) -> dict[str, object]:
    import numpy as np
    from llama_cpp import Llama

    from arbitrage.backends.llamacpp import _PROBE_TEXT, _model_params
    from arbitrage.backends.llamacpp_eval import KVEvaluator
    from arbitrage.models.store import resolve_model_path

    with _model_params(use_extra_bufts=False):
        llm = Llama(model_path=str(resolve_model_path(model)), n_ctx=4096, n_batch=512, n_threads=threads,
                    n_threads_batch=threads, logits_all=False, verbose=False, flash_attn=flash_attn)  # fmt: skip
    ev = KVEvaluator(llm, None)
    toks = list(llm.tokenize((_PROBE_TEXT * 8).encode(), add_bos=False))
    best = []
    for _ in range(2):
        ev.forget()
        t = time.perf_counter()
        ev.evaluate(toks[:256], 0, [255])
        best.append(time.perf_counter() - t)
    prefill = 256 / min(best)
    t = time.perf_counter()
    for tok in toks[256:320]:
        ev.feed(tok)
    decode = 64 / (time.perf_counter() - t)
    batch_ms = {}
    for n in (2, 4, 8, 16):
        times = []
        for _ in range(3):
            ev.truncate(320)
            t = time.perf_counter()
            ev.evaluate(toks[: 320 + n], 320, list(range(320, 320 + n)))
            times.append(time.perf_counter() - t)
        batch_ms[n] = 1000 * min(times)

    def small(at: int) -> float:
        ev.forget()
        ev.evaluate(toks[:at], 0, [at - 1])
        batched = ev.evaluate(toks[: at + 4], at, list(range(at, at + 4))).copy()
        ev.forget()
        ev.evaluate(toks[:at], 0, [at - 1])
        decoded = np.stack([ev.feed(t).copy() for t in toks[at : at + 4]])
        return float(np.abs(batched - decoded).max())

    def large(n: int = 200, fed: int = 20) -> float:
        ev.forget()
        batched = ev.evaluate(toks[:n], 0, list(range(n - fed, n))).copy()
        ev.forget()
        ev.evaluate(toks[: n - fed], 0, [n - fed - 1])
        decoded = np.stack([ev.feed(t).copy() for t in toks[n - fed : n - 1]])
        return float(np.abs(batched[: fed - 1] - decoded).max())

    out = {
        "model": model,
        "flash_attn": flash_attn,
        "tiled_mm": os.environ.get("GGML_CPU_TILED_MM", "1") != "0",
        "prefill_tok_s": prefill,
        "decode_tok_s": decode,
        "decode_ms": 1000 / decode,
        "batch_ms": batch_ms,
        "max_dlogit_small_batch_180": small(180),
        "max_dlogit_small_batch_300": small(300),
        "max_dlogit_large_batch": large(),
    }
    ev.close()
    llm.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: MODEL,FA in a subprocess
    args = parser.parse_args()
    if args.one:
        model, fa = args.one.split(",")
        print(json.dumps(measure(model, fa == "1", args.threads)))
        return
    rows = []
    for model in args.models.split(","):
        for fa in ("0", "1"):
            for tiled in ("1", "0"):
                env = {**os.environ, "GGML_CPU_TILED_MM": tiled}
                cmd = [
                    sys.executable,
                    __file__,
                    "--out",
                    str(args.out),
                    "--threads",
                    str(args.threads),
                    "--one",
                    f"{model},{fa}",
                ]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{model:>20} FA {'on ' if row['flash_attn'] else 'off'} tiled {'on ' if row['tiled_mm'] else 'off'}"
                    f"  prefill {row['prefill_tok_s']:6.1f} tok/s  decode {row['decode_ms']:5.1f} ms"
                    f"  batch ms {[round(v) for v in row['batch_ms'].values()]}"
                    f"  |Δ| small@180 {row['max_dlogit_small_batch_180']:.3g} small@300 {row['max_dlogit_small_batch_300']:.3g}"
                    f" large {row['max_dlogit_large_batch']:.3g}",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.json").write_text(json.dumps(rows, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for row in rows:
        label = f"{row['model']} FA {'on' if row['flash_attn'] else 'off'} tiled {'on' if row['tiled_mm'] else 'off'}"
        sizes = [1, *map(int, row["batch_ms"])]
        ax.plot(sizes, [row["decode_ms"], *row["batch_ms"].values()], marker="o", label=label)
    ax.set_xlabel("tokens evaluated in one batch after the cache")
    ax.set_ylabel("ms")
    ax.set_title("Cost of a batch after a cached context (what a speculation round pays)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out / "kernels.png", dpi=120)
    print(f"written: {args.out / 'kernels.json'}")


if __name__ == "__main__":
    main()
