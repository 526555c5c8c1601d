"""fetch (URL -> bytes) and decode (bytes -> model-ready pixels)."""
