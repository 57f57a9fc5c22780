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


def code_digest(script: str | Path | None = None, lib: str | Path | None = None) -> str:
    """SHA-256 of the running script's import closure (:mod:`humandiff.io.closure`).

    Part of every resumable training run's fingerprint: DVC reruns a training stage when its code
    changes, and without the digest the finished run's checkpoint would be "resumed" with nothing
    left to train. The files are the closure DVC tracks for the stage (its code deps), computed
    statically, so a resumed run computes the same digest whatever the process imported before,
    and an edit to a module the stage never imports (the renderer, say) keeps the checkpoint.
    ``script`` defaults to ``__main__``'s file; without one (an interactive session) the digest
    covers every module of the package. ``lib``: the folder holding the package (default: this one).
    """
    from humandiff.io.closure import LIB, import_closure

    lib = Path(lib) if lib is not None else LIB
    if script is None:
        script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script and Path(script).is_file():
        files = import_closure(script, lib)
    else:
        files = sorted((lib / "humandiff").rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(lib).as_posix() if path.is_relative_to(lib) else "__main__"
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
