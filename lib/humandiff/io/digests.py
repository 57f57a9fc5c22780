"""SHA-256 digests of files and of the code, for resume fingerprints."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, read in 4 MiB blocks (new data must not resume an old run)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def code_digest() -> str:
    """SHA-256 of every Python source of the ``humandiff`` package and of the running script.

    Part of every resumable training run's fingerprint: DVC reruns a training stage when its code
    changes, and without the digest the finished run's checkpoint would be "resumed" with nothing
    left to train. The whole package, not just the modules a run has imported: that set depends on
    what the process did before, and a resumed run must compute the same digest.
    """
    root = Path(__file__).resolve().parents[1]
    files = [(str(path.relative_to(root)), path) for path in sorted(root.rglob("*.py"))]
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script and Path(script).is_file():
        files.append(("__main__", Path(script)))
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
