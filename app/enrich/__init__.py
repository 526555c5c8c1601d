"""Enrichment: GBIF names and taxonomy joined onto results (never fetched on the hot path)."""
