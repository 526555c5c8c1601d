"""``batch --engine ray``: the same stages on Ray Data, on one machine or a cluster.

The pending observations are a dataset (each one as JSON); ``map_batches`` sends small batches
to a pool of actors, each of which opens the services once (the models, the fetcher, the GBIF
client: ``app.wiring.running_services``) and answers its batch with ``answering.answer``, the
local engine's function: each photo read or fetched, decoded once and run through each network
once, in the actor's process. The answers stream back to this process, which commits each to
the journal as it arrives, so a Ray run resumes exactly as a local one does.

Ray runs here (a local cluster sized to the cores) unless ``RAY_ADDRESS`` (or ``address``)
names one. On a cluster, every node must see the models at the paths of the manifest and the
photos at their paths (a shared filesystem), or the photos are https addresses (object
storage: signed or public URLs, fetched under the same SSRF rules as the API).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from app.batch.answering import Answered, Asked
from app.batch.collection import Observation, observation_from_json, observation_to_json
from app.batch.engine import Record
from app.core.ray_session import ray_session
from app.settings import Settings

# Observations per dataset: Ray holds one window's at a time, not a collection's ten million
# (their JSON, the blocks); each window starts its actors afresh, which reloads the models: a few
# seconds, against the window's hour of work on a node.
WINDOW = 50_000


class AnswerBatches:
    """A Ray Data actor: the services opened once, then a batch of observations at a time."""

    def __init__(self, settings: dict[str, Any], asked: Asked, workers: int) -> None:
        from app.wiring import running_services

        self._asked = asked
        self._opened = running_services(Settings.model_validate(settings), workers=workers, index=False)
        self._services, self._loop = self._opened.__enter__()

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        from app.batch.engine import answer_all

        answers: dict[int, Answered] = {}
        pending = [
            (int(seq), observation_from_json(str(text)))
            for seq, text in zip(batch["seq"], batch["observation"], strict=True)
        ]

        def record(seq: int, _: Observation, answered: Answered) -> None:
            answers[seq] = answered

        self._loop.run(answer_all(self._services, pending, self._asked, record))
        ordered = [answers[seq] for seq, _ in pending]
        return {
            "seq": batch["seq"],
            "answer": np.array(
                [json.dumps(a.answer) if a.answer is not None else "" for a in ordered], dtype=object
            ),
            "error": np.array([a.error or "" for a in ordered], dtype=object),
            "answered_at": np.array([a.answered_at for a in ordered], dtype=object),
        }

    def __del__(self) -> None:
        opened = getattr(self, "_opened", None)
        if opened is not None:
            opened.__exit__(None, None, None)


def _answer_window(
    pending: list[tuple[int, Observation]],
    config: Settings,
    asked: Asked,
    record: Record,
    actors: int,
    batch_size: int,
) -> None:
    import ray

    by_seq = dict(pending)
    dataset = ray.data.from_items(
        [{"seq": seq, "observation": observation_to_json(obs)} for seq, obs in pending],
        # One block per batch: each batch's answers reach the journal as soon as it is done.
        override_num_blocks=max(1, -(-len(pending) // batch_size)),
    )
    answered = dataset.map_batches(
        AnswerBatches,
        fn_constructor_kwargs={
            "settings": config.model_dump(mode="json"),
            "asked": asked,
            "workers": 1,  # one process per core: each actor one inference thread
        },
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=batch_size,
        num_cpus=1,
        batch_format="numpy",
    )
    for batch in answered.iter_batches(batch_format="numpy", batch_size=None):
        for seq, answer, error, at in zip(
            batch["seq"], batch["answer"], batch["error"], batch["answered_at"], strict=True
        ):
            n = int(seq)
            record(n, by_seq[n], Answered(json.loads(answer) if answer else None, error or None, str(at)))


def answer_on_ray(
    config: Settings,
    pending: list[tuple[int, Observation]],
    asked: Asked,
    record: Record,
    *,
    actors: int | None = None,
    address: str | None = None,
    batch_size: int = 8,
) -> None:
    import ray

    actors = actors or (os.cpu_count() or 1)
    with ray_session(address, actors):
        ray.data.DataContext.get_current().enable_progress_bars = False  # the journal's bar shows it
        for start in range(0, len(pending), WINDOW):
            _answer_window(pending[start : start + WINDOW], config, asked, record, actors, batch_size)
