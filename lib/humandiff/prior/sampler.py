"""Draw raw motions from a trained text-to-motion prior for captions and lengths.

One home for the three steps every consumer of the trained prior repeats: the caption's
condition (sentence, clauses, word pieces; :func:`humandiff.text.clauses.caption_conditions`),
DDIM with classifier-free guidance (:func:`humandiff.prior.mdm.generate`), and undoing the
feature standardisation. ``evaluate_t2m`` draws its extra sample sets and its MultiModality
repeats with it, ``tools/prior_fit.py`` its sample sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

from humandiff.motion.dataset import load_embeddings, load_mean_std
from humandiff.prior.mdm import generate, load_mdm
from humandiff.text.clauses import caption_conditions
from humandiff.train.device import on_device


class SamplerSettings(TypedDict):
    """How the prior is sampled: DDIM steps, classifier-free guidance scale, DDIM eta."""

    ddim_steps: int
    guidance_scale: float
    eta: float


class PriorSampler:
    """Draws raw motions (T, 263) from the MDM prior for captions and lengths, with fixed sampler settings.

    ``device``: where the network runs (resolved, e.g. by :func:`humandiff.train.device.resolve_device`);
    the noise, the DDIM updates and the results stay on the CPU, so the same seed draws the same
    noise on every device.
    """

    def __init__(self, model_file: str | Path, config_file: str | Path, mean_std_file: str | Path,
                 embeddings_file: str | Path, settings: SamplerSettings, batch_size: int,
                 device: torch.device | str = "cpu") -> None:
        self.model, self.config = load_mdm(model_file, config_file)
        self.network = on_device(self.model, device)
        self.mean, self.std = load_mean_std(mean_std_file, "model")
        self.embeddings_file, self.embeddings = str(embeddings_file), load_embeddings(embeddings_file)
        self.settings, self.batch_size = settings, batch_size

    def conditions(self, captions: list[str]) -> np.ndarray:
        """The prior's conditions (N, condition_dim) for ``captions``: encode them once, draw many sets."""
        return caption_conditions(captions, self.embeddings, self.config.clause_slots,
                                  strict_source=self.embeddings_file, word_tokens=self.config.word_tokens)

    def __call__(self, conditions: np.ndarray, lengths: list[int], seed: int) -> list[np.ndarray]:
        """One raw motion (T_i, 263) per row of ``conditions`` (from :meth:`conditions`) and length."""
        motions = generate(self.network, self.config.noise_schedule(), torch.from_numpy(conditions), lengths,
                           num_steps=int(self.settings["ddim_steps"]),
                           guidance_scale=float(self.settings["guidance_scale"]), eta=float(self.settings["eta"]),
                           seed=seed, batch_size=self.batch_size, progress=True)
        return [m.numpy() * self.std + self.mean for m in motions]
