"""The GBIF cache is keyed by the whole request, the upstream's base URL included: two GBIF
servers sharing one cache file never see each other's answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.enrich.gbif import open_gbif
from app.settings import GbifSettings
from tests.fakes.gbif import FakeGbif


def match(fake: FakeGbif, cache: Path, name: str) -> tuple[str, dict[str, object]]:
    async def run() -> tuple[str, dict[str, object]]:
        settings = GbifSettings(api_url=fake.base_url, cache_path=cache, total_timeout=5.0)
        async with open_gbif(settings) as client:
            answer = await client.match(name)
        return answer.cache, answer.payload

    return asyncio.run(run())


def test_two_gbif_servers_sharing_a_cache_file_never_see_each_others_answers(tmp_path):
    cache = tmp_path / "gbif.sqlite"
    with FakeGbif() as first, FakeGbif() as second:
        assert match(first, cache, "Passer domesticus")[0] == "miss"
        assert match(first, cache, "Passer domesticus")[0] == "hit"  # the cache works
        state, payload = match(second, cache, "Passer domesticus")
        assert state == "miss" and second.hits["Passer domesticus"] == 1  # asked its own server
        assert payload["usageKey"] == 5231190
        assert match(second, cache, "Passer domesticus")[0] == "hit"
        assert first.hits["Passer domesticus"] == 1 and second.hits["Passer domesticus"] == 1
