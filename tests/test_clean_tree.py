"""Run-time files are never tracked: whatever the tests (servers, CLI runs, builds) wrote is
ignored by git. Runs last (tests/conftest.py sorts it to the end) and compares `git status` with
the one recorded when the session started, so it is exact in CI's clean clone and fair in a
developer's checkout that already had changes (those stay out of the comparison)."""

from __future__ import annotations

import pytest

from tests.support.git_tree import TREE_AT_START, new_entries, porcelain
from tests.support.server import REPO


def test_the_session_left_nothing_new_for_git(request: pytest.FixtureRequest):
    before = request.config.stash.get(TREE_AT_START, None)
    after = porcelain(REPO)
    if before is None or after is None:
        pytest.skip(f"{REPO} is not a git work tree (or git is missing): nothing to compare")
    new = new_entries(before, after)
    assert not new, (
        "files that appeared, or tracked files that changed, during this test session; run-time "
        "data belongs under a git-ignored path (volumes/index/, volumes/cache/, test-artifacts/):\n"
        + "\n".join(new)
    )
