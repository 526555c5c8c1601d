"""link-gbif: resolve every name of a label map against GBIF once, into a taxonomy file.

Resumable (names already in the file are skipped, each result is appended as it arrives),
rate-limited (at most ``rate`` calls started per second, on top of the client's concurrency
bound and retries), and honest: only EXACT matches are linked; the rest are listed with what
GBIF suggested, never guessed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from app.enrich.gbif import GbifClient
from app.enrich.taxonomy import LinkedName, linked_from_match, read_linked
from app.errors import ServiceError


@dataclass
class LinkReport:
    linked: int = 0
    resumed: int = 0
    unresolved: list[LinkedName] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # upstream errors: rerun to retry


async def link_names(
    names: list[str],
    client: GbifClient,
    out: Path,
    *,
    rate: float,
    kingdom: str | None = None,
    progress: bool = True,
) -> LinkReport:
    report = LinkReport()
    done = {item.name: item for item in read_linked(out)}
    todo = [name for name in dict.fromkeys(names) if name not in done]
    report.resumed = len(done)
    for item in done.values():
        if item.taxon is not None:
            report.linked += 1
        else:
            report.unresolved.append(item)

    out.parent.mkdir(parents=True, exist_ok=True)
    interval = 1.0 / rate
    bar = tqdm(total=len(todo), unit="name", desc="GBIF", disable=not progress)
    with out.open("a", encoding="utf-8") as fh:

        async def resolve(name: str, start_at: float) -> None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            try:
                answer = await client.match(name, kingdom=kingdom, strict=True)
            except ServiceError as exc:
                report.failed.append((name, exc.message))
            else:
                item = linked_from_match(name, answer.payload)
                fh.write(item.model_dump_json(by_alias=True) + "\n")
                fh.flush()  # a crash loses at most the line being written
                if item.taxon is not None:
                    report.linked += 1
                else:
                    report.unresolved.append(item)
            bar.update(1)

        started = time.monotonic()
        await asyncio.gather(*(resolve(name, started + i * interval) for i, name in enumerate(todo)))
    bar.close()
    return report
