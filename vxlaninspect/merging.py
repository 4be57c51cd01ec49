"""Merging values that may be unknown, as Reports and their parts add up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def pick_known(pick: Callable[[T, T], T], x: T | None, y: T | None) -> T | None:
    """``pick(x, y)`` when both are known (not None), else the one that is."""
    if x is None:
        return y
    if y is None:
        return x
    return pick(x, y)
