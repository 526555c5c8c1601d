"""Running the command line as a user does: ``python -m app ...`` in a subprocess from the
repository root, with MODELS_MANIFEST pointing at a manifest the test wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.server import REPO

# One result line of `classify PHOTO`: "0.7188  Poecile atricapillus (Black-capped Chickadee)".
RESULT_LINE = re.compile(r"^(?P<score>\d\.\d{4})  (?P<name>[^()]+?)(?: \((?P<common>[^()]*)\))?$")


def cli_env(manifest: Path | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "INFERENCE_WORKERS": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "400",
    }  # wide: Typer prints each usage error on one line
    if manifest is not None:
        env["MODELS_MANIFEST"] = str(manifest)
    return {**env, **extra}


def command(*args: str | Path) -> list[str]:
    """``python -m app ARGS``. A string with spaces holds several words ("--model m --top-k 3");
    a Path is one word, whatever it holds."""
    words = [word for arg in args for word in ([str(arg)] if isinstance(arg, Path) else arg.split())]
    return [sys.executable, "-m", "app", *words]


def run_cli(
    *args: str | Path, manifest: Path | None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs :func:`command` from the repository root; the caller checks the exit status."""
    return subprocess.run(
        command(*args),
        cwd=REPO,
        env=cli_env(manifest, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"{result.args[3:]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def refused(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The command failed with ``code`` and said why: returns its stderr's last line (the reason)."""
    shown = f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert result.returncode == code, shown
    lines = result.stderr.strip().splitlines()
    assert lines, shown
    return lines[-1]


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """Typer refused the arguments (exit 2 before the command ran): returns its message."""
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Usage: python -m app" in result.stderr, result.stderr
    return result.stderr


def species_folders(root: Path, photos: list[tuple[Path, str]]) -> Path:
    """One folder per species (spaces as underscores) of symlinks to ``photos``."""
    for image, name in photos:
        folder = root / name.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.name).symlink_to(image)
    return root


def first_of_each(photos: list[tuple[Path, str]], species: int, per_species: int) -> list[tuple[Path, str]]:
    """The first ``per_species`` photos of the first ``species`` species (in name order)."""
    names = sorted({name for _, name in photos})[:species]
    chosen: list[tuple[Path, str]] = []
    for name in names:
        chosen += [(p, n) for p, n in photos if n == name][:per_species]
    return chosen
