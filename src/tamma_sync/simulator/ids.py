"""Seeded identifiers and hashes.

ELSA's ids are lowercase hex of a random 64-bit value with leading zeros dropped. Instance
ids here come from a keyed bijection of (kind, index), so a million instances need no id
table: an id decodes back to its row, and derived values (names, bookmark ids, variable
values) are keyed hashes of the row and its state.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MASK64: Final = (1 << 64) - 1
_INDEX_BITS: Final = 48
_HEX_ID: Final = re.compile(r"[0-9a-f]{1,16}")
_ROUNDS: Final = 3

#: Id spaces of `IdCodec.encode`: ids of different kinds never decode as each other.
INSTANCE_KIND: Final = 1
VERSION_KIND: Final = 2
DEFINITION_KIND: Final = 3


def splitmix64(value: int) -> int:
    """SplitMix64's finaliser: a fast, well-mixed 64-bit hash of a 64-bit integer."""
    value = (value + 0x9E3779B97F4A7C15) & MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


class IdCodec:
    """Keyed ids and hashes, all derived from one seed."""

    def __init__(self, seed: int) -> None:
        base = splitmix64(seed & MASK64)
        self._keys = [splitmix64(base ^ (2 * r + 1)) for r in range(_ROUNDS)]
        self._multipliers = [splitmix64(base ^ (2 * r + 2)) | 1 for r in range(_ROUNDS)]
        self._inverses = [pow(m, -1, 1 << 64) for m in self._multipliers]
        self._hash_key = splitmix64(base ^ 0xA5A5A5A5)
        self._text_key = base.to_bytes(8, "little")

    def _permute(self, value: int) -> int:
        for key, multiplier in zip(self._keys, self._multipliers, strict=True):
            value = ((value ^ key) * multiplier) & MASK64
            value ^= value >> 32
        return value

    def _unpermute(self, value: int) -> int:
        for key, inverse in zip(reversed(self._keys), reversed(self._inverses), strict=True):
            value ^= value >> 32
            value = ((value * inverse) & MASK64) ^ key
        return value

    def encode(self, kind: int, index: int) -> str:
        """The id of row `index` of `kind` (a small integer naming the id space)."""
        return format(self._permute((kind << _INDEX_BITS) | index), "x")

    def decode(self, kind: int, text: str) -> int | None:
        """The row index behind an id of `kind`, or None if `text` is not such an id."""
        if not _HEX_ID.fullmatch(text) or (len(text) > 1 and text[0] == "0"):
            return None
        value = self._unpermute(int(text, 16))
        if value >> _INDEX_BITS != kind:
            return None
        return value & ((1 << _INDEX_BITS) - 1)

    def hash(self, *parts: int) -> int:
        """A keyed 64-bit hash of integers."""
        value = self._hash_key
        for part in parts:
            value = splitmix64(value ^ (part & MASK64))
        return value

    def hash_text(self, text: str) -> int:
        """A keyed 64-bit hash of a string (str.__hash__ is salted per process)."""
        digest = hashlib.blake2b(text.encode(), digest_size=8, key=self._text_key).digest()
        return int.from_bytes(digest, "little")

    def hex_id(self, *parts: int) -> str:
        """An ELSA-style id for derived objects (bookmarks, log records, contexts)."""
        return format(self.hash(*parts), "x")
