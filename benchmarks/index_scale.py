"""Scale check for the species index: 500,000 x 128 vectors over 10,000 species.

Builds the index the way build-index does (unit vectors, inner product; HNSW from 100k vectors
on) and, side by side in the same run, an exact flat index over the same vectors, then times
single-query searches with k=100 (one thread, as a server worker runs them) and the full
search + species vote. Prints build time, memory, p50/p99 and HNSW's recall@100 against exact.

The vectors are synthetic but clustered like embeddings: each species a random centre, each
photo its centre plus noise (pure Gaussian noise would be a worst case no real embedder gives).

    .venv/bin/python benchmarks/index_scale.py                  # 500k x 128, 10k species
    .venv/bin/python benchmarks/index_scale.py --vectors 50000  # a quicker look
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from app.core import InputSpec, Label, l2_normalize
from app.index.artifacts import (
    EmbedderIdentity,
    IndexManifest,
    SpeciesIndex,
    new_faiss_index,
)
from app.index.vote import vote


def rss_mib() -> float:
    with Path("/proc/self/statm").open() as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_vectors(n: int, dim: int, species: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(species, dim)).astype(np.float32))
    labels = rng.integers(0, species, size=n).astype(np.int32)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # chunks keep the temporary arrays small
        part = labels[start : start + 100_000]
        noise = rng.normal(scale=0.6 / np.sqrt(dim), size=(len(part), dim)).astype(np.float32)
        vectors[start : start + len(part)] = l2_normalize(centres[part] + noise)
    return vectors, labels


def time_queries(fn, queries: np.ndarray) -> np.ndarray:
    times = np.empty(len(queries))
    for i, q in enumerate(queries):
        started = time.perf_counter()
        fn(q[np.newaxis])
        times[i] = (time.perf_counter() - started) * 1000
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=500_000)
    parser.add_argument("--species", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef-search", type=int, default=128)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # a server worker searches one query on one thread

    print(
        f"faiss {faiss.__version__}, {os.cpu_count()} CPUs; {args.vectors:,} x {args.dim} vectors, "
        f"{args.species:,} species, k={args.k}, {args.queries} single-vector queries"
    )
    vectors, labels = make_vectors(args.vectors, args.dim, args.species, seed=0)
    queries, query_labels = make_vectors(args.queries, args.dim, args.species, seed=0)  # same centres
    queries = l2_normalize(
        queries + np.random.default_rng(1).normal(scale=0.02, size=queries.shape).astype(np.float32)
    )

    built = {}
    for kind in ("flat", "chosen"):
        gc.collect()
        before = rss_mib()
        started = time.perf_counter()
        if kind == "flat":
            index, index_type = faiss.IndexFlatIP(args.dim), "flat"
        else:
            index, index_type = new_faiss_index(args.dim, args.vectors)  # what build-index picks
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building may use every core
        index.add(vectors)
        faiss.omp_set_num_threads(1)
        seconds = time.perf_counter() - started
        size = faiss.serialize_index(index).nbytes / 2**20
        built[kind] = (index, index_type, seconds, f"{size:.0f} / {rss_mib() - before:.0f}")

    identity = EmbedderIdentity(
        name="synthetic", sha256=None, output_key=None, input=InputSpec(), output_dim=args.dim
    )
    results = {}
    for kind, (index, index_type, seconds, memory) in built.items():
        manifest = IndexManifest(
            version="bench",
            created_at=datetime.now(UTC),
            embedder=identity,
            pca_dims=None,
            dim=args.dim,
            index_type=index_type,
            n_vectors=args.vectors,
            n_species=args.species,
        )
        species_index = SpeciesIndex(manifest, index, None, [Label(scientific_name="x")], labels)
        search = time_queries(lambda q, s=species_index: s.search(q, args.k, args.ef_search), queries)

        def search_and_vote(q, s=species_index):
            sims, rows = s.search(q, args.k, args.ef_search)
            return vote(sims[0], rows[0], s.rows, top_k=5, temperature=0.05)

        full = time_queries(search_and_vote, queries)
        _, ids = species_index.search(queries, args.k, args.ef_search)
        top1 = np.mean(
            [
                search_and_vote(q[np.newaxis])[0].label == t
                for q, t in zip(queries[:200], query_labels[:200], strict=True)
            ]
        )
        results[kind] = (index_type, seconds, memory, search, full, ids, top1)

    exact_ids = results["flat"][5]
    print(
        f"\n{'index':<8}{'build s':>9}{'MiB file/RSS':>14}{'search p50':>12}{'p99 ms':>8}"
        f"{'+vote p50':>11}{'p99 ms':>8}{'recall@k':>10}{'top-1':>7}"
    )
    for index_type, seconds, memory, search, full, ids, top1 in results.values():
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids, exact_ids, strict=True)])
        print(
            f"{index_type:<8}{seconds:9.1f}{memory:>14}{np.percentile(search, 50):12.3f}"
            f"{np.percentile(search, 99):8.3f}{np.percentile(full, 50):11.3f}{np.percentile(full, 99):8.3f}"
            f"{recall:10.3f}{top1:7.3f}"
        )
    chosen, flat = results["chosen"], results["flat"]
    ratio = np.percentile(flat[3], 50) / np.percentile(chosen[3], 50)
    print(
        f"\n{chosen[0]} search p50 is {ratio:.1f}x faster than exact flat search measured in the same run; "
        f"target p50 <= 2 ms: {'met' if np.percentile(chosen[3], 50) <= 2 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
