"""Rewrites the contract baselines from THIS tree, deliberately: run it only when a change of the
public behaviour is intended, and say so in the commit.

    .venv/bin/python -m tests.contract.refresh            # both
    .venv/bin/python -m tests.contract.refresh openapi    # tests/contract/openapi_baseline.json
    .venv/bin/python -m tests.contract.refresh classic    # tests/contract/classic_baseline.json

``classic`` starts the real server (uvicorn on loopback, the real models of ../shared, or of
SPECIES_SHARED_DIR) and records its answers; it needs ../shared.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import app
from tests.contract.baselines import (
    CLASSIC_BASELINE,
    OPENAPI_BASELINE,
    classic_server,
    current_openapi,
    record,
    write_json,
)
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED


def refresh_openapi() -> None:
    write_json(OPENAPI_BASELINE, current_openapi())
    print(f"wrote {OPENAPI_BASELINE}")


def refresh_classic() -> None:
    if not HAS_SHARED:
        sys.exit(NO_SHARED)
    with tempfile.TemporaryDirectory(prefix="contract-") as folder:
        server = classic_server(Path(folder), Path(folder) / "service.log").start()
        try:
            recorded = record(server.base_url, SHARED)
        finally:
            server.stop()
    write_json(CLASSIC_BASELINE, recorded)
    statuses = sorted({case["status"] for case in recorded["cases"]})
    print(f"wrote {CLASSIC_BASELINE}: {len(recorded['cases'])} answers (statuses {statuses})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("which", nargs="*", metavar="openapi|classic", help="default: both")
    which = parser.parse_args().which or ["openapi", "classic"]
    if unknown := set(which) - {"openapi", "classic"}:
        parser.error(f"unknown baseline(s): {', '.join(sorted(unknown))}")
    print(f"app from {Path(app.__file__).parent}; shared folder {SHARED}")
    if "openapi" in which:
        refresh_openapi()
    if "classic" in which:
        refresh_classic()


if __name__ == "__main__":
    main()
