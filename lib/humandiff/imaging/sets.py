"""Building the image sets from the motion dataset's SMPL parameters.

Five sets, each drawn only from the clips of one motion split (no test clip reaches training):

- ``train`` / ``val``: single images of random frames of train / val clips;
- ``test``: single images of random frames of test clips;
- ``multiview``: ``views`` cameras around one instant of a test clip (ScoreHMR's multi-view
  setting: one person, one moment, several uncalibrated views); the same clothing in every view;
- ``video``: ``frames`` consecutive frames (the motion's 20 fps) of a test clip seen by one camera
  that is either static or slowly tracking/orbiting, with the same clothing, background and light
  in every frame.

Cameras: a pinhole camera at a random azimuth (0-360 degrees around the body), elevation
(``elevation_range``), focal length (``focal_range`` image widths) and fill (the body's projected
extent over the image side, ``fill_range``), whose distance follows from focal length and fill;
single images are then panned/tilted so the body sits up to ``offcentre`` image widths off centre,
which leaves some joints outside the image.

A unit (one single image, one multi-view instant or one video sequence) is rendered from its own
random generator, seeded by (seed, set, unit number): the images do not depend on the number of
worker processes or on the order in which they run.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from humandiff.body.model import posed_body, rest_joints
from humandiff.geometry.rotations import axis_angle_to_matrix_np, matrix_to_axis_angle_np
from humandiff.io.artifacts import ArtifactError
from humandiff.imaging.shards import SET_NAMES
from humandiff.render import Camera, SceneOptions, framing_camera, render_person

SPLIT_OF_SET = {"train": "train", "val": "val", "test": "test", "multiview": "test", "video": "test"}
_SET_CODE = {name: code for code, name in enumerate(SET_NAMES)}


@dataclass(frozen=True)
class RenderSettings:
    """How images look (see the module docstring); ranges are (low, high), sampled uniformly."""

    image_size: int = 128
    focal_range: tuple[float, float] = (1.0, 2.5)          # focal length / image width (53 to 23 deg FOV)
    elevation_range: tuple[float, float] = (-10.0, 35.0)   # degrees
    fill_range: tuple[float, float] = (0.6, 0.95)
    offcentre: float = 0.1                                  # image widths
    occluder_probability: float = 0.3
    video_occluders: bool = False   # occluders jump between frames (render_person places them anew), so off
    video_fill_scale: float = 0.8   # video cameras leave room for the body to move
    video_moving_fraction: float = 0.5
    video_orbit_deg_per_s: float = 10.0
    static_max_travel: float = 1.0  # metres of root travel up to which a video camera stays put
    fps: float = 20.0

    def __post_init__(self) -> None:
        if not (isinstance(self.image_size, int) and self.image_size >= 16):
            raise ArtifactError(f"render settings: 'image_size' must be an integer >= 16, got {self.image_size!r}")
        for name in ("focal_range", "elevation_range", "fill_range"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ArtifactError(f"render settings: '{name}' must satisfy low <= high, got {(low, high)}")
        if not self.focal_range[0] > 0:
            raise ArtifactError(f"render settings: 'focal_range' must be positive, got {self.focal_range}")
        if not (0 < self.fill_range[0] and self.fill_range[1] <= 1.5):
            raise ArtifactError(f"render settings: 'fill_range' must lie in (0, 1.5], got {self.fill_range}")
        if not (-90 < self.elevation_range[0] and self.elevation_range[1] < 90):
            raise ArtifactError(f"render settings: 'elevation_range' must lie in (-90, 90), got {self.elevation_range}")
        for name in ("offcentre", "video_orbit_deg_per_s", "static_max_travel"):
            if not getattr(self, name) >= 0:
                raise ArtifactError(f"render settings: '{name}' must be >= 0, got {getattr(self, name)}")
        for name in ("occluder_probability", "video_moving_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ArtifactError(f"render settings: '{name}' must lie in [0, 1], got {getattr(self, name)}")
        if not 0 < self.video_fill_scale <= 1 or not self.fps > 0:
            raise ArtifactError("render settings: 'video_fill_scale' must lie in (0, 1] and 'fps' be > 0")


@dataclass(frozen=True)
class SetSizes:
    """How many images (or units) each set gets."""

    train: int = 12000
    val: int = 600
    test: int = 1000
    multiview_instants: int = 150
    multiview_views: int = 4
    video_sequences: int = 20
    video_frames: int = 48

    def __post_init__(self) -> None:
        for name in ("train", "val", "test", "multiview_instants", "video_sequences"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ArtifactError(f"set sizes: '{name}' must be an integer >= 0, got {getattr(self, name)!r}")
        for name in ("multiview_views", "video_frames"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 2):
                raise ArtifactError(f"set sizes: '{name}' must be an integer >= 2, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class RenderUnit:
    """One job: frames of one clip to render, with their SMPL parameters.

    kind 'single' (T = 1, one view), 'multiview' (T = 1, ``views`` cameras) or 'video' (T frames,
    one moving or static camera). ``global_orient`` (T, 3), ``body_pose`` (T, 69), ``transl`` (T, 3)
    world-frame SMPL; ``betas`` (L,); ``seed`` the (seed, set, number) entropy of its generator.
    """

    set_name: str
    kind: str
    clip_id: str
    frames: np.ndarray
    views: int
    sequence: int
    seed: tuple[int, int, int]
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray

    @property
    def image_count(self) -> int:
        return len(self.frames) * self.views


# ---------------------------------------------------------------------------------- planning
def check_index_source(clips: pd.DataFrame, originals: pd.DataFrame, offsets: np.ndarray) -> None:
    """Refuse a split index that was not prepared from these raw clips (e.g. ``prepare_motion.source:
    humanml3d``, whose ids collide with the synthetic ones): its original (not mirrored) rows must be
    exactly the raw clips, each with one frame fewer of features than raw joint frames."""
    raw_length = dict(zip(clips["clip_id"].astype(str), np.diff(offsets).astype(np.int64)))
    ids = originals["clip_id"].astype(str) if "clip_id" in originals else originals["source_id"].astype(str)
    same_ids = set(ids) == set(raw_length) and (ids == originals["source_id"].astype(str)).all()
    if same_ids and "length" in originals:
        same_ids = all(raw_length[i] - 1 == int(n) for i, n in zip(ids, originals["length"]))
    if not same_ids:
        raise ArtifactError("index.parquet: its clips are not synth_motion's clips, which render draws: "
                            "render needs parameter 'prepare_motion.source' = synthetic")


def clip_table(clips: pd.DataFrame, split_index: pd.DataFrame, offsets: np.ndarray) -> pd.DataFrame:
    """Raw clips (clips.parquet rows, in motions.npz order) with their split from the prepared index
    (rows with mirror == False; a clip's ``source_id`` is the raw ``clip_id``): columns clip_id, start,
    length, split, raw (row in the raw arrays)."""
    if len(offsets) != len(clips) + 1:
        raise ArtifactError(f"motions.npz: field 'offsets' has {len(offsets)} entries for {len(clips)} clips (expected K+1)")
    originals = split_index[~split_index["mirror"].astype(bool)]
    check_index_source(clips, originals, offsets)
    split_of = dict(zip(originals["source_id"].astype(str), originals["split"].astype(str)))
    table = pd.DataFrame({
        "clip_id": clips["clip_id"].astype(str).to_numpy(),
        "start": offsets[:-1].astype(np.int64),
        "length": np.diff(offsets).astype(np.int64),
        "raw": np.arange(len(clips)),
    })
    table["split"] = table["clip_id"].map(split_of)
    missing = table["split"].isna()
    if missing.all():
        raise ArtifactError("index.parquet: no clip of clips.parquet has a split (field 'source_id' does not match 'clip_id')")
    bad = set(table.loc[~missing, "split"]) - {"train", "val", "test"}
    if bad:
        raise ArtifactError(f"index.parquet: field 'split' has unknown value(s) {sorted(bad)}")
    return table[~missing].reset_index(drop=True)


def _unit(set_name: str, kind: str, row: pd.Series, frames: np.ndarray, views: int, sequence: int, seed: int,
          number: int, motions: dict[str, np.ndarray]) -> RenderUnit:
    rows = int(row.start) + frames
    return RenderUnit(
        set_name=set_name, kind=kind, clip_id=str(row.clip_id), frames=frames.astype(np.int64), views=views,
        sequence=sequence, seed=(int(seed), _SET_CODE[set_name], int(number)),
        global_orient=motions["global_orient"][rows].astype(np.float32),
        body_pose=motions["body_pose"][rows].astype(np.float32),
        transl=motions["transl"][rows].astype(np.float32),
        betas=motions["betas"][int(row.raw)].astype(np.float32),
    )


def plan_units(table: pd.DataFrame, motions: dict[str, np.ndarray], sizes: SetSizes, seed: int) -> list[RenderUnit]:
    """Every unit of every set, in set order (SET_NAMES) then by clip and frame.

    Single-image sets sample frames uniformly over all frames of their split's clips (without
    replacement while there are enough); multi-view instants pick a random frame of a random test
    clip; video sequences take a random window of ``video_frames`` frames of distinct test clips
    long enough to hold it (with replacement once each such clip has been used).
    """
    units: list[RenderUnit] = []
    for set_name in SET_NAMES:
        rng = np.random.default_rng([int(seed), _SET_CODE[set_name], 0x5E7])
        pool = table[table["split"] == SPLIT_OF_SET[set_name]].reset_index(drop=True)
        if set_name in ("train", "val", "test"):
            count = getattr(sizes, set_name)
            if count == 0:
                continue
            if pool.empty:
                raise ArtifactError(f"index.parquet: no '{SPLIT_OF_SET[set_name]}' clip for the {set_name} set")
            lengths = pool["length"].to_numpy()
            total = int(lengths.sum())
            picks = np.sort(rng.choice(total, size=count, replace=count > total))
            clip_of = np.searchsorted(np.cumsum(lengths), picks, side="right")
            frame_of = picks - np.concatenate([[0], np.cumsum(lengths)])[clip_of]
            for number, (c, f) in enumerate(zip(clip_of, frame_of)):
                units.append(_unit(set_name, "single", pool.iloc[c], np.array([f]), 1, -1, seed, number, motions))
        elif set_name == "multiview":
            if sizes.multiview_instants == 0:
                continue
            if pool.empty:
                raise ArtifactError("index.parquet: no 'test' clip for the multiview set")
            chosen = np.sort(rng.integers(len(pool), size=sizes.multiview_instants))
            for number, c in enumerate(chosen):
                row = pool.iloc[c]
                frame = int(rng.integers(int(row.length)))
                units.append(_unit(set_name, "multiview", row, np.array([frame]), sizes.multiview_views, number, seed,
                                   number, motions))
        else:
            if sizes.video_sequences == 0:
                continue
            long_enough = pool[pool["length"] >= sizes.video_frames].reset_index(drop=True)
            if long_enough.empty:
                raise ArtifactError(f"index.parquet: no 'test' clip has the {sizes.video_frames} frames a video sequence needs")
            order = rng.permutation(len(long_enough))
            picks = np.concatenate([order] * (sizes.video_sequences // len(order) + 1))[: sizes.video_sequences]
            for number, c in enumerate(picks):
                row = long_enough.iloc[int(c)]
                start = int(rng.integers(int(row.length) - sizes.video_frames + 1))
                units.append(_unit(set_name, "video", row, start + np.arange(sizes.video_frames), 1, number, seed,
                                   number, motions))
    return units


# ---------------------------------------------------------------------------------- cameras
def _pan_tilt(camera: Camera, pan: float, tilt: float) -> Camera:
    """The camera turned about its own centre by ``pan`` (about its y axis) and ``tilt`` (about x), radians."""
    cy, sy, cx, sx = np.cos(pan), np.sin(pan), np.cos(tilt), np.sin(tilt)
    turn = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]]) @ np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    return Camera(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                  turn @ np.array(camera.R), turn @ np.array(camera.t))


def _random_view(rng: np.random.Generator, settings: RenderSettings, azimuth: float | None = None
                 ) -> tuple[float, float, float, float]:
    """(azimuth deg, elevation deg, focal px, fill) of a random camera."""
    azimuth = rng.uniform(0.0, 360.0) if azimuth is None else azimuth
    elevation = rng.uniform(*settings.elevation_range)
    focal = rng.uniform(*settings.focal_range) * settings.image_size
    fill = rng.uniform(*settings.fill_range)
    return azimuth, elevation, focal, fill


def single_camera(vertices: np.ndarray, rng: np.random.Generator, settings: RenderSettings,
                  azimuth: float | None = None, offcentre: bool = True) -> Camera:
    """A random framed camera for a body (V, 3), panned so the body sits off centre when asked."""
    azimuth, elevation, focal, fill = _random_view(rng, settings, azimuth)
    size = settings.image_size
    camera = framing_camera(vertices, size, size, azimuth, elevation, fill, focal)
    shift = rng.uniform(-settings.offcentre, settings.offcentre, size=2) * size if offcentre else np.zeros(2)
    return _pan_tilt(camera, float(np.arctan2(shift[0], focal)), float(np.arctan2(shift[1], focal)))


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding: (T, D) -> (T, D)."""
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(values.shape[1])], 1)


def video_cameras(vertices: np.ndarray, root: np.ndarray, rng: np.random.Generator, settings: RenderSettings
                  ) -> tuple[list[Camera], str, float]:
    """Cameras for a sequence of bodies (T, V, 3) with root positions (T, 3): (cameras, mode, orbit speed).

    Mode 'static' (the root travels less than ``static_max_travel``: one target and distance for the
    whole sequence, framing all frames) or 'tracking' (the camera looks at the 1-second moving
    average of the body centre, so the body drifts a little in the frame). Either may orbit at a
    constant speed (deg/s, 0 for a still camera).
    """
    azimuth, elevation, focal, fill = _random_view(rng, settings)
    fill *= settings.video_fill_scale
    speed = 0.0
    if rng.random() < settings.video_moving_fraction:
        speed = float(rng.uniform(-settings.video_orbit_deg_per_s, settings.video_orbit_deg_per_s))
    frames = len(vertices)
    azimuths = azimuth + speed * np.arange(frames) / settings.fps
    size = settings.image_size
    travel = float(np.linalg.norm(root[:, [0, 2]] - root[:, [0, 2]].mean(0), axis=1).max())
    if travel < settings.static_max_travel:
        mode = "static"
        everything = vertices.reshape(-1, 3)
        centre = 0.5 * (everything.min(0) + everything.max(0))
        targets = np.repeat(centre[None], frames, 0)
        distance = max(float(np.linalg.norm(framing_camera(everything, size, size, a, elevation, fill, focal).center - centre))
                       for a in azimuths[[0, frames // 2, -1]])
    else:
        mode = "tracking"
        centres = 0.5 * (vertices.min(1) + vertices.max(1))
        targets = _smooth(centres, int(round(settings.fps)) | 1)
        distance = max(float(np.linalg.norm(framing_camera(v, size, size, a, elevation, fill, focal).center - c))
                       for v, a, c in zip(vertices[::4], azimuths[::4], centres[::4]))
    cameras = [Camera.orbit(distance, elevation, float(a), focal, size, size, target=tgt) for a, tgt in zip(azimuths, targets)]
    return cameras, mode, speed


# ---------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class BodyAssets:
    """What rendering needs from the body model: the model, faces (F, 3) and skinning weights (V, 24)."""

    model: object
    faces: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_model(cls, model) -> BodyAssets:
        return cls(model, np.asarray(model.faces, dtype=np.int64), model.lbs_weights.detach().numpy().astype(np.float64))


def _silhouette_box(mask: np.ndarray, joints_2d: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of the silhouette's pixels (their outer edges), or of the joints if it is empty."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.concatenate([joints_2d.min(0), joints_2d.max(0)]).astype(np.float32)
    return np.array([cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5], dtype=np.float32)


def _camera_frame_params(global_orient: np.ndarray, transl: np.ndarray, root_rest: np.ndarray, camera: Camera
                         ) -> tuple[np.ndarray, np.ndarray]:
    """World-frame root rotation (3,) and transl (3,) -> the camera-frame ones. SMPL rotates about the
    rest root joint j0, so transl_cam = R (j0 + transl) + t - j0."""
    rotation = np.array(camera.R) @ axis_angle_to_matrix_np(global_orient.astype(np.float64))
    transl_cam = np.array(camera.R) @ (root_rest + transl) + np.array(camera.t) - root_rest
    return matrix_to_axis_angle_np(rotation), transl_cam


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: multi-threaded reductions round differently, and the
    images must not depend on how many threads the calling process happens to use."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def render_unit(unit: RenderUnit, body: BodyAssets, settings: RenderSettings) -> list[dict[str, object]]:
    """Render every image of ``unit``: one record per image with the SHARD_FIELDS arrays and the
    descriptive fields (frame, view, background, colouring, occluded, camera_mode, orbit_deg_per_s)."""
    frames = len(unit.frames)
    with torch.no_grad(), _single_thread():
        vertices, joints = posed_body(body.model, torch.as_tensor(unit.global_orient), torch.as_tensor(unit.body_pose),
                                      torch.as_tensor(unit.betas)[None], torch.as_tensor(unit.transl))
        root_rest = rest_joints(body.model, unit.betas)[0]
    vertices, joints = vertices.numpy().astype(np.float64), joints.numpy().astype(np.float64)
    camera_rng = np.random.default_rng([*unit.seed, 0])
    appearance_seed = [*unit.seed, 1]

    views: list[tuple[int, int, Camera, SceneOptions, np.random.Generator]] = []  # (frame idx, view, camera, options, rng)
    camera_mode, speed = "framed", 0.0
    base = SceneOptions(occluder_probability=settings.occluder_probability)
    if unit.kind == "single":
        views.append((0, 0, single_camera(vertices[0], camera_rng, settings), base, np.random.default_rng(appearance_seed)))
    elif unit.kind == "multiview":
        start = camera_rng.uniform(0.0, 360.0)
        for view in range(unit.views):
            azimuth = start + 360.0 * view / unit.views + camera_rng.uniform(-15.0, 15.0)
            camera = single_camera(vertices[0], camera_rng, settings, azimuth=azimuth, offcentre=False)
            # Same person in every view: one appearance seed; occluders drawn per view.
            occluded = camera_rng.random() < settings.occluder_probability
            options = SceneOptions(occluder_probability=1.0 if occluded else 0.0)
            views.append((0, view, camera, options, np.random.default_rng(appearance_seed)))
    elif unit.kind == "video":
        cameras, camera_mode, speed = video_cameras(vertices, joints[:, 0], camera_rng, settings)
        options = SceneOptions(occluder_probability=settings.occluder_probability if settings.video_occluders else 0.0)
        # One appearance seed for every frame: same clothing, background and light throughout.
        views = [(f, 0, cameras[f], options, np.random.default_rng(appearance_seed)) for f in range(frames)]
    else:
        raise ArtifactError(f"render_unit: unknown unit kind '{unit.kind}'")

    records = []
    for frame_index, view, camera, options, rng in views:
        result = render_person(vertices[frame_index], body.faces, body.weights, camera, rng, options,
                               joints=joints[frame_index])
        orient_cam, transl_cam = _camera_frame_params(unit.global_orient[frame_index], unit.transl[frame_index],
                                                      root_rest, camera)
        joints_2d = np.asarray(result["joints_2d"], dtype=np.float32)
        records.append({
            "frame": int(unit.frames[frame_index]),
            "view": view,
            "fps": settings.fps,
            "background": str(result["background_kind"]),
            "colouring": str(result["colouring"]),
            "occluded": bool(np.asarray(result["occluder_mask"]).any()),
            "camera_mode": camera_mode,
            "orbit_deg_per_s": speed,
            "image": np.asarray(result["image"], dtype=np.uint8),
            "global_orient": unit.global_orient[frame_index],
            "body_pose": unit.body_pose[frame_index],
            "betas": unit.betas,
            "transl": unit.transl[frame_index],
            "global_orient_cam": orient_cam.astype(np.float32),
            "transl_cam": transl_cam.astype(np.float32),
            "intrinsics": np.array([camera.fx, camera.fy, camera.cx, camera.cy]),
            "R": np.array(camera.R),
            "t": np.array(camera.t),
            "joints_3d": joints[frame_index].astype(np.float32),
            "joints_cam": camera.world_to_camera(joints[frame_index]).astype(np.float32),
            "joints_2d": joints_2d,
            "visible": np.asarray(result["visible"], dtype=bool),
            "in_image": np.asarray(result["in_image"], dtype=bool),
            "bbox": _silhouette_box(np.asarray(result["body_mask"]), joints_2d),
        })
    return records


# Per-process state of a rendering pool: set once by the pool initializer, read by _render_in_worker.
_WORKER: dict[str, object] = {}


def _init_worker(body_path: str, settings: RenderSettings) -> None:
    from humandiff.body.model import load_body_model

    torch.set_num_threads(1)
    _WORKER["body"] = BodyAssets.from_model(load_body_model(body_path))
    _WORKER["settings"] = settings


def _render_in_worker(unit: RenderUnit) -> list[dict[str, object]]:
    return render_unit(unit, _WORKER["body"], _WORKER["settings"])


def render_units(units: Sequence[RenderUnit], body_path: str, settings: RenderSettings, workers: int = 1,
                 on_unit: Callable[[RenderUnit], None] | None = None) -> Iterator[tuple[RenderUnit, list[dict[str, object]]]]:
    """Render ``units`` in order over ``workers`` processes, yielding (unit, records) as they complete in
    order; ``on_unit`` is called after each (e.g. to advance a progress bar)."""
    if not (isinstance(workers, int) and workers >= 1):
        raise ArtifactError(f"render: 'workers' must be a positive integer, got {workers!r}")
    if workers == 1:
        from humandiff.body.model import load_body_model

        body = BodyAssets.from_model(load_body_model(body_path))
        for unit in units:
            records = render_unit(unit, body, settings)
            if on_unit:
                on_unit(unit)
            yield unit, records
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(body_path, settings)) as pool:
        for unit, records in zip(units, pool.map(_render_in_worker, units, chunksize=4)):
            if on_unit:
                on_unit(unit)
            yield unit, records
