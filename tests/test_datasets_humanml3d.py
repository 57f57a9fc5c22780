"""Tests for humandiff.datasets.humanml3d on a tiny fixture written in the published HumanML3D layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from humandiff.datasets.humanml3d import (
    HumanML3DClip,
    HumanML3DCounts,
    iter_humanml3d,
    load_joints,
    load_release_mean_std,
    read_captions,
    read_split_ids,
    scan_humanml3d,
)
from humandiff.io.artifacts import ArtifactError
from humandiff.motion.hml3d import mirror_joints
from hml3d_release import write_release


def ramp_joints(frames: int, seed: int) -> np.ndarray:
    """Distinct joints per frame so that crops can be checked by value: (frames, 22, 3) float32."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(frames, 22, 3)) + np.arange(frames)[:, None, None]).astype(np.float32)


TEXTS = {
    "000001": "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n"
    "someone strolls ahead#someone/PRON stroll/VERB ahead/ADV#0.0#0.0\n",
    "M000001": "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n",
    # too long as a whole (250 frames): skipped with its span caption, as the loaders do
    "000002": "a long dance#a/DET long/ADJ dance/NOUN#0.0#0.0\nthe dance part#the/DET dance/NOUN part/NOUN#1.0#4.0\n",
    # a whole-clip caption, a span of 60 vectors (kept), a 20-vector span (too short), a blank line
    "000003": "a man jumps then sits#a/DET man/NOUN jump/VERB then/ADV sit/VERB#0.0#0.0\n"
    "a man jumps#a/DET man/NOUN jump/VERB#1.0#4.0\n"
    "\n"
    "a man sits#a/DET man/NOUN sit/VERB#1.0#2.0\n",
    # spans only (no whole-clip caption); the second runs past the end of the file
    "000004": "first half#first/ADJ half/NOUN#0.0#3.0\nsecond half#second/ADJ half/NOUN#3.0#10.0\n",
}
LENGTHS = {"000001": 60, "M000001": 60, "000002": 250, "000003": 150, "000004": 120}
SPLITS = {"train": ["000001", "M000001", "000002"], "val": ["000003"], "test": ["000004"]}


def write_fixture(root: Path) -> dict[str, np.ndarray]:
    (root / "new_joints").mkdir(parents=True)
    (root / "texts").mkdir()
    joints = {}
    for seed, (clip_id, frames) in enumerate(LENGTHS.items()):
        joints[clip_id] = ramp_joints(frames, seed)
    joints["M000001"] = mirror_joints(joints["000001"])
    for clip_id, array in joints.items():
        np.save(root / "new_joints" / f"{clip_id}.npy", array)
        (root / "texts" / f"{clip_id}.txt").write_text(TEXTS[clip_id])
    for split, ids in SPLITS.items():
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return joints


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "HumanML3D"
    return root, write_fixture(root)


def test_clips_splits_and_spans(dataset):
    root, joints = dataset
    clips = {clip.clip_id: clip for clip in iter_humanml3d(root)}
    assert list(clips) == ["000001", "M000001", "000003", "000003_1", "000004_0", "000004_1"]
    assert all(isinstance(clip, HumanML3DClip) for clip in clips.values())

    whole = clips["000001"]
    assert whole.split == "train" and not whole.mirror and whole.source_id == "000001"
    assert whole.captions == ["a person walks forward.", "someone strolls ahead"]
    assert whole.tokens == ["a/DET person/NOUN walk/VERB forward/ADV", "someone/PRON stroll/VERB ahead/ADV"]
    assert whole.joints.dtype == np.float32 and np.array_equal(whole.joints, joints["000001"])
    assert (whole.start_frame, whole.end_frame) == (0, 60)

    mirrored = clips["M000001"]
    assert mirrored.mirror and mirrored.source_id == "M000001"
    assert np.array_equal(mirrored.joints, mirror_joints(joints["000001"]))

    assert clips["000003"].split == "val" and clips["000003"].captions == ["a man jumps then sits"]
    span = clips["000003_1"]
    # rows [20, 80): new_joints has as many rows as the vectors (recover_from_ric of them)
    assert (span.start_frame, span.end_frame) == (20, 80) and span.captions == ["a man jumps"]
    assert span.tokens == ["a/DET man/NOUN jump/VERB"] and span.source_id == "000003"
    assert np.array_equal(span.joints, joints["000003"][20:80]) and span.features is None

    # only spans: no whole clip; the second span runs past the end and is clipped to the file
    assert "000004" not in clips
    assert (clips["000004_0"].start_frame, clips["000004_0"].end_frame) == (0, 60)
    assert (clips["000004_1"].start_frame, clips["000004_1"].end_frame) == (60, 120)
    assert clips["000004_1"].split == "test"


def test_length_filter_and_split_selection(dataset):
    root, _ = dataset
    val_only = [clip.clip_id for clip in iter_humanml3d(root, splits=("val",))]
    assert val_only == ["000003", "000003_1"]
    # raising the bound keeps the long file (250 frames) and its span; lowering the minimum
    # keeps the 20-frame span
    loose = [clip.clip_id for clip in iter_humanml3d(root, splits=("train", "val"), min_length=10, max_length=300)]
    assert "000002" in loose and "000002_1" in loose and "000003_2" in loose
    assert read_split_ids(root, "train") == SPLITS["train"]


def test_read_captions_nan_span_is_whole_clip(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("a caption#a/DET caption/NOUN#nan#nan\n")
    (line,) = read_captions(path)
    assert line.whole_clip and line.caption == "a caption" and line.line_number == 1


def write_text(clip_id: str, text: str):
    return lambda root: (root / "texts" / f"{clip_id}.txt").write_text(text)


def save_joints(clip_id: str, array: np.ndarray):
    return lambda root: np.save(root / "new_joints" / f"{clip_id}.npy", array)


def remove(relative: str):
    return lambda root: (root / relative).unlink()


@pytest.mark.parametrize(
    "damage, message",
    [
        (write_text("000001", "no fields here\n"), r"000001\.txt:1: malformed"),
        (write_text("000001", "ok#a/DET#zero#1.0\n"), r"000001\.txt:1: start time 'zero'"),
        (write_text("000001", "fine#x/X#0.0#0.0\n  #a/DET#0.0#0.0\n"), r"000001\.txt:2: empty caption"),
        (write_text("000001", "\n\n"), r"000001\.txt: no captions"),
        (save_joints("000001", np.zeros((60, 24, 3))), r"000001\.npy: joints have shape \(60, 24, 3\)"),
        (save_joints("000001", np.full((60, 22, 3), np.nan)), r"000001\.npy: joints contain NaN"),
        (save_joints("000001", np.array([{"a": 1}], dtype=object)), r"000001\.npy: cannot read"),
        (remove("train.txt"), r"train\.txt: split file not found"),
        (lambda root: (root / "val.txt").write_text("000003\n000003\n"), r"val\.txt: id '000003' is listed twice"),
    ],
)
def test_errors_name_the_file(dataset, damage, message):
    root, _ = dataset
    damage(root)
    with pytest.raises(ArtifactError, match=message):
        list(iter_humanml3d(root))


def test_missing_folders(tmp_path):
    with pytest.raises(ArtifactError, match="HumanML3D folder not found"):
        list(iter_humanml3d(tmp_path / "nowhere"))
    (tmp_path / "partial" / "texts").mkdir(parents=True)
    with pytest.raises(ArtifactError, match=r"new_joints: folder not found"):
        list(iter_humanml3d(tmp_path / "partial"))


def test_load_joints_reads_float64_as_float32(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((5, 22, 3), dtype=np.float64))
    loaded = load_joints(path)
    assert loaded.dtype == np.float32 and loaded.shape == (5, 22, 3)


def test_missing_files_are_skipped_and_counted(dataset):
    """A listed id without its motion or caption file is skipped, as the reference loaders do, and counted."""
    root, _ = dataset
    (root / "new_joints" / "M000001.npy").unlink()
    (root / "texts" / "000003.txt").unlink()
    (root / "test.txt").write_text("000004\n000099\n")  # listed, never written
    counts = HumanML3DCounts()
    clips = [clip.clip_id for clip in iter_humanml3d(root, counts=counts)]
    assert clips == ["000001", "000004_0", "000004_1"]
    assert counts.as_dict() == {
        "motion_folder": "new_joints", "listed": 6, "loaded": 2, "clips": 3,
        "dropped": {"missing": 3, "too_short": 0, "too_long": 1},
        "splits": {"train": {"listed": 3, "kept": 1}, "val": {"listed": 1, "kept": 0}, "test": {"listed": 2, "kept": 1}},
    }
    scanned = scan_humanml3d(root)  # the check mode: headers only, the same ids
    assert (scanned.listed, scanned.loaded, scanned.dropped) == (counts.listed, counts.loaded, counts.dropped)
    assert "6 ids listed, 2 kept, 4 dropped (missing 3, too short 0, too long 1)" in counts.summary()


def _reference_loader(root: Path, split: str) -> dict[tuple[str, int], np.ndarray]:
    """Guo et al.'s Text2MotionDataset selection, as MDM/DNO/SoPo ship it: (id, start) -> vectors."""
    kept = {}
    for name in (root / f"{split}.txt").read_text().split():
        try:
            motion = np.load(root / "new_joint_vecs" / f"{name}.npy")
            if len(motion) < 40 or len(motion) >= 200:
                continue
            flag = False
            for line in (root / "texts" / f"{name}.txt").read_text().splitlines():
                parts = line.strip().split("#")
                f_tag, to_tag = float(parts[2]), float(parts[3])
                f_tag, to_tag = (0.0 if np.isnan(f_tag) else f_tag), (0.0 if np.isnan(to_tag) else to_tag)
                if f_tag == 0.0 and to_tag == 0.0:
                    flag = True
                else:
                    n_motion = motion[int(f_tag * 20) : int(to_tag * 20)]
                    if len(n_motion) < 40 or len(n_motion) >= 200:
                        continue
                    kept[(name, int(f_tag * 20))] = n_motion
            if flag:
                kept[(name, 0)] = motion
        except Exception:
            pass
    return kept


def test_release_layout_keeps_exactly_the_reference_loaders_clips(tmp_path):
    """Vectors of 30-210 frames (and a missing file): the same ids, crops and frame counts as the loaders."""
    lengths = {f"{i:06d}": n for i, n in enumerate([30, 39, 40, 41, 120, 198, 199, 200, 201, 210])}
    lengths["M000004"] = 120
    texts = {"000004": "whole#w/X#0.0#0.0\npart#p/X#1.0#3.0\nshort#s/X#1.0#2.9\nlong#l/X#0.5#99.0\n",
             "000009": "whole#w/X#0.0#0.0\na span of a long file#a/X#1.0#4.0\n",
             "000007": "spans only#s/X#0.0#5.0\n"}
    splits = {"train": list(lengths)[:6] + ["M000004", "000404"], "val": ["000006", "000007"], "test": ["000008", "000009"]}
    vectors = write_release(tmp_path, lengths, splits, texts)
    counts = HumanML3DCounts()
    clips = list(iter_humanml3d(tmp_path, counts=counts))
    ours = {(c.source_id, c.start_frame): c for c in clips}
    reference = {}
    for split in splits:
        reference.update(_reference_loader(tmp_path, split))
    assert sorted(ours) == sorted(reference)
    for key, motion in reference.items():
        clip = ours[key]
        assert len(clip.features) == len(motion) == clip.end_frame - clip.start_frame == len(clip.joints)
        assert np.array_equal(clip.features, motion)
    kept_lengths = sorted(len(c.features) for c in clips if c.clip_id == c.source_id)
    assert kept_lengths == [40, 41, 120, 120, 198, 199]
    assert counts.motion_folder == "new_joint_vecs" and counts.listed == 12 and counts.loaded == 6
    assert counts.dropped == {"missing": 1, "too_short": 2, "too_long": 3}
    # joints are recover_from_ric of the vectors: the release's new_joints, the same frame count
    whole = ours[("000004", 0)]
    np.testing.assert_allclose(whole.joints, np.load(tmp_path / "new_joints/000004.npy"), atol=1e-5)
    assert np.array_equal(whole.features, vectors["000004"])
    mean, std = load_release_mean_std(tmp_path)
    assert mean.shape == std.shape == (263,) and (std > 0).all()


def test_release_mean_std_errors_name_the_file(tmp_path):
    assert load_release_mean_std(tmp_path) is None
    np.save(tmp_path / "Mean.npy", np.zeros(263))
    with pytest.raises(ArtifactError, match=r"Std\.npy: file not found"):
        load_release_mean_std(tmp_path)
    np.save(tmp_path / "Std.npy", np.zeros(262))
    with pytest.raises(ArtifactError, match=r"Std\.npy: has shape \(262,\)"):
        load_release_mean_std(tmp_path)


def test_vectors_errors_name_the_file(tmp_path):
    write_release(tmp_path, {"000001": 50}, {"train": ["000001"]})
    np.save(tmp_path / "new_joint_vecs/000001.npy", np.zeros((50, 262), dtype=np.float32))
    with pytest.raises(ArtifactError, match=r"000001\.npy: vectors have shape \(50, 262\)"):
        list(iter_humanml3d(tmp_path, splits=("train",)))
    np.save(tmp_path / "new_joint_vecs/000001.npy", np.full((50, 263), np.nan, dtype=np.float32))
    with pytest.raises(ArtifactError, match=r"000001\.npy: vectors contain NaN"):
        list(iter_humanml3d(tmp_path, splits=("train",)))
