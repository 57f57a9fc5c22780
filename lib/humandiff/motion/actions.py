"""Procedural action families: each samples its variation and returns DOF curves plus root hints.

An action returns an :class:`ActionTrack`: per-frame anatomical angles (see ``poses``), the yaw
rate of the body, which frames are airborne (and with what horizontal velocity), and the words
that describe it (``Phrase``), so the caption always says what the motion does. Root translation
is not authored here: ``synth`` derives it from foot planting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .captions import mirror_text
from .poses import DOF_INDEX as I
from .poses import NUM_DOFS, STAND, mirror_dofs, pose_vector

DEG = np.pi / 180.0


@dataclass
class Phrase:
    """Verb-phrase variants for one action: simple present ("walks forward") and -ing form."""

    simple: list[str]
    progressive: list[str]


@dataclass
class ActionTrack:
    """One action's frames. Shapes: dofs (T, NUM_DOFS), yaw_rate (T,) rad/frame, flight (T,) bool,
    flight_velocity (T, 2) body-frame (forward, left) m/s used on airborne frames (NaN = keep the
    take-off velocity); stance (T, 2) which of the (left, right) feet bear weight, NaN where the
    action leaves it to the floor contact detection."""

    family: str
    dofs: np.ndarray
    yaw_rate: np.ndarray
    flight: np.ndarray
    flight_velocity: np.ndarray
    phrase: Phrase
    stance: np.ndarray
    attributes: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.dofs.shape[0]

    def mirrored(self) -> "ActionTrack":
        """The same action with the body's sides swapped (captions are swapped by the caller)."""
        velocity = self.flight_velocity.copy()
        velocity[:, 1] *= -1
        phrase = Phrase([mirror_text(p) for p in self.phrase.simple], [mirror_text(p) for p in self.phrase.progressive])
        return ActionTrack(self.family, mirror_dofs(self.dofs), -self.yaw_rate, self.flight.copy(), velocity,
                           phrase, self.stance[:, ::-1].copy(), dict(self.attributes, mirrored=not self.attributes.get("mirrored", False)))


def _track(family: str, dofs: np.ndarray, phrase: Phrase, yaw_rate=None, flight=None, velocity=None, stance=None,
           **attrs) -> ActionTrack:
    T = dofs.shape[0]
    return ActionTrack(
        family=family,
        dofs=dofs,
        yaw_rate=np.zeros(T) if yaw_rate is None else np.asarray(yaw_rate, dtype=np.float64),
        flight=np.zeros(T, dtype=bool) if flight is None else flight,
        flight_velocity=np.full((T, 2), np.nan) if velocity is None else velocity,
        phrase=phrase,
        stance=np.full((T, 2), np.nan) if stance is None else stance,
        attributes=attrs,
    )


def keyframes(keys: list[tuple[float, np.ndarray]], fps: float) -> np.ndarray:
    """Smooth (cosine-eased) interpolation of DOF key poses at times in seconds: -> (T, NUM_DOFS)."""
    times = np.array([k[0] for k in keys])
    poses = np.stack([k[1] for k in keys])
    T = int(round(times[-1] * fps)) + 1
    t = np.arange(T) / fps
    seg = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    span = np.maximum(times[seg + 1] - times[seg], 1e-9)
    u = np.clip((t - times[seg]) / span, 0.0, 1.0)
    ease = 0.5 - 0.5 * np.cos(np.pi * u)
    return poses[seg] + ease[:, None] * (poses[seg + 1] - poses[seg])


def _sequence(segments: list[tuple[float, dict]], start: dict | None = None) -> list[tuple[float, np.ndarray]]:
    """Turn (duration, pose-values) steps into absolute-time keys, starting from standing."""
    keys = [(0.0, pose_vector(start))]
    now = 0.0
    for duration, values in segments:
        now += duration
        keys.append((now, pose_vector(values)))
    return keys


def _speed_word(ratio: float) -> str:
    return " slowly" if ratio < 0.8 else (" quickly" if ratio > 1.25 else "")


def _count_word(count: int) -> str:
    return {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}[count]


def _side_noun(side: str, plural: str = "hand") -> str:
    return {"l": f"left {plural}", "r": f"right {plural}"}[side]


# ---------------------------------------------------------------------------------------------
# Gaits: walk, jog/run, walk backwards, curves and circles, sidestep, turn in place.
# ---------------------------------------------------------------------------------------------


def _leg_cycle(phase: np.ndarray, duty: float, hip_amp: float, knee_swing: float, knee_stance: float,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sagittal leg angles over a gait phase in [0, 1) (0 = foot strike): hip, knee, ankle, stance mask.

    In stance the thigh sweeps back at a constant rate, so a planted foot pushes the body at a
    steady speed. The swing is a cubic that leaves and lands with that same backward rate (the
    leg retracts before touch-down), with the knee folded early and straight again by 80% of the
    swing, so a foot meets and leaves the floor without sliding.
    """
    stance = phase < duty
    s_stance = np.clip(phase / duty, 0, 1)
    s_swing = np.clip((phase - duty) / (1 - duty), 0, 1)
    rate = -2 * hip_amp * (1 - duty) / duty  # d(hip)/d(s_swing) matching the stance sweep
    h00, h10 = 2 * s_swing**3 - 3 * s_swing**2 + 1, s_swing**3 - 2 * s_swing**2 + s_swing
    h01, h11 = -2 * s_swing**3 + 3 * s_swing**2, s_swing**3 - s_swing**2
    swing_hip = -hip_amp * h00 + rate * h10 + hip_amp * h01 + rate * h11
    hip = np.where(stance, hip_amp * (1 - 2 * s_stance), swing_hip)
    fold = np.clip(s_swing / 0.85, 0, 1)
    knee = np.where(stance, knee_stance * np.sin(np.pi * s_stance) ** 2, knee_swing * np.sin(np.pi * fold) ** 2)
    ankle_stance = -4 * DEG + 14 * DEG * s_stance
    ankle_swing = 10 * DEG - 14 * DEG * (3 * s_swing**2 - 2 * s_swing**3) + 8 * DEG * np.sin(np.pi * s_swing)
    # A folded knee pitches the foot toes-down; the ankle lifts the toes so they clear the floor.
    ankle = np.where(stance, ankle_stance, ankle_swing + 0.7 * np.maximum(knee - hip, 0))
    return hip, knee, ankle, stance


def gait(T: int, fps: float, cadence: float, hip_amp: float, knee_swing: float, duty: float, *,
         backwards: bool = False, arm_amp: float = 20 * DEG, elbow: float = 15 * DEG, lean: float = 0.0,
         knee_stance: float = 12 * DEG, start_phase: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bipedal gait: DOFs (T, NUM_DOFS), airborne flags (T,), stance of (left, right) foot (T, 2)."""
    t = np.arange(T) / fps
    direction = -1.0 if backwards else 1.0
    phase_l = np.mod(start_phase + direction * cadence * t, 1.0)
    phase_r = np.mod(phase_l + 0.5, 1.0)
    dofs = np.tile(pose_vector(), (T, 1))
    stances = []
    for side, phase in (("l", phase_l), ("r", phase_r)):
        hip, knee, ankle, stance = _leg_cycle(phase, duty, hip_amp, knee_swing, knee_stance)
        dofs[:, I[f"hip_flex_{side}"]] = hip
        dofs[:, I[f"knee_{side}"]] = knee + 3 * DEG
        dofs[:, I[f"ankle_{side}"]] = ankle
        stances.append(stance)
    # Arms swing against the opposite leg; the trunk counter-rotates a little.
    hip_l = dofs[:, I["hip_flex_l"]] / max(hip_amp, 1e-6)
    hip_r = dofs[:, I["hip_flex_r"]] / max(hip_amp, 1e-6)
    dofs[:, I["sh_flex_l"]] = arm_amp * hip_r
    dofs[:, I["sh_flex_r"]] = arm_amp * hip_l
    dofs[:, I["elbow_l"]] = elbow + 0.5 * elbow * np.maximum(hip_r, 0)
    dofs[:, I["elbow_r"]] = elbow + 0.5 * elbow * np.maximum(hip_l, 0)
    dofs[:, I["spine_twist"]] = 4 * DEG * (hip_r - hip_l) / 2
    dofs[:, I["spine_flex"]] = lean
    stance = np.stack(stances, -1)
    flight = ~stance.any(-1)
    return dofs, flight, stance.astype(np.float64)


def walk(rng: np.random.Generator, fps: float, seconds: float) -> ActionTrack:
    speed = rng.uniform(0.65, 1.45)
    cadence = 0.9 * speed ** 0.5
    T = int(seconds * fps)
    dofs, flight, stance = gait(T, fps, cadence, hip_amp=(16 + 9 * speed) * DEG, knee_swing=(50 + 10 * speed) * DEG,
                        duty=0.6, start_phase=rng.uniform(0, 1))
    word = _speed_word(speed)
    simple = [f"walks forward{word}", f"walks straight ahead{word}", f"takes a few steps forward{word}",
              f"walks{word} in a straight line"]
    prog = [f"walking forward{word}", f"walking straight ahead{word}", f"taking a few steps forward{word}",
            f"walking{word} in a straight line"]
    if speed < 0.8:
        simple.append("strolls forward")
        prog.append("strolling forward")
    return _track("walk", dofs, Phrase(simple, prog), flight=flight, stance=stance, speed=speed)


def run(rng: np.random.Generator, fps: float, seconds: float) -> ActionTrack:
    sprint = rng.uniform() < 0.5
    cadence = rng.uniform(1.35, 1.6) if sprint else rng.uniform(1.15, 1.35)
    T = int(seconds * fps)
    dofs, flight, stance = gait(T, fps, cadence, hip_amp=(30 if sprint else 24) * DEG, knee_swing=(105 if sprint else 90) * DEG,
                        duty=0.42 if sprint else 0.47, arm_amp=35 * DEG, elbow=80 * DEG, lean=10 * DEG,
                        knee_stance=25 * DEG, start_phase=rng.uniform(0, 1))
    if sprint:
        phrase = Phrase(["runs forward", "runs quickly forward", "sprints ahead", "runs straight ahead"],
                        ["running forward", "running quickly forward", "sprinting ahead", "running straight ahead"])
    else:
        phrase = Phrase(["jogs forward", "jogs in a straight line", "runs forward at a slow pace", "jogs ahead"],
                        ["jogging forward", "jogging in a straight line", "running forward at a slow pace", "jogging ahead"])
    return _track("run", dofs, phrase, flight=flight, stance=stance, sprint=sprint)


def walk_backwards(rng: np.random.Generator, fps: float, seconds: float) -> ActionTrack:
    speed = rng.uniform(0.6, 1.1)
    T = int(seconds * fps)
    dofs, flight, stance = gait(T, fps, 0.8 * speed ** 0.5, hip_amp=(13 + 6 * speed) * DEG, knee_swing=72 * DEG, duty=0.62,
                        backwards=True, arm_amp=10 * DEG, start_phase=rng.uniform(0, 1))
    word = _speed_word(speed * 1.2)
    phrase = Phrase([f"walks backwards{word}", f"steps backward{word}", f"moves backwards{word}", f"walks backward{word}"],
                    [f"walking backwards{word}", f"stepping backward{word}", f"moving backwards{word}", f"walking backward{word}"])
    return _track("walk_backwards", dofs, phrase, flight=flight, stance=stance)


def walk_curve(rng: np.random.Generator, fps: float, seconds: float) -> ActionTrack:
    """Walking while turning: a curve, or a full circle when it lasts long enough."""
    speed = rng.uniform(0.7, 1.3)
    T = int(seconds * fps)
    dofs, flight, stance = gait(T, fps, 0.9 * speed ** 0.5, hip_amp=(16 + 8 * speed) * DEG, knee_swing=55 * DEG, duty=0.6,
                        start_phase=rng.uniform(0, 1))
    circle = seconds >= 4.5 and rng.uniform() < 0.6
    total_turn = 2 * np.pi if circle else rng.uniform(0.4, 1.0) * np.pi
    turn_left = rng.uniform() < 0.5
    yaw_rate = np.full(T, (1 if turn_left else -1) * total_turn / T)
    side = "left" if turn_left else "right"
    if circle:
        spin = "counterclockwise" if turn_left else "clockwise"
        phrase = Phrase([f"walks in a circle {spin}", f"walks around in a full circle to the {side}",
                         f"walks in a {spin} circle", f"circles around to the {side}"],
                        [f"walking in a circle {spin}", f"walking around in a full circle to the {side}",
                         f"walking in a {spin} circle", f"circling around to the {side}"])
    else:
        phrase = Phrase([f"walks forward and curves to the {side}", f"walks along a curve to the {side}",
                         f"walks while turning {side}", f"walks in an arc toward the {side}"],
                        [f"walking forward and curving to the {side}", f"walking along a curve to the {side}",
                         f"walking while turning {side}", f"walking in an arc toward the {side}"])
    return _track("walk_circle" if circle else "walk_curve", dofs, phrase, yaw_rate=yaw_rate, flight=flight, stance=stance)


def sidestep(rng: np.random.Generator, fps: float) -> ActionTrack:
    steps = int(rng.integers(2, 5))
    cadence = rng.uniform(0.8, 1.2)
    T = int(steps / cadence * fps)
    amp = rng.uniform(10, 16) * DEG
    phase = np.mod(np.arange(T) / fps * cadence, 1.0)
    dofs = np.tile(pose_vector(), (T, 1))
    # Moving left: the left leg swings out while the right (stance) leg pushes; then the right
    # leg swings in while the left one carries the body (see module notes).
    first = phase < 0.5
    u = np.where(first, phase / 0.5, (phase - 0.5) / 0.5)
    ease = 0.5 - 0.5 * np.cos(np.pi * u)
    lift = np.sin(np.pi * u) ** 0.5
    dofs[:, I["hip_abd_l"]] = amp * np.where(first, ease, 1 - ease)
    dofs[:, I["hip_abd_r"]] = amp * np.where(first, ease, 1 - ease)
    dofs[:, I["knee_l"]] += np.where(first, 45 * DEG * lift, 0)
    dofs[:, I["hip_flex_l"]] += np.where(first, 22 * DEG * lift, 0)
    dofs[:, I["knee_r"]] += np.where(first, 0, 45 * DEG * lift)
    dofs[:, I["hip_flex_r"]] += np.where(first, 0, 22 * DEG * lift)
    dofs[:, I["ankle_l"]] += np.where(first, 33 * DEG * lift, 0)  # keep the lifted foot level
    dofs[:, I["ankle_r"]] += np.where(first, 0, 33 * DEG * lift)
    stance = np.stack([~first, first], -1).astype(np.float64)
    dofs[:, I["sh_abd_l"]] += 0.4 * dofs[:, I["hip_abd_l"]]
    dofs[:, I["sh_abd_r"]] += 0.4 * dofs[:, I["hip_abd_r"]]
    n = {2: "two", 3: "three", 4: "four"}[steps]
    phrase = Phrase([f"sidesteps to the left", f"takes {n} steps to the left", f"shuffles sideways to the left",
                     f"steps sideways to the left {n} times"],
                    [f"sidestepping to the left", f"taking {n} steps to the left", f"shuffling sideways to the left",
                     f"stepping sideways to the left {n} times"])
    return _track("sidestep", dofs, phrase, stance=stance, steps=steps)


def turn_in_place(rng: np.random.Generator, fps: float) -> ActionTrack:
    angle_deg = int(rng.choice([90, 180, 360]))
    seconds = {90: 1.6, 180: 2.6, 360: 4.4}[angle_deg] * rng.uniform(0.85, 1.2)
    T = int(seconds * fps)
    phase = np.mod(np.arange(T) / fps * 1.4, 1.0)
    dofs = np.tile(pose_vector(), (T, 1))
    stance = np.zeros((T, 2))
    for k, (side, offset) in enumerate((("l", 0.0), ("r", 0.5))):
        p = np.mod(phase + offset, 1.0)
        bump = np.where(p < 0.5, np.sqrt(np.abs(np.sin(2 * np.pi * p))), 0.0)
        dofs[:, I[f"hip_flex_{side}"]] += 30 * DEG * bump
        dofs[:, I[f"knee_{side}"]] += 60 * DEG * bump
        dofs[:, I[f"ankle_{side}"]] += 40 * DEG * bump
        stance[:, k] = p >= 0.5
    envelope = np.sin(np.pi * (np.arange(T) + 0.5) / T) ** 2
    yaw_rate = envelope / envelope.sum() * np.deg2rad(angle_deg)
    words = {90: "ninety degrees", 180: "around", 360: "in a full circle"}[angle_deg]
    simple = [f"turns {words} to the left", f"turns left in place", f"rotates {words} to the left on the spot",
              f"spins {words} to the left" if angle_deg == 360 else f"turns to the left, {words}"]
    prog = [f"turning {words} to the left", f"turning left in place", f"rotating {words} to the left on the spot",
            f"spinning {words} to the left" if angle_deg == 360 else f"turning to the left, {words}"]
    return _track("turn", dofs, Phrase(simple, prog), yaw_rate=yaw_rate, stance=stance, angle=angle_deg)


# ---------------------------------------------------------------------------------------------
# Jumps and hops (airborne phases).
# ---------------------------------------------------------------------------------------------


def _jump_cycle(flight_s: float, forward_m: float, crouch: float, one_leg: str | None = None) -> list[tuple[float, dict, bool, float]]:
    """(duration, pose, airborne, forward velocity) steps of one jump."""
    if one_leg is None:
        down = {"hip_flex_l": 45 * DEG * crouch, "hip_flex_r": 45 * DEG * crouch, "knee_l": 80 * DEG * crouch,
                "knee_r": 80 * DEG * crouch, "ankle_l": 25 * DEG * crouch, "ankle_r": 25 * DEG * crouch,
                "spine_flex": (20 + 15 * (forward_m > 0)) * DEG * crouch, "sh_flex_l": -40 * DEG, "sh_flex_r": -40 * DEG,
                "elbow_l": 20 * DEG, "elbow_r": 20 * DEG}
        up = {"ankle_l": -30 * DEG, "ankle_r": -30 * DEG, "sh_flex_l": 110 * DEG, "sh_flex_r": 110 * DEG,
              "spine_flex": 5 * DEG * (forward_m > 0)}
        air = {"hip_flex_l": (15 + 45 * (forward_m > 0)) * DEG, "hip_flex_r": (15 + 45 * (forward_m > 0)) * DEG,
               "knee_l": (20 + 40 * (forward_m > 0)) * DEG, "knee_r": (20 + 40 * (forward_m > 0)) * DEG,
               "sh_flex_l": 70 * DEG, "sh_flex_r": 70 * DEG, "spine_flex": 15 * DEG * (forward_m > 0)}
        land = dict(down, sh_flex_l=40 * DEG, sh_flex_r=40 * DEG)
    else:
        free = "r" if one_leg == "l" else "l"
        lifted = {f"hip_flex_{free}": 45 * DEG, f"knee_{free}": 90 * DEG, f"ankle_{free}": 40 * DEG,
                  "sh_abd_l": 25 * DEG, "sh_abd_r": 25 * DEG,
                  "elbow_l": 40 * DEG, "elbow_r": 40 * DEG}
        down = dict(lifted, **{f"hip_flex_{one_leg}": 25 * DEG * crouch, f"knee_{one_leg}": 40 * DEG * crouch,
                               f"ankle_{one_leg}": 15 * DEG * crouch, "spine_flex": 10 * DEG})
        up = dict(lifted, **{f"ankle_{one_leg}": -25 * DEG})
        air = dict(lifted, **{f"hip_flex_{one_leg}": 8 * DEG, f"knee_{one_leg}": 12 * DEG})
        land = down
    velocity = forward_m / flight_s
    return [(0.35, down, False, 0.0), (0.15, up, False, 0.0), (flight_s, air, True, velocity),
            (0.15, land, False, 0.0), (0.35, {} if one_leg is None else down, False, 0.0)]


def _jumps(family: str, rng: np.random.Generator, fps: float, repeats: int, flight_s: float, forward_m: float,
           phrase: Phrase, one_leg: str | None = None, **attrs) -> ActionTrack:
    steps = []
    for _ in range(repeats):
        steps += _jump_cycle(flight_s * rng.uniform(0.9, 1.1), forward_m, rng.uniform(0.8, 1.1), one_leg)
    if one_leg is not None:
        steps.append((0.3, {}, False, 0.0))
    keys = _sequence([(d, p) for d, p, _, _ in steps])
    dofs = keyframes(keys, fps)
    T = dofs.shape[0]
    flight = np.zeros(T, dtype=bool)
    velocity = np.zeros((T, 2))
    now = 0.0
    for duration, _, airborne, v in steps:
        a, b = int(round(now * fps)), int(round((now + duration) * fps))
        if airborne:
            flight[a + 1 : b] = True
            velocity[a + 1 : b, 0] = v
        now += duration
    stance = None
    if one_leg is not None:
        stance = np.tile([1.0, 0.0] if one_leg == "l" else [0.0, 1.0], (T, 1))
        stance[flight] = 0.0
    return _track(family, dofs, phrase, flight=flight, velocity=velocity, stance=stance, **attrs)


def jump_in_place(rng: np.random.Generator, fps: float) -> ActionTrack:
    count = int(rng.integers(1, 4))
    c = _count_word(count)
    if count == 1:
        phrase = Phrase(["jumps up in place", "jumps straight up", "does a jump on the spot", "hops up with both feet"],
                        ["jumping up in place", "jumping straight up", "doing a jump on the spot", "hopping up with both feet"])
    else:
        phrase = Phrase([f"jumps {c} in place", f"jumps up and down {c}", f"does {count} jumps on the spot",
                         f"jumps in place {c}"],
                        [f"jumping {c} in place", f"jumping up and down {c}", f"doing {count} jumps on the spot",
                         f"jumping in place {c}"])
    return _jumps("jump", rng, fps, count, 0.38, 0.0, phrase, count=count)


def long_jump(rng: np.random.Generator, fps: float) -> ActionTrack:
    distance = rng.uniform(0.9, 1.8)
    phrase = Phrase(["does a long jump forward", "jumps far forward", "leaps forward with both feet", "performs a long jump"],
                    ["doing a long jump forward", "jumping far forward", "leaping forward with both feet", "performing a long jump"])
    return _jumps("long_jump", rng, fps, 1, 0.45, distance, phrase, distance=distance)


def hop_one_leg(rng: np.random.Generator, fps: float) -> ActionTrack:
    count = int(rng.integers(2, 5))
    forward = rng.uniform() < 0.5
    c = _count_word(count)
    where = " forward" if forward else " in place"
    phrase = Phrase([f"hops on the left leg{where}", f"hops {c} on the left foot{where}",
                     f"jumps{where} on one leg, the left one", f"hops{where} on one foot"],
                    [f"hopping on the left leg{where}", f"hopping {c} on the left foot{where}",
                     f"jumping{where} on one leg, the left one", f"hopping{where} on one foot"])
    return _jumps("hop", rng, fps, count, 0.26, 0.3 if forward else 0.0, phrase, one_leg="l", count=count)


# ---------------------------------------------------------------------------------------------
# Crawling (hands and knees).
# ---------------------------------------------------------------------------------------------


def crawl(rng: np.random.Generator, fps: float, seconds: float) -> ActionTrack:
    T = int(seconds * fps)
    cadence = rng.uniform(0.5, 0.8)
    base = pose_vector({"root_pitch": 78 * DEG, "hip_flex_l": 88 * DEG, "hip_flex_r": 88 * DEG, "knee_l": 128 * DEG,
                        "knee_r": 128 * DEG, "ankle_l": -30 * DEG, "ankle_r": -30 * DEG, "sh_flex_l": 80 * DEG,
                        "sh_flex_r": 80 * DEG, "sh_abd_l": 4 * DEG, "sh_abd_r": 4 * DEG, "elbow_l": 5 * DEG,
                        "elbow_r": 5 * DEG, "neck_flex": -35 * DEG, "head_flex": -15 * DEG}, base=None)
    dofs = np.tile(base, (T, 1))
    phase0 = np.mod(rng.uniform(0, 1) + np.arange(T) / fps * cadence, 1.0)
    duty = 0.7
    amp = 14 * DEG
    # Diagonal pairs move together: right knee with left hand, left knee with right hand.
    for limb, offset in (("knee_r", 0.0), ("hand_l", 0.0), ("knee_l", 0.5), ("hand_r", 0.5)):
        p = np.mod(phase0 + offset, 1.0)
        stance = p < duty
        s1, s2 = np.clip(p / duty, 0, 1), np.clip((p - duty) / (1 - duty), 0, 1)
        swing = np.where(stance, amp * np.cos(np.pi * s1), -amp * np.cos(np.pi * s2))
        lift = np.where(stance, 0.0, np.sin(np.pi * s2))
        side = limb[-1]
        if limb.startswith("knee"):
            dofs[:, I[f"hip_flex_{side}"]] += swing
            dofs[:, I[f"hip_abd_{side}"]] += 14 * DEG * lift
            dofs[:, I["root_roll"]] += (1 if side == "l" else -1) * 4 * DEG * lift
        else:
            dofs[:, I[f"sh_flex_{side}"]] += swing
            dofs[:, I[f"elbow_{side}"]] += 35 * DEG * lift
    speed = " slowly" if cadence < 0.6 else ""
    phrase = Phrase([f"crawls forward on hands and knees{speed}", f"crawls on all fours{speed}",
                     f"gets on hands and knees and crawls forward", f"crawls ahead{speed}"],
                    [f"crawling forward on hands and knees{speed}", f"crawling on all fours{speed}",
                     f"crawling forward on hands and knees", f"crawling ahead{speed}"])
    return _track("crawl", dofs, phrase)


# ---------------------------------------------------------------------------------------------
# Upper-body gestures.
# ---------------------------------------------------------------------------------------------


def raise_hands(rng: np.random.Generator, fps: float) -> ActionTrack:
    side = rng.choice(["l", "r", "both"])
    hold = rng.uniform(0.8, 2.2)
    up = {}
    for s in (("l", "r") if side == "both" else (side,)):
        up.update({f"sh_abd_{s}": 168 * DEG, f"elbow_{s}": 8 * DEG, f"collar_{s}": 10 * DEG})
    keys = _sequence([(0.7, up), (hold, up), (0.7, {})])
    if side == "both":
        phrase = Phrase(["raises both hands above the head", "lifts both arms up", "puts both hands up in the air",
                         "raises both arms over the head and lowers them"],
                        ["raising both hands above the head", "lifting both arms up", "putting both hands up in the air",
                         "raising both arms over the head and lowering them"])
    else:
        phrase = Phrase(["raises the left hand", "lifts the left arm above the head", "puts the left hand up",
                         "raises the left arm up high and lowers it"],
                        ["raising the left hand", "lifting the left arm above the head", "putting the left hand up",
                         "raising the left arm up high and lowering it"])
    track = _track("raise_hands", keyframes(keys, fps), phrase, side=side)
    return track.mirrored() if side == "r" else track


def wave(rng: np.random.Generator, fps: float) -> ActionTrack:
    raised = {"sh_abd_l": 105 * DEG, "sh_twist_l": -90 * DEG, "elbow_l": 75 * DEG, "sh_horiz_l": 15 * DEG}
    waves = rng.uniform(1.5, 3.5)
    hold = waves / 2.2
    dofs = keyframes(_sequence([(0.6, raised), (hold, raised), (0.6, {})]), fps)
    start, stop = int(0.6 * fps), int((0.6 + hold) * fps)
    t = np.arange(stop - start) / fps
    dofs[start:stop, I["elbow_l"]] += 25 * DEG * np.sin(2 * np.pi * 2.2 * t)
    phrase = Phrase(["waves with the left hand", "waves hello with the left hand", "raises the left hand and waves",
                     "waves the left arm"],
                    ["waving with the left hand", "waving hello with the left hand", "raising the left hand and waving",
                     "waving the left arm"])
    track = _track("wave", dofs, phrase, side="l")
    return track.mirrored() if rng.uniform() < 0.5 else track


def clap(rng: np.random.Generator, fps: float) -> ActionTrack:
    count = int(rng.integers(2, 6))
    ready = {"sh_abd_l": 80 * DEG, "sh_abd_r": 80 * DEG, "sh_horiz_l": 62 * DEG, "sh_horiz_r": 62 * DEG,
             "elbow_l": 45 * DEG, "elbow_r": 45 * DEG}
    rate = rng.uniform(1.8, 2.6)
    hold = count / rate
    dofs = keyframes(_sequence([(0.5, ready), (hold, ready), (0.5, {})]), fps)
    start, stop = int(0.5 * fps), int((0.5 + hold) * fps)
    t = np.arange(stop - start) / fps
    closing = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t)
    for s in ("l", "r"):
        dofs[start:stop, I[f"sh_horiz_{s}"]] += 22 * DEG * closing
    c = _count_word(count) if count <= 5 else "several times"
    phrase = Phrase([f"claps {c}", f"claps the hands {c}", f"claps hands in front of the chest", "applauds"],
                    [f"clapping {c}", f"clapping the hands {c}", f"clapping hands in front of the chest", "applauding"])
    return _track("clap", dofs, phrase, count=count)


def punch(rng: np.random.Generator, fps: float) -> ActionTrack:
    count = int(rng.integers(1, 4))
    alternate = count > 1 and rng.uniform() < 0.5
    guard = {"sh_flex_l": 45 * DEG, "sh_flex_r": 45 * DEG, "elbow_l": 125 * DEG, "elbow_r": 125 * DEG,
             "sh_abd_l": 15 * DEG, "sh_abd_r": 15 * DEG, "hip_flex_l": 10 * DEG, "knee_l": 12 * DEG,
             "knee_r": 12 * DEG, "spine_twist": 10 * DEG}
    steps: list[tuple[float, dict]] = [(0.5, guard)]
    for k in range(count):
        side = ("l" if k % 2 == 0 else "r") if alternate else "l"
        sign = 1 if side == "l" else -1
        hit = dict(guard, **{f"sh_flex_{side}": 88 * DEG, f"elbow_{side}": 4 * DEG, f"sh_abd_{side}": 6 * DEG,
                             "spine_twist": -sign * 22 * DEG})
        steps += [(0.18, hit), (0.3, guard)]
    steps.append((0.5, {}))
    dofs = keyframes(_sequence(steps), fps)
    c = _count_word(count)
    if alternate:
        phrase = Phrase([f"throws {count} punches, alternating hands", "punches with both fists in turn",
                         "boxes, punching left and right", "throws a left and a right punch"],
                        [f"throwing {count} punches, alternating hands", "punching with both fists in turn",
                         "boxing, punching left and right", "throwing a left and a right punch"])
    else:
        phrase = Phrase([f"punches {c} with the left hand", f"throws a left punch {c}", "punches forward with the left fist",
                         f"jabs with the left arm {c}"],
                        [f"punching {c} with the left hand", f"throwing a left punch {c}", "punching forward with the left fist",
                         f"jabbing with the left arm {c}"])
    track = _track("punch", dofs, phrase, count=count)
    return track.mirrored() if rng.uniform() < 0.5 else track


def throw(rng: np.random.Generator, fps: float) -> ActionTrack:
    cock = {"sh_abd_r": 95 * DEG, "sh_twist_r": -85 * DEG, "elbow_r": 95 * DEG, "sh_horiz_r": -25 * DEG,
            "spine_twist": 30 * DEG, "spine_flex": -8 * DEG, "sh_flex_l": 60 * DEG}
    release = {"sh_abd_r": 120 * DEG, "sh_twist_r": -40 * DEG, "elbow_r": 20 * DEG, "sh_horiz_r": 50 * DEG,
               "spine_twist": -25 * DEG, "spine_flex": 20 * DEG, "sh_flex_l": 10 * DEG}
    follow = {"sh_abd_r": 40 * DEG, "sh_horiz_r": 70 * DEG, "elbow_r": 30 * DEG, "spine_twist": -30 * DEG,
              "spine_flex": 25 * DEG}
    dofs = keyframes(_sequence([(0.7, cock), (0.3, cock), (0.22, release), (0.3, follow), (0.8, {})]), fps)
    phrase = Phrase(["throws something with the right hand", "throws a ball overhand with the right arm",
                     "winds up and throws with the right hand", "makes a throwing motion with the right arm"],
                    ["throwing something with the right hand", "throwing a ball overhand with the right arm",
                     "winding up and throwing with the right hand", "making a throwing motion with the right arm"])
    track = _track("throw", dofs, phrase, side="r")
    return track.mirrored() if rng.uniform() < 0.35 else track


def bow(rng: np.random.Generator, fps: float) -> ActionTrack:
    depth = rng.uniform(0.6, 1.2)
    down = {"spine_flex": 45 * DEG * depth, "hip_flex_l": 25 * DEG * depth, "hip_flex_r": 25 * DEG * depth,
            "neck_flex": 15 * DEG, "sh_abd_l": 2 * DEG, "sh_abd_r": 2 * DEG}
    dofs = keyframes(_sequence([(0.8, down), (rng.uniform(0.4, 1.4), down), (0.9, {})]), fps)
    phrase = Phrase(["bows", "bows forward politely", "takes a bow", "bends forward at the waist in a bow"],
                    ["bowing", "bowing forward politely", "taking a bow", "bending forward at the waist in a bow"])
    return _track("bow", dofs, phrase, deep=depth > 1.0)


def stretch(rng: np.random.Generator, fps: float) -> ActionTrack:
    up = {"sh_abd_l": 165 * DEG, "sh_abd_r": 165 * DEG, "elbow_l": 5 * DEG, "elbow_r": 5 * DEG, "head_flex": -10 * DEG}
    lean_l = dict(up, spine_side=28 * DEG)
    lean_r = dict(up, spine_side=-28 * DEG)
    dofs = keyframes(_sequence([(0.8, up), (0.9, lean_l), (0.6, lean_l), (1.2, lean_r), (0.6, lean_r), (0.8, up), (0.8, {})]), fps)
    phrase = Phrase(["stretches the arms up and leans to each side", "stretches with arms overhead, bending left then right",
                     "does a side stretch", "reaches up and stretches to both sides"],
                    ["stretching the arms up and leaning to each side", "stretching with arms overhead, bending left then right",
                     "doing a side stretch", "reaching up and stretching to both sides"])
    return _track("stretch", dofs, phrase)


# ---------------------------------------------------------------------------------------------
# Whole-body level changes and kicks.
# ---------------------------------------------------------------------------------------------


def squat(rng: np.random.Generator, fps: float) -> ActionTrack:
    count = int(rng.integers(1, 4))
    depth = rng.uniform(0.75, 1.05)
    down = {"hip_flex_l": 100 * DEG * depth, "hip_flex_r": 100 * DEG * depth, "knee_l": 115 * DEG * depth,
            "knee_r": 115 * DEG * depth, "ankle_l": 28 * DEG * depth, "ankle_r": 28 * DEG * depth,
            "spine_flex": 20 * DEG, "sh_flex_l": 80 * DEG, "sh_flex_r": 80 * DEG, "hip_abd_l": 8 * DEG,
            "hip_abd_r": 8 * DEG}
    steps = []
    for _ in range(count):
        steps += [(0.9, down), (0.3, down), (0.9, {})]
    c = _count_word(count)
    phrase = Phrase([f"squats down {c}", f"does {count} squat{'s' if count > 1 else ''}", f"squats {c} with arms forward",
                     "bends the knees into a deep squat and stands up"],
                    [f"squatting down {c}", f"doing {count} squat{'s' if count > 1 else ''}",
                     f"squatting {c} with arms forward", "bending the knees into a deep squat and standing up"])
    return _track("squat", keyframes(_sequence(steps), fps), phrase, count=count)


def sit_down(rng: np.random.Generator, fps: float) -> ActionTrack:
    seated = {"hip_flex_l": 88 * DEG, "hip_flex_r": 88 * DEG, "knee_l": 92 * DEG, "knee_r": 92 * DEG,
              "ankle_l": 4 * DEG, "ankle_r": 4 * DEG, "spine_flex": 5 * DEG, "sh_flex_l": 30 * DEG,
              "sh_flex_r": 30 * DEG, "elbow_l": 50 * DEG, "elbow_r": 50 * DEG}
    lowering = dict(seated, spine_flex=30 * DEG, sh_flex_l=50 * DEG, sh_flex_r=50 * DEG)
    stand_up = rng.uniform() < 0.65
    steps = [(0.8, lowering), (0.5, seated), (rng.uniform(0.6, 2.0), seated)]
    if stand_up:
        steps += [(0.6, lowering), (0.8, {})]
        phrase = Phrase(["sits down on a chair and stands back up", "sits down and then gets up again",
                         "takes a seat, then stands up", "sits down for a moment before standing up"],
                        ["sitting down on a chair and standing back up", "sitting down and then getting up again",
                         "taking a seat, then standing up", "sitting down for a moment before standing up"])
    else:
        phrase = Phrase(["sits down", "sits down on a chair", "takes a seat", "lowers themselves into a chair"],
                        ["sitting down", "sitting down on a chair", "taking a seat", "lowering themselves into a chair"])
    return _track("sit", keyframes(_sequence(steps), fps), phrase, stand_up=stand_up)


def kneel(rng: np.random.Generator, fps: float) -> ActionTrack:
    both = rng.uniform() < 0.4
    if both:
        half = {"hip_flex_l": 70 * DEG, "hip_flex_r": 70 * DEG, "knee_l": 100 * DEG, "knee_r": 100 * DEG,
                "ankle_l": 20 * DEG, "ankle_r": 20 * DEG, "spine_flex": 25 * DEG, "sh_flex_l": 40 * DEG, "sh_flex_r": 40 * DEG}
        kneeling = {"hip_flex_l": 5 * DEG, "hip_flex_r": 5 * DEG, "knee_l": 95 * DEG, "knee_r": 95 * DEG,
                    "ankle_l": -35 * DEG, "ankle_r": -35 * DEG, "sh_abd_l": 10 * DEG, "sh_abd_r": 10 * DEG}
        phrase = Phrase(["kneels down on both knees", "gets down on both knees and stands up", "kneels on the ground",
                         "drops to both knees, then rises"],
                        ["kneeling down on both knees", "getting down on both knees and standing up",
                         "kneeling on the ground", "dropping to both knees, then rising"])
    else:
        # The kneeling leg folds at once so its foot leaves the floor instead of sliding back.
        half = {"hip_flex_l": 50 * DEG, "knee_l": 60 * DEG, "hip_flex_r": -10 * DEG, "knee_r": 90 * DEG,
                "ankle_r": 20 * DEG, "spine_flex": 10 * DEG}
        kneeling = {"hip_flex_l": 85 * DEG, "knee_l": 88 * DEG, "ankle_l": 3 * DEG, "hip_flex_r": -5 * DEG,
                    "knee_r": 95 * DEG, "ankle_r": -40 * DEG, "spine_flex": 5 * DEG, "elbow_l": 30 * DEG, "sh_flex_l": 20 * DEG}
        phrase = Phrase(["kneels down on the right knee", "goes down on one knee, the right one, and gets back up",
                         "kneels on one knee", "drops to the right knee and stands up again"],
                        ["kneeling down on the right knee", "going down on one knee, the right one, and getting back up",
                         "kneeling on one knee", "dropping to the right knee and standing up again"])
    if both:
        steps = [(0.8, half), (0.6, kneeling), (rng.uniform(0.6, 1.6), kneeling), (0.7, half), (0.8, {})]
    else:
        # Lift the kneeling leg's foot first, then lower the body on the standing leg.
        lifted = {"hip_flex_r": 35 * DEG, "knee_r": 70 * DEG, "ankle_r": 10 * DEG}  # hip:knee 1:2 lifts the foot straight up
        steps = [(0.35, lifted), (0.6, half), (0.6, kneeling), (rng.uniform(0.6, 1.6), kneeling), (0.7, half),
                 (0.45, lifted), (0.35, {})]
    dofs = keyframes(_sequence(steps), fps)
    stance = None if both else np.tile([1.0, 0.0], (len(dofs), 1))
    track = _track("kneel", dofs, phrase, stance=stance, both=both)
    return track.mirrored() if (not both and rng.uniform() < 0.5) else track


def kick(rng: np.random.Generator, fps: float) -> ActionTrack:
    count = int(rng.integers(1, 3))
    height = rng.uniform(0.7, 1.1)
    # A front kick: chamber the knee up in front, snap the shin out, re-chamber, put the foot down.
    chamber = {"hip_flex_r": 55 * DEG * height, "knee_r": 100 * DEG, "ankle_r": 20 * DEG, "sh_abd_l": 35 * DEG,
               "sh_abd_r": 35 * DEG, "knee_l": 10 * DEG, "elbow_l": 40 * DEG, "elbow_r": 40 * DEG}
    strike = {"hip_flex_r": 80 * DEG * height, "knee_r": 8 * DEG, "ankle_r": -25 * DEG, "spine_flex": -12 * DEG,
              "sh_abd_l": 40 * DEG, "sh_abd_r": 40 * DEG, "sh_flex_l": 30 * DEG, "knee_l": 12 * DEG}
    steps = []
    for _ in range(count):
        steps += [(0.4, chamber), (0.18, strike), (0.25, chamber), (0.45, {})]
    c = _count_word(count)
    phrase = Phrase([f"kicks with the right leg {c}", f"kicks forward with the right foot", f"does a front kick {c} with the right leg",
                     "kicks the right leg high"],
                    [f"kicking with the right leg {c}", f"kicking forward with the right foot",
                     f"doing a front kick {c} with the right leg", "kicking the right leg high"])
    dofs = keyframes(_sequence(steps), fps)
    stance = np.tile([1.0, 0.0], (len(dofs), 1))  # the left foot carries the body throughout
    track = _track("kick", dofs, phrase, stance=stance, count=count)
    return track.mirrored() if rng.uniform() < 0.5 else track


#: Families: name -> (sampler, is_locomotion). Locomotion samplers take a duration in seconds.
FAMILIES: dict[str, tuple[Callable, bool]] = {
    "walk": (walk, True),
    "run": (run, True),
    "walk_backwards": (walk_backwards, True),
    "walk_curve": (walk_curve, True),
    "crawl": (crawl, True),
    "sidestep": (sidestep, False),
    "turn": (turn_in_place, False),
    "jump": (jump_in_place, False),
    "long_jump": (long_jump, False),
    "hop": (hop_one_leg, False),
    "raise_hands": (raise_hands, False),
    "wave": (wave, False),
    "clap": (clap, False),
    "punch": (punch, False),
    "throw": (throw, False),
    "bow": (bow, False),
    "stretch": (stretch, False),
    "squat": (squat, False),
    "sit": (sit_down, False),
    "kneel": (kneel, False),
    "kick": (kick, False),
}


def sample_action(name: str, rng: np.random.Generator, fps: float, seconds: float | None = None) -> ActionTrack:
    """Sample one action of family ``name``; locomotion lasts ``seconds`` (random if None)."""
    sampler, is_locomotion = FAMILIES[name]
    if is_locomotion:
        return sampler(rng, fps, seconds if seconds is not None else rng.uniform(2.5, 6.0))
    track = sampler(rng, fps)
    if name == "sidestep" and rng.uniform() < 0.5:
        track = track.mirrored()
    if name in ("turn", "hop") and rng.uniform() < 0.5:
        track = track.mirrored()
    return track


__all__ = ["ActionTrack", "Phrase", "FAMILIES", "sample_action", "keyframes", "gait", "NUM_DOFS", "STAND"]
