"""The training loop and the train_mdm stage under torchrun: 2 CPU ranks (gloo) on a tiny fake corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from test_mdm import TRAIN_PARAMS, write_fake_corpus

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent('''
    """One rank: train the tiny MDM for a few steps, then save this rank's weights."""
    import sys
    from functools import partial
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from humandiff.motion.dataset import MotionTextDataset, collate_motion, load_mean_std, load_motion_split
    from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel, training_loss
    from humandiff.train.loop import LoopConfig, shutdown_distributed, train

    corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    split = load_motion_split(corpus / "hml/index.parquet", corpus / "hml/features.npz", corpus / "embeddings.parquet")
    mean, std = load_mean_std(corpus / "hml/mean_std.npz")
    dataset = MotionTextDataset(split, mean, std, max_frames=48, seed=0)
    config = MDMConfig(latent_dim=32, num_layers=2, num_heads=4, ff_dim=64, dropout=0.1, diffusion_steps=100)
    # different initial weights per rank: DDP must broadcast rank 0's
    torch.manual_seed(int(__import__("os").environ["RANK"]))
    model = MotionDiffusionModel(config)
    loop = LoopConfig(steps=8, batch_size=4, lr=3e-3, warmup_steps=1, ema_decay=0.5, checkpoint_every=4, log_every=2)
    loss_fn = partial(training_loss, schedule=config.noise_schedule(), cond_drop=0.1)
    result = train(model, dataset, collate_motion, loss_fn, loop, checkpoint_file=out / "ckpt.pt", progress=False)
    rank = dist.get_rank()
    torch.save({"model": result.model.state_dict(), "ema": result.ema.state_dict(), "history": result.history,
                "world": dist.get_world_size()}, out / f"rank{rank}.pt")
    shutdown_distributed()
''')


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] + args
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_fake_corpus(tmp_path_factory.mktemp("ddp_corpus"))


def test_two_ranks_end_with_identical_weights(corpus: Path, tmp_path: Path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = _torchrun([str(script), str(corpus), str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["world"] == 2
    for part in ("model", "ema"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs between ranks"
    # the logged loss is averaged over ranks, so both ranks hold the same curve
    assert ranks[0]["history"] == ranks[1]["history"] and len(ranks[0]["history"]) == 4
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in ranks[0]["history"])
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert checkpoint["step"] == 8 and checkpoint["fingerprint"]["world_size"] == 2
    for key, value in checkpoint["model"].items():
        assert torch.equal(value, ranks[0]["model"][key])


def test_train_stage_runs_unchanged_under_torchrun(corpus: Path, tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train_mdm": dict(TRAIN_PARAMS, steps=4, checkpoint_every=2)}))
    out = tmp_path / "mdm"
    result = _torchrun([str(REPO / "stages/train_mdm.py"), "--params", str(params), "--hml-dir", str(corpus / "hml"),
                        "--embeddings", str(corpus / "embeddings.parquet"), "--out-dir", str(out),
                        "--checkpoint", str(out / "ckpt.pt"), "--plot", str(tmp_path / "loss.csv"),
                        "--metrics", str(tmp_path / "train.json")], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["ranks"] == 2 and metrics["steps"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "config.json", "model.pt"]  # one writer, one checkpoint
    assert (tmp_path / "loss.csv").read_text().startswith("step,loss\n")
