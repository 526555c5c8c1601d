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
                "vision_score": 0.7188,
                "geo_score": None,
                "combined_score": 0.7188,
            },
            {
                "rank": 2,
                "index": 660,
                "scientific_name": "Poecile carolinensis",
                "common_name": "Carolina Chickadee",
                "score": 0.0781,
                "vision_score": 0.0781,
                "geo_score": None,
                "combined_score": 0.0781,
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
        "filters": None,
        "geo": {"status": "not_requested", "reason": "no lat/lon given", "mode": "prior"},
        "thresholds": {"min_score": 0.1, "rollup_threshold": 0.8},
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

IDENTIFY: list[JsonValue] = [
    {  # the chickadee sample through both AIY models, shipped calibrations (top_k=2)
        "results": [
            {
                "rank": 1, "model": "aiy_birds_v1", "group": "bird", "index": 659,
                "scientific_name": "Poecile atricapillus", "common_name": "Black-capped Chickadee",
                "score": 0.9657, "vision_score": 0.9657, "geo_score": None,
                "combined_score": 0.9657, "geo_weight": None, "geo_records": None,
                "per_photo": [0.9657], "taxonomy": None,
            },
            {
                "rank": 2, "model": "aiy_birds_v1", "group": "bird", "index": 658,
                "scientific_name": "Poecile carolinensis", "common_name": "Carolina Chickadee",
                "score": 0.0161, "vision_score": 0.0161, "geo_score": None,
                "combined_score": 0.0161, "geo_weight": None, "geo_records": None,
                "per_photo": [0.0161], "taxonomy": None,
            },
        ],
        "no_match": False,
        "no_match_reason": None,
        "group": "bird",
        "model": "aiy_birds_v1",
        "why": (
            "aiy_birds_v1 fits best (class_cosine 0.398 >= its threshold 0.272); others: aiy_insects_v1 0.287"
        ),
        "models": [
            {
                "model": "aiy_birds_v1", "group": "bird", "signal": "class_cosine", "scope": 0.3984,
                "threshold": 0.2719, "accepted": True, "background": 0.0, "best": "Poecile atricapillus",
                "best_score": 0.9657,
            },
            {
                "model": "aiy_insects_v1", "group": "insect", "signal": "class_cosine", "scope": 0.2873,
                "threshold": 0.3764, "accepted": False, "background": 0.0, "best": "Acanthocephala declivis",
                "best_score": 0.6378,
            },
        ],
        "rollup": None,
        "geo": {"status": "not_requested", "reason": "no lat/lon given", "mode": "prior"},
        "filters": None,
        "thresholds": {"min_score": 0.1, "rollup_threshold": 0.8},
        "photos": [{"source": "upload", "format": "BMP", "width": 512, "height": 343, "bytes": 526986}],
        "timings_ms": {"fetch_ms": None, "decode_ms": 1.3, "infer_ms": 26.5, "total_ms": 44.1},
    }
]  # fmt: skip
