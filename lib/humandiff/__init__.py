"""humandiff: diffusion priors for humans (DNO, ScoreHMR, SoPo, HMDiff) over one diffusion core."""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root when running from a checkout (stages resolve default data paths against it).
REPO_ROOT = Path(__file__).resolve().parents[2]
