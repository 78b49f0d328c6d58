"""Decide, safely, whether llama.cpp's extra CPU buffer types may be used on this machine.

Some virtual machines advertise AMX (``amx_tile``/``amx_int8`` in /proc/cpuinfo) but fault on AMX tile
configuration: the first evaluation of a model whose weights were repacked into the AMX buffer type
dies with a segfault inside libggml-cpu. Turning off the extra buffer types (``use_extra_bufts``)
avoids it at native speed otherwise. On CPUs that advertise AMX, ``auto`` mode loads each model once
in a *subprocess* with the extra buffer types on and evaluates a few tokens; if the subprocess dies,
they stay off for that model. Verdicts are remembered in ``$ARBITRAGE_HOME/llama_probes.json``.

Run as ``python -m arbitrage.backends.llamacpp_probe MODEL.gguf`` to probe by hand (exit 0 = safe).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

from arbitrage.settings import Settings

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 600


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo is not available)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_amx(flags: set[str] | None = None) -> bool:
    return any(f.startswith("amx") for f in (cpu_flags() if flags is None else flags))


def _probe_key(model_path: Path, flags: set[str]) -> str:
    import llama_cpp

    flag_hash = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]
    return f"{llama_cpp.__version__}|{flag_hash}|{model_path.name}|{model_path.stat().st_size}"


def run_probe(model_path: Path, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Load and evaluate ``model_path`` with extra buffer types on, in a subprocess; True if it survived."""
    cmd = [sys.executable, "-m", "arbitrage.backends.llamacpp_probe", str(model_path)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        logger.warning("extra-buffer-type probe of %s timed out; keeping them off", model_path.name)
        return False
    if result.returncode != 0:
        logger.info(
            "llama.cpp extra buffer types crash here on %s (probe exit %s); using them off",
            model_path.name,
            result.returncode,
        )
    return result.returncode == 0


def extra_bufts_allowed(model_path: Path, settings: Settings) -> bool:
    """Whether to load ``model_path`` with llama.cpp's extra buffer types (AMX / repacking) on."""
    if settings.llama_extra_bufts != "auto":
        return settings.llama_extra_bufts == "on"
    flags = cpu_flags()
    if not cpu_has_amx(flags):
        return True
    key = _probe_key(model_path, flags)
    verdicts: dict[str, bool] = {}
    if settings.probes_file.is_file():
        try:
            verdicts = json.loads(settings.probes_file.read_text())
        except (OSError, json.JSONDecodeError):
            verdicts = {}
    if key not in verdicts:
        logger.info("probing llama.cpp extra buffer types with %s (once per model)", model_path.name)
        verdicts[key] = run_probe(model_path)
        settings.probes_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = settings.probes_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(verdicts, indent=1, sort_keys=True))
        tmp.replace(settings.probes_file)
    return bool(verdicts[key])


def _probe_main(path: str) -> int:
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=128, n_batch=64, verbose=False)
    tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog. 1 + 1 =", add_bos=True)
    llm.eval(tokens)
    llm.eval([tokens[-1]])
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1]))
