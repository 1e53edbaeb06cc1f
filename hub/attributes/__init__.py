"""Typed attributes: the vocabulary, the bag with lookup tracking, wire and JSON codecs."""

from __future__ import annotations

from mixerhub.attributes.bag import MISSING, AttributeBag, Reference
from mixerhub.attributes.types import ValueType

__all__ = ["MISSING", "AttributeBag", "Reference", "ValueType"]
