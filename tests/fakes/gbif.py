"""A local GBIF species API (``GET /v1/species/match``) speaking GBIF's JSON.

Passer domesticus, its misspelling and a nonsense name answer what api.gbif.org answers. Any other
"Genus species" name gets an EXACT match with a key derived from the name and the classification
from ``LINEAGE`` where the genus is listed (the keys are the fake's own, not GBIF's). Tests steer
failures: ``fail_next`` (statuses to answer first), ``fail_names`` (always 500 for those names),
``stall`` (seconds before answering) and read ``hits`` / ``max_in_flight``.

``GET /v1/occurrence/search`` answers in GBIF's shape (``count``, ``results``, ``facets`` with
``{"field": "SPECIES_KEY", "counts": [{"name": "<key>", "count": n}]}``) from ``occurrences``:
rows ``(south, north, west, east, month | None, {speciesKey: records})``. A row counts when its
box lies within the query's ``decimalLatitude``/``decimalLongitude`` ranges ("a,b", edges
included; an absent range does not filter) and its month is the query's (a row whose month is
None counts for every month; a query without a month counts every row). ``facetLimit`` keeps the
top N species by records (GBIF's default 10), ``count`` sums all the rows' records, ``limit=0``
leaves ``results`` empty. Occurrence queries have their own switches (``occurrence_fail_next``,
``occurrence_status``, ``occurrence_stall``, ``occurrence_invalid_json``; ``delay`` applies to
both), are counted per (decimalLatitude, decimalLongitude, month) in ``occurrence_hits`` and
logged in ``occurrence_queries``, never in ``hits``; ``reset_occurrences()`` clears them all.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (south, north, west, east, month | None, {speciesKey: records})
OccurrenceRow = tuple[float, float, float, float, int | None, dict[int, int]]

PASSER_DOMESTICUS = {
    "usageKey": 5231190,
    "scientificName": "Passer domesticus (Linnaeus, 1758)",
    "canonicalName": "Passer domesticus",
    "rank": "SPECIES",
    "status": "ACCEPTED",
    "confidence": 99,
    "matchType": "EXACT",
    "kingdom": "Animalia",
    "phylum": "Chordata",
    "order": "Passeriformes",
    "family": "Passeridae",
    "genus": "Passer",
    "species": "Passer domesticus",
    "kingdomKey": 1,
    "phylumKey": 44,
    "classKey": 212,
    "orderKey": 729,
    "familyKey": 5264,
    "genusKey": 2492321,
    "speciesKey": 5231190,
    "synonym": False,
    "class": "Aves",
}
NONE = {"confidence": 100, "matchType": "NONE", "synonym": False}

# genus -> (kingdom, phylum, class, order, family)
LINEAGE = {
    "Vanessa": ("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae"),
    "Danaus": ("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae"),
    "Papilio": ("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Papilionidae"),
}
RANKS = ("kingdom", "phylum", "class", "order", "family")


def _key(text: str) -> int:
    return 10_000_000 + zlib.crc32(text.encode()) % 9_000_000


def synthesized(name: str) -> dict[str, Any]:
    genus = name.split(" ", 1)[0]
    body: dict[str, Any] = {
        "usageKey": _key(name),
        "scientificName": f"{name} (Fake, 1900)",
        "canonicalName": name,
        "rank": "SPECIES",
        "status": "ACCEPTED",
        "confidence": 98,
        "matchType": "EXACT",
        "genus": genus,
        "species": name,
        "genusKey": _key(genus),
        "speciesKey": _key(name),
        "synonym": False,
    }
    for rank, value in zip(RANKS, LINEAGE.get(genus, ()), strict=False):
        body[rank] = value
        body[f"{rank}Key"] = _key(value)
    return body


def _range(query: dict[str, str], name: str) -> tuple[float, float] | None:
    if name not in query:
        return None
    parts = query[name].split(",")
    try:
        low, high = float(parts[0]), float(parts[-1])
    except ValueError:
        raise ValueError(f"{name}={query[name]!r} is not a number or a range 'a,b'") from None
    if len(parts) > 2 or low > high:
        raise ValueError(f"{name}={query[name]!r} is not a range 'a,b'")
    return low, high


class FakeGbif:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.fail_next: list[int] = []
        self.fail_names: set[str] = set()
        self.none_names: set[str] = set()
        self.stall = 0.0
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.reset_occurrences()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/v1/occurrence/search":
                    self._occurrence_search(query)
                    return
                with fake._lock:
                    fake.hits[query.get("name", "")] += 1
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    status = fake.fail_next.pop(0) if fake.fail_next else 200
                try:
                    time.sleep(fake.delay)
                    if fake.stall:
                        time.sleep(fake.stall)
                    if parts.path != "/v1/species/match":
                        self._send(404, {"error": "not found"})
                    elif status != 200 or query.get("name") in fake.fail_names:
                        self._send(status if status != 200 else 500, {"error": "Internal Server Error"},
                                   retry_after=status == 429)  # fmt: skip
                    else:
                        self._send(200, fake.answer(query))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _occurrence_search(self, query: dict[str, str]) -> None:
                cell = (
                    query.get("decimalLatitude", ""),
                    query.get("decimalLongitude", ""),
                    query.get("month"),
                )
                with fake._lock:
                    fake.occurrence_hits[cell] += 1
                    fake.occurrence_queries.append(dict(query))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    if fake.occurrence_fail_next:
                        status = fake.occurrence_fail_next.pop(0)
                    else:
                        status = fake.occurrence_status or 200
                try:
                    time.sleep(fake.delay)
                    if fake.occurrence_stall:
                        time.sleep(fake.occurrence_stall)
                    if status != 200:
                        self._send(status, {"error": "Service Unavailable"}, retry_after=status == 429)
                    elif fake.occurrence_invalid_json:
                        self._send_bytes(200, b'{"offset":0,"limit":0,"endOfRecords":false,"count":12')
                    else:
                        try:
                            body = fake.occurrence_answer(query)
                        except ValueError as exc:  # GBIF answers a malformed parameter 400
                            self._send(400, {"error": str(exc)})
                        else:
                            self._send(200, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _send(self, status: int, body: dict[str, Any], retry_after: bool = False) -> None:
                self._send_bytes(status, json.dumps(body).encode(), retry_after)

            def _send_bytes(self, status: int, data: bytes, retry_after: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, query: dict[str, str]) -> dict[str, Any]:
        name = query.get("name", "").strip()
        verbose = query.get("verbose") == "true"
        strict = query.get("strict") == "true"
        if name == "Passer domesticus":
            body = dict(PASSER_DOMESTICUS)
        elif name == "Passer domesticos" and not strict:
            body = {**PASSER_DOMESTICUS, "confidence": 94, "matchType": "FUZZY"}
        elif name in ("Passer nonexistentis", "Passer domesticos"):  # strict: no fuzzy match
            # A known genus, an unknown epithet: GBIF falls back to the genus.
            kept = ("kingdom", "phylum", "class", "order", "family", "genus", "synonym")
            body = {key: value for key, value in PASSER_DOMESTICUS.items() if key in kept or (
                key.endswith("Key") and key not in ("usageKey", "speciesKey"))}  # fmt: skip
            body.update(usageKey=2492321, scientificName="Passer Brisson, 1760", canonicalName="Passer",
                        rank="GENUS", status="ACCEPTED", confidence=94, matchType="HIGHERRANK")  # fmt: skip
        elif name in self.none_names or len(name.split()) != 2 or not name[0].isupper():
            body = dict(NONE)
            if verbose:
                body["note"] = "No match because of too little confidence"
        else:
            body = synthesized(name)
        if verbose and body.get("matchType") != "NONE":
            body["alternatives"] = [{**body, "confidence": 10, "matchType": "FUZZY"}]
        return body

    def reset_occurrences(self) -> None:
        self.occurrences: list[OccurrenceRow] = []
        self.occurrence_hits: Counter[tuple[str, str, str | None]] = Counter()
        self.occurrence_queries: list[dict[str, str]] = []
        self.occurrence_fail_next: list[int] = []
        self.occurrence_status: int | None = None  # answer every occurrence query with this status
        self.occurrence_stall = 0.0
        self.occurrence_invalid_json = False

    def occurrence_answer(self, query: dict[str, str]) -> dict[str, Any]:
        lat = _range(query, "decimalLatitude")
        lon = _range(query, "decimalLongitude")
        month = int(query["month"]) if "month" in query else None
        limit = int(query.get("limit", "20"))
        offset = int(query.get("offset", "0"))
        facet_limit = int(query.get("facetLimit", "10"))
        records: Counter[int] = Counter()
        for south, north, west, east, row_month, counts in list(self.occurrences):
            if lat is not None and not (lat[0] - 1e-9 <= south and north <= lat[1] + 1e-9):
                continue
            if lon is not None and not (lon[0] - 1e-9 <= west and east <= lon[1] + 1e-9):
                continue
            if month is not None and row_month is not None and row_month != month:
                continue
            records.update(counts)
        count = sum(records.values())
        facets = []
        if query.get("facet", "").replace("_", "").lower() == "specieskey":
            top = sorted(records.items(), key=lambda item: (-item[1], item[0]))[:facet_limit]
            facets.append({"field": "SPECIES_KEY", "counts": [{"name": str(k), "count": n} for k, n in top]})
        flat = (key for key, n in sorted(records.items()) for _ in range(n))  # one per record
        chosen = itertools.islice(flat, offset, offset + limit) if limit > 0 else ()
        results = [{"key": 4_000_000_000 + offset + i, "speciesKey": key} for i, key in enumerate(chosen)]
        return {
            "offset": offset,
            "limit": limit,
            "endOfRecords": offset + limit >= count,
            "count": count,
            "results": results,
            "facets": facets,
        }

    def __enter__(self) -> FakeGbif:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
