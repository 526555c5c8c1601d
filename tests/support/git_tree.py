"""The checkout's `git status`: what a test session or a command leaves behind must be ignored
by git (run-time files in volumes/, caches, artifacts), never a new or changed tracked file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# `git status --porcelain` lines recorded when the session starts (None: not a git checkout).
TREE_AT_START = pytest.StashKey[list[str] | None]()


def porcelain(repo: Path) -> list[str] | None:
    """Every changed, deleted or untracked (not ignored) path, one `XY path` line each; None when
    ``repo`` is not a git work tree or git is missing."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout.splitlines() if result.returncode == 0 else None


def new_entries(before: list[str], after: list[str]) -> list[str]:
    """What ``after`` shows that ``before`` did not (files a colleague already had changed stay out)."""
    seen = set(before)
    return [line for line in after if line not in seen]
