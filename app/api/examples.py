"""Examples shown in /docs for the responses (``schemas``): real answers, abridged."""

from pydantic.config import JsonValue

CLASSIFICATION: list[JsonValue] = [
    {
        "model": "aiy_birds_v1",
        "model_version": "3",
        "results": [
            {
                "rank": 1,
                "index": 659,
                "scientific_name": "Poecile atricapillus",
                "common_name": "Black-capped Chickadee",
                "score": 0.7188,
            },
            {
                "rank": 2,
                "index": 660,
                "scientific_name": "Poecile carolinensis",
                "common_name": "Carolina Chickadee",
                "score": 0.0781,
            },
        ],
        "no_match": False,
        "no_match_reason": None,
        "background_score": 0.0,
        "image": {
            "source": "url",
            "format": "JPEG",
            "width": 1024,
            "height": 768,
            "bytes": 181240,
        },
        "timings_ms": {"fetch_ms": 35.2, "decode_ms": 6.1, "infer_ms": 2.4, "total_ms": 44.8},
    }
]

LOOKUP: list[JsonValue] = [
    {
        "index": {
            "version": "v-20261121T203000Z-1a2b3c",
            "embedder": "aiy_insects_features",
            "n_vectors": 250,
            "n_species": 10,
            "index_type": "flat",
            "dim": 128,
            "created_at": "2026-11-21T20:30:00Z",
        },
        "results": [
            {
                "rank": 1,
                "index": 3,
                "scientific_name": "Danaus plexippus",
                "common_name": "Monarch",
                "score": 0.93,
                "neighbours": 18,
                "similarity": 0.91,
            }
        ],
        "no_match": False,
        "image": {
            "source": "upload",
            "format": "JPEG",
            "width": 800,
            "height": 600,
            "bytes": 91234,
        },
        "timings_ms": {"decode_ms": 6.1, "infer_ms": 4.0, "search_ms": 0.2, "total_ms": 10.5},
    }
]

GBIF_MATCH: list[JsonValue] = [
    {
        "usageKey": 5231190,
        "scientificName": "Passer domesticus (Linnaeus, 1758)",
        "canonicalName": "Passer domesticus",
        "rank": "SPECIES",
        "status": "ACCEPTED",
        "confidence": 99,
        "matchType": "EXACT",
        "kingdom": "Animalia",
        "genus": "Passer",
        "species": "Passer domesticus",
        "speciesKey": 5231190,
        "synonym": False,
        "flagged": False,
        "flag_reason": None,
        "cache": "miss",
    }
]

IDENTIFY: list[JsonValue] = []  # filled from a real answer below
