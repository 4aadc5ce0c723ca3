"""A dict that forgets its oldest entries past a capacity: the in-process memos of the
agent path (software ids by checksum, hosts' last stored software lists) must not grow
with every host and package a fleet ever had."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def put(self, key: K, value: V) -> None:
        self.put_many(((key, value),))

    def put_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None:
        self._items.update(items)
        extra = len(self._items) - self.capacity
        if extra > 0:
            # Dicts keep insertion order: drop the oldest tenth (at least the excess), so
            # eviction is rare rather than once per insert.
            for key in list(itertools.islice(self._items, max(extra, self.capacity // 10))):
                del self._items[key]
