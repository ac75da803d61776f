"""ULID event ids: 26 Crockford base32 characters, sortable by creation time.

48 bits of milliseconds then 80 random bits. Within one millisecond the random
part is incremented, so ids made by one process are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ("new_ulid", "ulid_timestamp_ms")

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_MAX = (1 << 80) - 1

_lock = threading.Lock()
_last_ms = -1
_last_random = 0
_last_prefix = ""


# Two characters per 10 bits: a ULID is 13 table look-ups, not 26 shifts.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    """The 26 characters of a 128-bit value (130 bits with two leading zeros)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_ulid() -> str:
    """Return a new ULID, greater than every ULID this process made before."""
    global _last_ms, _last_random, _last_prefix
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            # Same (or an earlier, after a clock step back) millisecond: stay monotonic.
            now = _last_ms
            rand = _last_random + 1
            if rand > _RANDOM_MAX:
                now += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            # The top bit is left clear so increments within a millisecond never overflow.
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        if now != _last_ms or not _last_prefix:
            # The first 10 characters hold the 48-bit time; they change once per millisecond.
            _last_prefix = _encode(now << 80)[:10]
        _last_ms, _last_random = now, rand
        prefix = _last_prefix
    return prefix + "".join([_PAIRS[(rand >> shift) & 1023] for shift in _SHIFTS[5:]])


def ulid_timestamp_ms(ulid: str) -> int:
    """Return the millisecond timestamp encoded in ``ulid``.

    :raises ValueError: if ``ulid`` is not 26 Crockford base32 characters.
    """
    if len(ulid) != 26:
        raise ValueError(f"not a ULID: {ulid!r}")
    value = 0
    for char in ulid.upper():
        try:
            value = (value << 5) | _DECODE[char]
        except KeyError:
            raise ValueError(f"not a ULID: {ulid!r}") from None
    return value >> 80
