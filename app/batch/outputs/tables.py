"""``predictions.csv`` (the columns ``identify FOLDER`` writes, plus the place and its source)
and ``answers.jsonl`` (one line per observation: the /v1/identify answer, its ``observation``
id, and each of its ``photos`` with its ``path`` as the source gave it beside the answer's
format and size; a failed one: its ``error``). Both are streamed
from the outcomes in the source's order and written whole to a temporary file, then renamed:
a crash never leaves half a file under the final name."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from app.batch.collection import Outcome

PREDICTION_FIELDS = [
    "observation", "rank", "model", "scientific_name", "common_name", "score", "no_match_reason", "error",
    "lat", "lon", "date", "place_source",
]  # fmt: skip


@contextmanager
def replacing(path: Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file written under a temporary name and renamed over ``path`` once complete."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _place(answer: dict[str, Any] | None) -> dict[str, str]:
    place = (answer or {}).get("place") or {}
    return {
        "lat": "" if place.get("lat") is None else f"{place['lat']:.6f}",
        "lon": "" if place.get("lon") is None else f"{place['lon']:.6f}",
        "date": place.get("date") or "",
        "place_source": place.get("source") or "",
    }


def write_predictions(outcomes: Iterable[Outcome], path: Path) -> Path:
    with replacing(path, newline="") as fh:
        writer = csv.DictWriter(fh, PREDICTION_FIELDS)
        writer.writeheader()
        for outcome in outcomes:
            name, answer = outcome.observation.id, outcome.answer
            if answer is None:
                writer.writerow({"observation": name, "error": outcome.error})
                continue
            reason, where = answer.get("no_match_reason") or "", _place(answer)
            if not answer["results"]:
                writer.writerow({"observation": name, "no_match_reason": reason, **where})
            for species in answer["results"]:
                writer.writerow({
                    "observation": name, "rank": species["rank"], "model": species["model"],
                    "scientific_name": species["scientific_name"],
                    "common_name": species.get("common_name") or "", "score": f"{species['score']:.6f}",
                    "no_match_reason": reason, **where,
                })  # fmt: skip
    return path


def write_answers(outcomes: Iterable[Outcome], path: Path) -> Path:
    with replacing(path) as fh:
        for outcome in outcomes:
            given = [{"path": photo.given} for photo in outcome.observation.photos]
            line: dict[str, Any] = {"observation": outcome.observation.id}
            if outcome.answer is not None:
                line.update(outcome.answer)
                # The answer's account of each photo (format, size), led by the photo as given.
                given = [{**path, **info} for path, info in zip(given, outcome.answer["photos"], strict=True)]
            else:
                line["error"] = outcome.error
            line["photos"] = given
            line["answered_at"] = outcome.answered_at
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path
