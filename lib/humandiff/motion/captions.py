"""Captions for procedural motions, in the style of HumanML3D's annotations.

A caption is a subject, one verb phrase per action and connectors ("then", "and then",
"before", "after"), in simple present, progressive, or as a bare "-ing" description. Mirroring
swaps left/right words and the sense of rotation, as HumanML3D does for its mirrored copies.
"""

from __future__ import annotations

import re

import numpy as np

SUBJECTS = ("a person", "a man", "a woman", "someone", "the person", "a human", "the man", "the woman")

_SWAPS = {
    "left": "right", "right": "left",
    "counterclockwise": "clockwise", "anticlockwise": "clockwise", "clockwise": "counterclockwise",
}
_SWAP_PATTERN = re.compile(r"\b(" + "|".join(sorted(_SWAPS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def mirror_text(text: str) -> str:
    """Swap body sides and rotation sense in ``text`` (case of the first letter kept)."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        new = _SWAPS[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    return _SWAP_PATTERN.sub(swap, text)


def _third_person(subject: str, phrase: str) -> str:
    # "themselves" suits a neutral subject; gendered subjects get the matching pronoun.
    if subject in ("a man", "the man"):
        return phrase.replace("themselves", "himself")
    if subject in ("a woman", "the woman"):
        return phrase.replace("themselves", "herself")
    return phrase


def compose_caption(subject: str, phrases: list[str], style: str, rng: np.random.Generator) -> str:
    """Join verb phrases of consecutive actions into one sentence.

    ``style``: "simple" (walks ... then jumps), "progressive" (is walking ... then jumping) or
    "gerund" (a person walking ... then jumping).
    """
    if style == "simple":
        head = f"{subject} {phrases[0]}"
    elif style == "progressive":
        head = f"{subject} is {phrases[0]}"
    else:
        head = f"{subject} {phrases[0]}"
    rest = phrases[1:]
    if not rest:
        sentence = head
    elif len(rest) == 1:
        connector = rng.choice([", then ", " and then ", " and ", ", after that "]) if style != "gerund" else rng.choice([", then ", " and then "])
        sentence = head + connector + rest[0]
    else:
        sentence = head + rng.choice([", then ", " and then "]) + rest[0] + rng.choice([", and finally ", ", then ", " and then "]) + rest[1]
    sentence = _third_person(subject, sentence)
    return re.sub(r"\s+", " ", sentence).strip() + "."


def make_captions(simple: list[list[str]], progressive: list[list[str]], rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct captions for a clip whose actions offer these verb-phrase variants.

    ``simple[k]`` / ``progressive[k]`` are the variants of the k-th action (same length).
    """
    captions: list[str] = []
    tries = 0
    while len(captions) < count and tries < 200:
        tries += 1
        style = rng.choice(["simple", "simple", "progressive", "gerund"])
        pool = simple if style == "simple" else progressive
        chosen = [variants[int(rng.integers(len(variants)))] for variants in pool]
        subject = str(rng.choice(SUBJECTS))
        caption = compose_caption(subject, chosen, str(style), rng)
        if caption not in captions:
            captions.append(caption)
    return captions
