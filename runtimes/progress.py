"""Progress on stderr (rich), quiet when DISTILBERT_DEPLOY_QUIET is set."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

_console = None


def console():
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, quiet=bool(os.environ.get("DISTILBERT_DEPLOY_QUIET")))
    return _console


@contextmanager
def step(description: str) -> Iterator[None]:
    """A spinner while a long step runs, then a line with its duration."""
    t0 = time.perf_counter()
    with console().status(description):
        yield
    console().print(f"[green]✓[/] {description} [dim]({time.perf_counter() - t0:.1f}s)[/]")
