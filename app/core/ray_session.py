"""Ray for one offline run (``build-index --engine ray``, ``batch --engine ray``): the cluster at
the given address or ``RAY_ADDRESS``, else a local one sized to the run. The server never
imports this (import-linter's second contract)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None, cpus: int) -> Iterator[None]:
    """Shut down on exit when started here; a Ray already initialised (a caller's, a test's) is
    used and left as it is. ``cpus`` sizes a local cluster only: an existing one has its own."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            num_cpus=None if address else cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()
