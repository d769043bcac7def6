"""Splitting a sequence into the batches an API accepts (SQS's 10, a venue's subscribe cap)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` in order, in slices of at most `size` (the last may be shorter)."""
    if size < 1:
        raise ValueError("a chunk holds at least one item")
    return [items[i : i + size] for i in range(0, len(items), size)]
