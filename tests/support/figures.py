"""Figures the tests measure: printed at the end of the run and kept in test-artifacts/."""

from __future__ import annotations

from tests.support.server import REPO

FIGURES: list[str] = []


def figure(line: str) -> None:
    """A figure a test measured: printed at the end of the run (and kept in test-artifacts/)."""
    FIGURES.append(line)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    with (REPO / "test-artifacts" / "figures.txt").open("a") as fh:
        fh.write(line + "\n")
