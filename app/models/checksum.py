"""sha256 of a model file, or of a SavedModel folder as a whole.

A folder's digest covers every file's relative path and contents, in sorted order, so renaming,
adding or changing any file (variables included) changes it.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


if __name__ == "__main__":  # used by download_volume.sh
    for arg in sys.argv[1:]:
        print(tree_sha256(Path(arg)), arg)
