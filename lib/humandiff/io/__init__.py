"""Artifact I/O: atomic writers and checked readers."""

from .artifacts import (
    ArtifactError,
    atomic_path,
    check_finite,
    check_shape,
    concat_ragged,
    load_checkpoint,
    load_torch,
    read_checkpoint,
    load_params,
    restore_state,
    save_checkpoint,
    save_torch,
    load_npz,
    load_parquet,
    save_json,
    save_npz,
    save_parquet,
    split_ragged,
)
from .digests import code_digest, file_digest
