"""The GBIF answer cache: persistent in SQLite, and never a reason for the service not to start."""

from __future__ import annotations

from app.enrich.cache import ResponseCache


def test_answers_survive_a_new_connection(tmp_path):
    path = tmp_path / "deep" / "gbif.sqlite"
    first = ResponseCache(path)
    first.put("species/match?name=Aus+bus", {"usageKey": 1})
    first.close()
    again = ResponseCache(path)
    cached = again.get("species/match?name=Aus+bus")
    assert cached is not None and cached.payload == {"usageKey": 1} and cached.age_s >= 0
    assert again.get("other") is None


def test_an_unwritable_location_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = ResponseCache(blocker / "gbif.sqlite")  # its parent cannot be created
    assert cache.path is None
    cache.put("k", [1, 2])
    assert cache.get("k").payload == [1, 2]
