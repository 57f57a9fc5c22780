"""Procedural scenes around a posed body: backgrounds, clothing-like colours, lighting,
occluders, and the ground truth that goes with each image (2D joints and their visibility).

Everything random is drawn from the ``numpy.random.Generator`` passed in, in a fixed order,
so the same generator state gives the same image. World y is up (see
:mod:`humandiff.render.camera` for the camera and pixel conventions).

Joint visibility (``joint_visibility``): a joint is visible when all of
- ``in_image``: it lies in front of the camera and inside the image, i.e. its pixel
  coordinates fall in [-0.5, W - 0.5) x [-0.5, H - 0.5) (the area of the pixel grid);
- not ``occluded_by_object``: no occluder covers the pixel nearest to it;
- not ``self_occluded``: the body surface seen at that pixel is either part of the joint's
  own body parts (the joint, its parent or its children in the kinematic tree, by the dominant
  skinning weight of the visible face), or lies less than ``tolerance`` (default 0.1 m, about
  the half-thickness of a torso or thigh) in front of the joint. A joint sits inside the
  body, so its own flesh is always in front of it: the part test accepts that flesh whatever
  its thickness, and the tolerance accepts surfaces of neighbouring parts around a joint
  (e.g. the chest in front of a shoulder) while another limb crossing in front still hides it.
  Without part labels only the depth test applies.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from humandiff.body.model import SMPL_PARENTS as _SMPL_PARENTS
from humandiff.io.artifacts import ArtifactError
from humandiff.render.camera import Camera
from humandiff.render.raster import DirectionalLight, check_mesh, render_mesh

SMPL_PARENTS = np.array(_SMPL_PARENTS)  # the kinematic tree of SMPL's 24 joints

# Clothing regions by the dominant skinning joint of a vertex (SMPL's 24-joint layout; a joint
# skins the bone that runs from it to its child, e.g. l_knee skins the left shin).
_SHIRT_JOINTS = (3, 6, 9, 13, 14, 16, 17)
_SLEEVE_JOINTS = (18, 19)
_TROUSER_JOINTS = (0, 1, 2)
_SHIN_JOINTS = (4, 5)
_SHOE_JOINTS = (7, 8, 10, 11)
_HEAD_JOINT, _NECK_JOINT = 15, 12
_PELVIS_JOINT, _LEFT_COLLAR_JOINT, _RIGHT_COLLAR_JOINT = 0, 13, 14
_CHEST_JOINTS = (6, 9)  # spine2, spine3: the chest

_SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.91, 0.72, 0.58], [0.78, 0.57, 0.44], [0.62, 0.43, 0.30], [0.45, 0.30, 0.20],
     [0.30, 0.20, 0.14]]
)  # fmt: skip
_HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.25, 0.15, 0.08], [0.45, 0.30, 0.15], [0.80, 0.65, 0.40], [0.55, 0.55, 0.55],
     [0.55, 0.20, 0.08]]
)  # fmt: skip

BACKGROUND_KINDS = ("gradient", "noise", "shapes", "stripes", "floor")
COLOURING_KINDS = ("clothing", "parts")


@dataclass(frozen=True)
class SceneOptions:
    """Choices and ranges for :func:`render_person` (each ``*_range`` is (low, high), sampled uniformly)."""

    background_kinds: tuple[str, ...] = BACKGROUND_KINDS
    colouring_kinds: tuple[str, ...] = COLOURING_KINDS
    smooth_shading: bool = True
    light_intensity_range: tuple[float, float] = (0.5, 0.9)
    ambient_range: tuple[float, float] = (0.25, 0.5)
    light_tint: float = 0.15  # largest drop of one light channel below white
    occluder_probability: float = 0.3
    max_occluders: int = 2
    occluder_size_range: tuple[float, float] = (0.15, 0.4)  # times the silhouette's height
    noise_std_range: tuple[float, float] = (0.0, 3.0)  # std of additive sensor noise, 0-255 units
    floor_height: float | None = None  # world y of the floor; None: the lowest vertex
    self_occlusion_tolerance: float = 0.1  # metres, see joint_visibility

    def __post_init__(self) -> None:
        for name, allowed in (("background_kinds", BACKGROUND_KINDS), ("colouring_kinds", COLOURING_KINDS)):
            kinds = getattr(self, name)
            if not kinds or any(kind not in allowed for kind in kinds):
                raise ArtifactError(f"scene options: '{name}' must be a non-empty subset of {allowed}, got {kinds}")
        for name in ("light_intensity_range", "ambient_range", "occluder_size_range", "noise_std_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ArtifactError(f"scene options: '{name}' must satisfy 0 <= low <= high, got {(low, high)}")
        if not 0 <= self.occluder_probability <= 1:
            raise ArtifactError(
                f"scene options: 'occluder_probability' must lie in [0, 1], got {self.occluder_probability}"
            )
        if self.max_occluders < 0 or not 0 <= self.light_tint < 1 or self.self_occlusion_tolerance < 0:
            raise ArtifactError(
                "scene options: 'max_occluders', 'light_tint' or 'self_occlusion_tolerance' out of range"
            )


# ---------------------------------------------------------------------------- colour helpers
def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


def part_palette(joint_count: int, hue_offset: float = 0.0) -> np.ndarray:
    """Distinct colours (J, 3) in [0, 1], one per joint (golden-ratio hue steps)."""
    return np.array(
        [
            _hsv(j * 0.6180339887 + hue_offset, 0.75 if j % 2 == 0 else 0.55, 0.95 if j % 3 == 0 else 0.8)
            for j in range(joint_count)
        ]
    ).reshape(joint_count, 3)


def _check_weights(skin_weights: np.ndarray, vertex_count: int) -> np.ndarray:
    weights = np.asarray(skin_weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[0] != vertex_count:
        raise ArtifactError(f"scene: 'skin_weights' must have shape ({vertex_count}, J), got {weights.shape}")
    if not np.isfinite(weights).all():
        raise ArtifactError("scene: 'skin_weights' must be finite")
    return weights


def part_colours(skin_weights: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Per-vertex colours (V, 3): the joints' palette (J, 3) blended by skinning weights (V, J)."""
    weights = _check_weights(skin_weights, len(skin_weights))
    palette = np.asarray(palette, dtype=np.float64)
    if palette.shape != (weights.shape[1], 3):
        raise ArtifactError(f"scene: 'palette' must have shape ({weights.shape[1]}, 3), got {palette.shape}")
    return np.clip(weights @ palette, 0.0, 1.0)


def _body_forward(vertices: np.ndarray, dominant: np.ndarray) -> np.ndarray | None:
    """The torso's unit forward direction (3,) from posed vertices: SMPL's +x is the body's left
    and +y its up, so forward = left x up, with left from the right to the left collar and up
    from the pelvis to the neck. ``None`` when a region is missing or degenerate."""
    centres = {}
    for joint in (_PELVIS_JOINT, _NECK_JOINT, _LEFT_COLLAR_JOINT, _RIGHT_COLLAR_JOINT):
        members = dominant == joint
        if not members.any():
            return None
        centres[joint] = vertices[members].mean(axis=0)
    left = centres[_LEFT_COLLAR_JOINT] - centres[_RIGHT_COLLAR_JOINT]
    up = centres[_NECK_JOINT] - centres[_PELVIS_JOINT]
    forward = np.cross(left, up)
    norm = np.linalg.norm(forward)
    return forward / norm if norm > 1e-9 else None


def clothing_colours(vertices: np.ndarray, skin_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clothing-like per-vertex colours (V, 3) for an SMPL-layout body (24 joints).

    Regions by dominant joint: shirt (torso, upper arms), sleeves or bare forearms, trousers
    (hips, thighs), trousers or shorts (shins), shoes (feet), skin (neck, face, hands) and
    hair (the top of the head along the neck->head axis, and the back of the head down to the
    neck). Half the shirts carry a chest print. Real people look different from the front and
    from behind (face against hair, the front of their clothes); without such cues a small
    keypoint network confuses the two views and swaps left and right joints.
    """
    weights = _check_weights(skin_weights, len(vertices))
    if weights.shape[1] != 24:
        raise ArtifactError(f"scene: clothing colours need SMPL's 24 joints in 'skin_weights', got {weights.shape[1]}")
    vertices = np.asarray(vertices, dtype=np.float64)
    dominant = np.argmax(weights, axis=1)
    # A skin tone on the piecewise-linear path through the anchors, light to dark.
    tone = rng.random() * (len(_SKIN_TONES) - 1)
    low = min(int(tone), len(_SKIN_TONES) - 2)
    skin = _SKIN_TONES[low] + (tone - low) * (_SKIN_TONES[low + 1] - _SKIN_TONES[low])
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
    shirt = _hsv(rng.random(), rng.uniform(0.2, 0.85), rng.uniform(0.3, 0.95))
    trousers = _hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.75))
    shoes = _hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.08, 0.5))
    long_sleeves, long_trousers = rng.random() < 0.5, rng.random() < 0.75
    hair_fraction = rng.uniform(0.35, 0.65)  # share of the head's vertices, from the top
    chest_print = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.2, 1.0)) if rng.random() < 0.5 else None

    colours = np.tile(skin, (len(vertices), 1))
    region = lambda joints: np.isin(dominant, joints)  # noqa: E731
    colours[region(_SHIRT_JOINTS + (_SLEEVE_JOINTS if long_sleeves else ()))] = shirt
    colours[region(_TROUSER_JOINTS + (_SHIN_JOINTS if long_trousers else ()))] = trousers
    colours[region(_SHOE_JOINTS)] = shoes
    head, neck = dominant == _HEAD_JOINT, dominant == _NECK_JOINT
    forward = _body_forward(vertices, dominant)
    if head.any() and neck.any():
        head_centre, neck_centre = vertices[head].mean(axis=0), vertices[neck].mean(axis=0)
        axis = head_centre - neck_centre
        if np.linalg.norm(axis) > 0:
            height = (vertices[head] - head_centre) @ (axis / np.linalg.norm(axis))
            hairy = height >= np.quantile(height, 1.0 - hair_fraction)
            if forward is not None:
                # the back of the head down to just above the neck is hair; the face (the front
                # below the hairline) stays skin
                depth = (vertices[head] - head_centre) @ forward
                face = (depth > np.quantile(depth, 0.6)) & (height < np.quantile(height, 0.85))
                hairy = (hairy & ~face) | ((depth < 0.0) & (height >= np.quantile(height, 0.15)))
            colours[np.flatnonzero(head)[hairy]] = hair
    torso = np.isin(dominant, _CHEST_JOINTS)
    if chest_print is not None and forward is not None and torso.any():
        centre = vertices[torso].mean(axis=0)
        depth = (vertices[torso] - centre) @ forward
        colours[np.flatnonzero(torso)[depth > np.quantile(depth, 0.7)]] = chest_print
    # Slight per-vertex variation so large regions are not perfectly flat.
    colours *= rng.uniform(0.93, 1.07, size=(len(vertices), 1))
    return np.clip(colours, 0.0, 1.0)


# ---------------------------------------------------------------------------- backgrounds
def _smooth_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 4) -> np.ndarray:
    """Multi-octave value noise in [0, 1], (H, W) float32."""
    total = np.zeros((height, width), dtype=np.float32)
    amplitude, weight = 1.0, 0.0
    cells = int(rng.integers(2, 6))
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight += amplitude
        amplitude *= 0.5
        cells *= 2
    total /= weight
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-6)


def _random_colour(rng: np.random.Generator, value_range: tuple[float, float] = (0.2, 0.95)) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(*value_range))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _mix(weight: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per-pixel blend first + weight * (second - first): weight (H, W), colours (3,) -> (H, W, 3) uint8.

    Channel by channel on (H, W) planes: broadcasting against a trailing axis of 3 is several
    times slower in numpy.
    """
    weight = weight.astype(np.float32, copy=False)
    return cv2.merge([_to_uint8(first[c] + weight * np.float32(second[c] - first[c])) for c in range(3)])


def _ramp(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image at a random angle, (H, W) float32."""
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (
        np.float32(np.cos(angle) / width) * np.arange(width, dtype=np.float32)[None, :]
        + np.float32(np.sin(angle) / height) * np.arange(height, dtype=np.float32)[:, None]
    )
    return (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)


def gradient_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear gradient between two random colours at a random angle, (H, W, 3) uint8."""
    first, second = _random_colour(rng), _random_colour(rng)
    return _mix(_ramp(rng, height, width), first, second)


def noise_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth value-noise texture mapped between two random colours, (H, W, 3) uint8."""
    first, second = _random_colour(rng), _random_colour(rng)
    return _mix(_smooth_noise(rng, height, width), first, second)


def shapes_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random filled rectangles, circles and thick lines over a flat colour, (H, W, 3) uint8."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = _to_uint8(_random_colour(rng))
    size = max(height, width)
    for _ in range(int(rng.integers(4, 12))):
        colour = tuple(int(c) for c in _to_uint8(_random_colour(rng)))
        kind = rng.integers(3)
        x, y = int(rng.integers(width)), int(rng.integers(height))
        extent = int(rng.uniform(0.05, 0.35) * size)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + extent, y + int(rng.uniform(0.3, 1.5) * extent)), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), max(extent // 2, 1), colour, -1)
        else:
            end = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, (x, y), end, colour, max(size // 40, 1))
    return image


def stripes_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Soft or hard stripes at a random angle and period, (H, W, 3) uint8."""
    first, second = _random_colour(rng), _random_colour(rng)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.04, 0.25) * max(height, width)
    phase = (
        np.float32(np.cos(angle) * 2 * np.pi / period) * np.arange(width, dtype=np.float32)[None, :]
        + np.float32(np.sin(angle) * 2 * np.pi / period) * np.arange(height, dtype=np.float32)[:, None]
    )
    wave = np.sin(phase)
    mix = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * wave
    return _mix(mix, first, second)


def floor_background(rng: np.random.Generator, camera: Camera, floor_height: float) -> np.ndarray:
    """A tiled floor on the world plane y = ``floor_height`` seen through ``camera``, under a
    wall gradient, (H, W, 3) uint8. Far tiles fade to their mean colour (no aliasing)."""
    height, width = camera.height, camera.width
    tile = rng.uniform(0.3, 1.0)
    first, second = _random_colour(rng, (0.3, 0.9)), _random_colour(rng, (0.15, 0.7))
    wall_low, wall_high = _random_colour(rng, (0.4, 0.95)), _random_colour(rng, (0.4, 0.95))
    x_camera = ((np.arange(width) - camera.cx) / camera.fx)[None, :]
    y_camera = ((np.arange(height) - camera.cy) / camera.fy)[:, None]
    # World direction of each pixel's ray: R.T @ (x, y, 1).
    rays = [camera.R[0, i] * x_camera + camera.R[1, i] * y_camera + camera.R[2, i] for i in range(3)]
    ray_length = np.sqrt(rays[0] ** 2 + rays[1] ** 2 + rays[2] ** 2)
    origin = camera.center
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = (floor_height - origin[1]) / rays[1]
    on_floor = np.isfinite(distance) & (distance > 0)
    distance = np.where(on_floor, distance, 0.0)
    checker = (
        np.floor((origin[0] + distance * rays[0]) / tile) + np.floor((origin[2] + distance * rays[2]) / tile)
    ) % 2
    # A pixel spans about distance * |ray| / f metres; once that nears a tile the pattern would alias.
    fade = np.clip((distance * ray_length / camera.fx / tile - 0.15) / 0.35, 0.0, 1.0)
    darkening = np.clip(1.0 - 0.02 * distance, 0.6, 1.0)
    elevation = np.clip(rays[1] / ray_length, 0.0, 1.0)
    planes = []
    for c in range(3):
        floor = (first[c] + checker * (second[c] - first[c])) * (1 - fade) + fade * 0.5 * (first[c] + second[c])
        wall = wall_low[c] + elevation * (wall_high[c] - wall_low[c])
        planes.append(_to_uint8(np.where(on_floor, floor * darkening, wall)))
    return cv2.merge(planes)


def make_background(kind: str, rng: np.random.Generator, camera: Camera, floor_height: float = 0.0) -> np.ndarray:
    """Background of a named kind (one of BACKGROUND_KINDS), (H, W, 3) uint8."""
    if kind == "floor":
        return floor_background(rng, camera, floor_height)
    makers = {
        "gradient": gradient_background,
        "noise": noise_background,
        "shapes": shapes_background,
        "stripes": stripes_background,
    }
    if kind not in makers:
        raise ArtifactError(f"scene: unknown background kind '{kind}', expected one of {BACKGROUND_KINDS}")
    return makers[kind](rng, camera.height, camera.width)


# ---------------------------------------------------------------------------- lighting and occluders
def random_light(
    rng: np.random.Generator, towards_camera: np.ndarray, options: SceneOptions = SceneOptions()
) -> DirectionalLight:
    """A directional light from the camera's side of the body, raised, with random spread,
    intensity, ambient level and a slight colour tint."""
    view = np.asarray(towards_camera, dtype=np.float64)
    view = view / max(np.linalg.norm(view), 1e-12)
    direction = view + np.array([0.0, rng.uniform(0.2, 1.2), 0.0]) + rng.normal(0.0, 0.6, size=3)
    if np.linalg.norm(direction) < 1e-6:
        direction = view
    colour = 1.0 - options.light_tint * rng.random(3)
    return DirectionalLight(
        to_light=direction / np.linalg.norm(direction),
        colour=colour / colour.max(),
        intensity=rng.uniform(*options.light_intensity_range),
        ambient=rng.uniform(*options.ambient_range),
    )


def draw_occluders(
    image: np.ndarray,
    body_mask: np.ndarray,
    rng: np.random.Generator,
    count: int,
    size_range: tuple[float, float] = (0.15, 0.4),
) -> np.ndarray:
    """Paint ``count`` random boxes / ellipses over the body, in place on ``image`` (H, W, 3) uint8.

    Each is centred on a random silhouette pixel and sized relative to the silhouette's height,
    so it overlaps the body; it is textured (flat, noise or stripes) under a shading ramp.
    Returns the occluder mask (H, W) bool.
    """
    height, width = body_mask.shape
    occluder_mask = np.zeros((height, width), dtype=bool)
    rows, cols = np.nonzero(body_mask)
    if count == 0 or len(rows) == 0:
        return occluder_mask
    body_height = rows.max() - rows.min() + 1
    for _ in range(count):
        pick = int(rng.integers(len(rows)))
        centre = (float(cols[pick]), float(rows[pick]))
        extent = rng.uniform(*size_range) * body_height
        aspect = rng.uniform(0.3, 1.0)
        axes = (extent, extent * aspect) if rng.random() < 0.5 else (extent * aspect, extent)
        angle = rng.uniform(0, 180)
        shape = np.zeros((height, width), dtype=np.uint8)
        if rng.random() < 0.5:
            corners = cv2.boxPoints((centre, axes, angle))
            cv2.fillConvexPoly(shape, np.round(corners).astype(np.int32), 1)
        else:
            half_axes = (max(int(round(axes[0] / 2)), 1), max(int(round(axes[1] / 2)), 1))
            cv2.ellipse(shape, (int(round(centre[0])), int(round(centre[1]))), half_axes, angle, 0, 360, 1, -1)
        # Texture only the shape's bounding box.
        box_x, box_y, box_w, box_h = cv2.boundingRect(shape)
        if box_w == 0 or box_h == 0:
            continue
        texture_kind = int(rng.integers(3))
        if texture_kind == 0:
            texture = noise_background(rng, box_h, box_w)
        elif texture_kind == 1:
            texture = stripes_background(rng, box_h, box_w)
        else:
            texture = np.empty((box_h, box_w, 3), dtype=np.uint8)
            texture[:] = _to_uint8(_random_colour(rng))
        # A shading ramp across the occluder so it reads as a lit solid, not a flat sticker.
        shading = 0.6 + 0.5 * _ramp(rng, box_h, box_w)
        inside = shape[box_y : box_y + box_h, box_x : box_x + box_w].astype(bool)
        window = image[box_y : box_y + box_h, box_x : box_x + box_w]
        window[inside] = _to_uint8(texture[inside] / 255.0 * shading[inside][:, None])
        occluder_mask[box_y : box_y + box_h, box_x : box_x + box_w] |= inside
    return occluder_mask


def add_sensor_noise(image: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """``image`` (H, W, 3) uint8 plus zero-mean noise of standard deviation ``std`` (0-255 units).

    The noise is the sum of two uniform bytes (a triangular distribution), which is close
    enough to Gaussian for sensor noise and several times cheaper to draw.
    """
    if std <= 0:
        return image
    size = image.size
    pair = np.frombuffer(rng.bytes(2 * size), dtype=np.uint8).reshape(2, size).astype(np.float32)
    noise = (pair[0] + pair[1] - 255.0) * np.float32(std / np.sqrt(2 * (256**2 - 1) / 12))
    noisy = image.reshape(-1).astype(np.float32) + noise
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8).reshape(image.shape)


# ---------------------------------------------------------------------------- ground truth
def project_joints(joints: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World joints (J, 3) -> (pixels (J, 2) float32, camera depth (J,) float32) with ``camera``."""
    joints = np.asarray(joints)
    if joints.ndim != 2 or joints.shape[1] != 3:
        raise ArtifactError(f"scene: 'joints' must have shape (J, 3), got {joints.shape}")
    pixels, depth = camera.project(joints)
    return pixels.astype(np.float32), depth.astype(np.float32)


def face_parts(faces: np.ndarray, skin_weights: np.ndarray) -> np.ndarray:
    """Dominant joint of each face (F,) int32: argmax of the skinning weights summed over its corners."""
    weights = np.asarray(skin_weights, dtype=np.float64)
    return np.argmax(weights[faces].sum(axis=1), axis=1).astype(np.int32)


def joint_visibility(
    joints_2d: np.ndarray,
    joint_depth: np.ndarray,
    body_depth: np.ndarray,
    occluder_mask: np.ndarray | None = None,
    face_index: np.ndarray | None = None,
    face_part: np.ndarray | None = None,
    parents: np.ndarray | None = None,
    tolerance: float = 0.1,
) -> dict[str, np.ndarray]:
    """Visibility flags (J,) bool: in_image, occluded_by_object, self_occluded, visible.

    joints_2d (J, 2) pixels, joint_depth (J,), body_depth (H, W) (+inf off the body: the full
    silhouette, including parts behind occluders), occluder_mask (H, W) bool. For the own-part
    test give face_index (H, W) (-1 off the body), face_part (F,) (the dominant joint of each
    face, see :func:`face_parts`; only the faces seen at joint pixels are read) and parents
    (J,). See the module docstring for the rule.
    """
    joints_2d = np.asarray(joints_2d, dtype=np.float64)
    joint_depth = np.asarray(joint_depth, dtype=np.float64)
    body_depth = np.asarray(body_depth)
    if body_depth.ndim != 2:
        raise ArtifactError(f"scene: 'body_depth' must have shape (H, W), got {body_depth.shape}")
    height, width = body_depth.shape
    if joints_2d.ndim != 2 or joints_2d.shape[1] != 2 or joint_depth.shape != joints_2d.shape[:1]:
        raise ArtifactError(
            f"scene: 'joints_2d' (J, 2) and 'joint_depth' (J,) disagree: {joints_2d.shape}, {joint_depth.shape}"
        )
    for name, array in (("occluder_mask", occluder_mask), ("face_index", face_index)):
        if array is not None and np.shape(array) != (height, width):
            raise ArtifactError(f"scene: '{name}' must have shape {(height, width)}, got {np.shape(array)}")
    part_inputs = (face_index is None, face_part is None, parents is None)
    if len(set(part_inputs)) != 1:
        raise ArtifactError("scene: give all of 'face_index', 'face_part' and 'parents' for the own-part test, or none")
    finite = np.isfinite(joints_2d).all(axis=1) & (joint_depth > 0)
    u = np.where(finite, joints_2d[:, 0], -1.0)
    v = np.where(finite, joints_2d[:, 1], -1.0)
    in_image = finite & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    # Nearest pixel centre; clipped only so that out-of-image joints index safely (masked below).
    col = np.clip(np.floor(u + 0.5), 0, width - 1).astype(np.int64)
    row = np.clip(np.floor(v + 0.5), 0, height - 1).astype(np.int64)
    occluded_by_object = in_image & (
        np.asarray(occluder_mask, dtype=bool)[row, col] if occluder_mask is not None else False
    )
    surface_depth = body_depth[row, col].astype(np.float64)
    in_front = np.isfinite(surface_depth) & (surface_depth < joint_depth - tolerance)
    if face_index is not None:
        parents = np.asarray(parents, dtype=np.int64)
        joint_count = len(joints_2d)
        if parents.shape != (joint_count,):
            raise ArtifactError(f"scene: 'parents' must have shape ({joint_count},), got {parents.shape}")
        face = np.asarray(face_index)[row, col]
        part = np.where(face >= 0, np.asarray(face_part)[np.clip(face, 0, None)], -1)
        joint = np.arange(joint_count)
        known = (part >= 0) & (part < joint_count)
        parent_of_part = np.where(known, parents[np.clip(part, 0, joint_count - 1)], -2)
        # Own flesh: the joint's part, its parent's part, or a part whose parent is the joint.
        own_part = (part == joint) | ((part >= 0) & (part == parents)) | (known & (parent_of_part == joint))
        in_front &= ~own_part
    self_occluded = in_image & in_front
    visible = in_image & ~occluded_by_object & ~self_occluded
    return {
        "in_image": in_image,
        "occluded_by_object": np.asarray(occluded_by_object, dtype=bool),
        "self_occluded": self_occluded,
        "visible": visible,
    }


# ---------------------------------------------------------------------------- cameras
def framing_camera(
    vertices: np.ndarray,
    width: int,
    height: int,
    azimuth_deg: float = 0.0,
    elevation_deg: float = 10.0,
    fill: float = 0.8,
    focal_length: float | None = None,
) -> Camera:
    """An orbit camera around the body's bounding-box centre, at the distance where the body's
    projected extent fills ``fill`` of the image's shorter side. Default focal length: 1.5 x
    the larger image side (a moderate telephoto, ~37 degree field of view)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ArtifactError(f"scene: 'vertices' must have shape (V, 3), got {vertices.shape}")
    if not 0 < fill <= 1.5:
        raise ArtifactError(f"scene: 'fill' must lie in (0, 1.5], got {fill}")
    focal = 1.5 * max(width, height) if focal_length is None else float(focal_length)
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    radius = max(float(np.linalg.norm(vertices - centre, axis=1).max()), 1e-6)
    distance = 2.0 * radius * focal / (fill * min(width, height)) + radius
    # The projected extent scales ~1 / distance: refine twice on the measured extent.
    for _ in range(2):
        camera = Camera.orbit(distance, elevation_deg, azimuth_deg, focal, width, height, target=centre)
        pixels, _ = camera.project(vertices)
        extent = max(np.ptp(pixels[:, 0]) / min(width, height), np.ptp(pixels[:, 1]) / min(width, height))
        distance = max(distance * extent / fill, 1.05 * radius)
    return Camera.orbit(distance, elevation_deg, azimuth_deg, focal, width, height, target=centre)


# ---------------------------------------------------------------------------- the composite
def render_person(
    vertices: np.ndarray,
    faces: np.ndarray,
    skin_weights: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    options: SceneOptions | None = None,
    joints: np.ndarray | None = None,
    parents: np.ndarray | None = None,
) -> dict[str, object]:
    """Render a posed body (V, 3) world, faces (F, 3), skinning weights (V, J) into a random scene.

    Returns image (H, W, 3) uint8; mask (H, W) bool, the VISIBLE body (silhouette minus
    occluders); depth (H, W) float32, body depth on ``mask``, +inf elsewhere; body_mask /
    body_depth (the full silhouette, also behind occluders); occluder_mask (H, W) bool;
    face_index (H, W) int32; background_kind, colouring (str). With ``joints`` (J, 3) also:
    joints_2d (J, 2) float32, joint_depth (J,) float32 and the flags of
    :func:`joint_visibility` (the own-part test uses ``parents``, default SMPL_PARENTS when J = 24).
    """
    options = options if options is not None else SceneOptions()
    vertices, faces = check_mesh(vertices, faces, "render_person")
    weights = _check_weights(skin_weights, len(vertices))
    if not isinstance(rng, np.random.Generator):
        raise ArtifactError(f"render_person: 'rng' must be a numpy.random.Generator, got {type(rng).__name__}")

    background_kind = options.background_kinds[int(rng.integers(len(options.background_kinds)))]
    floor_height = float(vertices[:, 1].min()) if options.floor_height is None else options.floor_height
    background = make_background(background_kind, rng, camera, floor_height)

    colouring = options.colouring_kinds[int(rng.integers(len(options.colouring_kinds)))]
    if colouring == "clothing" and weights.shape[1] != 24:
        colouring = "parts"  # clothing regions are defined on SMPL's 24 joints only
    if colouring == "clothing":
        vertex_colours = clothing_colours(vertices, weights, rng)
    else:
        vertex_colours = part_colours(weights, part_palette(weights.shape[1], hue_offset=rng.random()))

    body_centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    light = random_light(rng, camera.center - body_centre, options)
    rendered = render_mesh(
        vertices,
        faces,
        camera,
        vertex_colors=vertex_colours,
        light=light,
        smooth=options.smooth_shading,
        background=background,
    )
    image = rendered.image

    occluder_count = 0
    if options.max_occluders > 0 and rng.random() < options.occluder_probability:
        occluder_count = int(rng.integers(1, options.max_occluders + 1))
    occluder_mask = draw_occluders(image, rendered.mask, rng, occluder_count, options.occluder_size_range)

    image = add_sensor_noise(image, rng, rng.uniform(*options.noise_std_range))

    visible_mask = rendered.mask & ~occluder_mask
    result: dict[str, object] = {
        "image": image,
        "mask": visible_mask,
        "depth": np.where(visible_mask, rendered.depth, np.float32(np.inf)).astype(np.float32),
        "body_mask": rendered.mask,
        "body_depth": rendered.depth,
        "occluder_mask": occluder_mask,
        "face_index": rendered.face_index,
        "background_kind": background_kind,
        "colouring": colouring,
    }
    if joints is not None:
        joints_2d, joint_depth = project_joints(joints, camera)
        if parents is None and len(joints_2d) == 24 and weights.shape[1] == 24:
            parents = SMPL_PARENTS
        face_part = None
        if parents is not None:
            if weights.shape[1] != len(parents):
                raise ArtifactError(
                    f"render_person: 'parents' has {len(parents)} joints but 'skin_weights' has {weights.shape[1]}"
                )
            # Only the faces seen at joint pixels are ever looked up: label just those.
            face_part = np.full(len(faces), -1, dtype=np.int32)
            pixels = np.nan_to_num(joints_2d.astype(np.float64), nan=-1.0, posinf=-1.0, neginf=-1.0)
            rows = np.clip(np.floor(pixels[:, 1] + 0.5), 0, camera.height - 1).astype(np.int64)
            cols = np.clip(np.floor(pixels[:, 0] + 0.5), 0, camera.width - 1).astype(np.int64)
            seen = np.unique(rendered.face_index[rows, cols])
            seen = seen[seen >= 0]
            face_part[seen] = face_parts(faces[seen], weights)
        flags = joint_visibility(
            joints_2d,
            joint_depth,
            rendered.depth,
            occluder_mask,
            rendered.face_index if face_part is not None else None,
            face_part,
            parents,
            options.self_occlusion_tolerance,
        )
        result.update({"joints_2d": joints_2d, "joint_depth": joint_depth, **flags})
    return result


# ---------------------------------------------------------------------------- a stand-in body
_MANNEQUIN_JOINTS = np.array(
    [[0.0, 0.95, 0.0], [0.09, 0.87, 0.0], [-0.09, 0.87, 0.0], [0.0, 1.06, -0.01], [0.10, 0.49, 0.01],
     [-0.10, 0.49, 0.01], [0.0, 1.19, 0.0], [0.11, 0.08, -0.03], [-0.11, 0.08, -0.03], [0.0, 1.25, 0.01],
     [0.12, 0.02, 0.09], [-0.12, 0.02, 0.09], [0.0, 1.47, -0.01], [0.07, 1.39, 0.0], [-0.07, 1.39, 0.0],
     [0.0, 1.55, 0.02], [0.18, 1.42, -0.01], [-0.18, 1.42, -0.01]]
)  # fmt: skip
# (joint, centre, radii, axis or None) per ellipsoid; arm ellipsoids are added by mannequin().
_MANNEQUIN_BLOBS = [
    (0, (0.0, 0.91, 0.0), (0.165, 0.11, 0.11)),
    (3, (0.0, 1.07, 0.0), (0.15, 0.10, 0.10)),
    (6, (0.0, 1.19, 0.0), (0.16, 0.09, 0.105)),
    (9, (0.0, 1.32, 0.0), (0.185, 0.12, 0.11)),
    (15, (0.0, 1.62, 0.02), (0.085, 0.115, 0.10)),
]


def _ellipsoid(centre: np.ndarray, radii: np.ndarray, axes: np.ndarray, rings: int, segments: int):
    """A closed UV ellipsoid with counter-clockwise (outward) faces: vertices (V, 3), faces (F, 3)."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    # Local frame: axis 0 runs pole to pole; the ring directions are axes 1 and 2.
    unit = np.stack([np.cos(t), np.sin(t) * np.cos(p), np.sin(t) * np.sin(p)], axis=-1).reshape(-1, 3)
    unit = np.concatenate([[[1.0, 0.0, 0.0]], unit, [[-1.0, 0.0, 0.0]]])
    vertices = centre + (unit * radii) @ axes
    ring = lambda i, j: 1 + i * segments + (j % segments)  # noqa: E731
    faces = [[0, ring(0, j), ring(0, j + 1)] for j in range(segments)]
    for i in range(rings - 2):
        for j in range(segments):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, c, d], [a, d, b]]
    last = len(vertices) - 1
    faces += [[last, ring(rings - 2, j + 1), ring(rings - 2, j)] for j in range(segments)]
    faces = np.array(faces, dtype=np.int64)
    corners = vertices[faces]
    outward = np.einsum(
        "ij,ij->i",
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]),
        corners.mean(axis=1) - centre,
    )
    if np.mean(outward) < 0:  # a left-handed local frame mirrors the winding
        faces = faces[:, ::-1]
    return vertices, faces


def _bone_frame(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    axis = end - start
    axis = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    second = np.cross(axis, helper)
    second /= np.linalg.norm(second)
    return np.stack([axis, second, np.cross(axis, second)])


def mannequin(arm_angle_deg: float = 50.0, detail: int = 1) -> dict[str, np.ndarray]:
    """A crude closed SMPL-layout body of ellipsoids (feet on y = 0, facing +z, ~1.75 m), for
    tests and benchmarks when no body model is at hand.

    Arms hang ``arm_angle_deg`` below horizontal. ``detail`` 1 gives ~2.5k triangles. Returns
    vertices (V, 3) float32, faces (F, 3) int64, weights (V, 24) float32 (one-hot: each
    ellipsoid skinned to the joint that drives it), joints (24, 3) float32.
    """
    joints = np.zeros((24, 3))
    joints[: len(_MANNEQUIN_JOINTS)] = _MANNEQUIN_JOINTS
    drop = np.deg2rad(arm_angle_deg)
    for side, first in ((1.0, 16), (-1.0, 17)):
        direction = np.array([side * np.cos(drop), -np.sin(drop), 0.0])
        joints[first + 2] = joints[first] + 0.26 * direction  # elbow
        joints[first + 4] = joints[first + 2] + 0.25 * direction  # wrist
        joints[first + 6] = joints[first + 4] + 0.08 * direction  # hand
    bones = [  # (skinning joint, start joint, end point, radius)
        (1, 1, joints[4], 0.075),
        (2, 2, joints[5], 0.075),
        (4, 4, joints[7], 0.055),
        (5, 5, joints[8], 0.055),
        (7, 7, joints[10], 0.05),
        (8, 8, joints[11], 0.05),
        (10, 10, joints[10] + [0, 0, 0.07], 0.04),
        (11, 11, joints[11] + [0, 0, 0.07], 0.04),
        (12, 12, joints[15], 0.055),
        (13, 13, joints[16], 0.055),
        (14, 14, joints[17], 0.055),
        (16, 16, joints[18], 0.055),
        (17, 17, joints[19], 0.055),
        (18, 18, joints[20], 0.045),
        (19, 19, joints[21], 0.045),
        (20, 20, joints[22], 0.04),
        (21, 21, joints[23], 0.04),
        (22, 22, joints[22] + 0.09 * (joints[22] - joints[20]) / np.linalg.norm(joints[22] - joints[20]), 0.03),
        (23, 23, joints[23] + 0.09 * (joints[23] - joints[21]) / np.linalg.norm(joints[23] - joints[21]), 0.03),
    ]
    if not (isinstance(detail, int) and detail >= 1):
        raise ArtifactError(f"scene: mannequin 'detail' must be a positive integer, got {detail}")
    rings, segments = 6 * detail, 8 * detail
    parts = []
    for joint, centre, radii in _MANNEQUIN_BLOBS:
        parts.append(
            (joint, *_ellipsoid(np.array(centre), np.array(radii), np.eye(3)[[1, 0, 2]], 10 * detail, 14 * detail))
        )
    for joint, start, end, radius in bones:
        begin = joints[start]
        centre = 0.5 * (begin + end)
        half_length = 0.5 * np.linalg.norm(end - begin) + 0.6 * radius
        parts.append(
            (
                joint,
                *_ellipsoid(centre, np.array([half_length, radius, radius]), _bone_frame(begin, end), rings, segments),
            )
        )
    vertices, faces, weights, offset = [], [], [], 0
    for joint, part_vertices, part_faces in parts:
        vertices.append(part_vertices)
        faces.append(part_faces + offset)
        one_hot = np.zeros((len(part_vertices), 24))
        one_hot[:, joint] = 1.0
        weights.append(one_hot)
        offset += len(part_vertices)
    return {
        "vertices": np.concatenate(vertices).astype(np.float32),
        "faces": np.concatenate(faces),
        "weights": np.concatenate(weights).astype(np.float32),
        "joints": joints.astype(np.float32),
    }
