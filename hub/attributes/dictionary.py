"""The Mixer v1 global dictionary: index ≥ 0 on the wire names one of these words.

The list is package data copied from Istio; its order is the wire contract. It is read
with PyYAML's BaseLoader so that every entry stays a string ("true", "200").
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml


@functools.cache
def global_words() -> tuple[str, ...]:
    """The dictionary in wire order (duplicates kept: their indices decode too)."""
    text = (resources.files("mixerhub") / "data" / "global_dictionary.yaml").read_text("utf-8")
    words = yaml.load(text, Loader=yaml.BaseLoader)
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise RuntimeError("global_dictionary.yaml must be a list of strings")
    return tuple(words)


@functools.cache
def global_index() -> dict[str, int]:
    """Word → index for encoding; a word listed twice encodes with its first index."""
    index: dict[str, int] = {}
    for i, word in enumerate(global_words()):
        index.setdefault(word, i)
    return index
