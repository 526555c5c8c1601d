"""``python -m app batch SOURCE --out DIR``: a whole collection of photos, identified as POST
/v1/identify identifies one observation, resumable, written as CSV, JSON lines, Camtrap DP and a
Darwin Core Archive. In the order a collection runs:

    sources (a folder, a CSV, a Camtrap DP package -> observations)  ->  journal (what is done)
    ->  engine (local, or Ray Data: each observation through ``Identifier.identify``)
    ->  outputs (predictions.csv, answers.jsonl, camtrap-dp/, dwca.zip, from the journal)
"""
