"""Image sets for the mesh-recovery methods: rendering plans, NPZ shards, keypoint drawings."""

from humandiff.imaging.sets import (
    SPLIT_OF_SET,
    BodyAssets,
    RenderSettings,
    RenderUnit,
    SetSizes,
    clip_table,
    plan_units,
    render_unit,
    render_units,
)
from humandiff.imaging.shards import (
    INDEX_COLUMNS,
    SET_NAMES,
    SHARD_FIELDS,
    ShardWriter,
    atomic_directory,
    check_shard_arrays,
    load_image_set,
    load_index,
    read_shard,
    write_shard,
)

__all__ = [
    "INDEX_COLUMNS",
    "SET_NAMES",
    "SHARD_FIELDS",
    "SPLIT_OF_SET",
    "BodyAssets",
    "RenderSettings",
    "RenderUnit",
    "SetSizes",
    "ShardWriter",
    "atomic_directory",
    "check_shard_arrays",
    "clip_table",
    "load_image_set",
    "load_index",
    "plan_units",
    "read_shard",
    "render_unit",
    "render_units",
    "write_shard",
]
