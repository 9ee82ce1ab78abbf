"""Run IDs and friendly run names.

Standard library only (layer 1). A run ID is a UUIDv7 written as 32 lowercase
hex digits: the first 48 bits are the creation time in milliseconds, so IDs
sort by time; within one millisecond a process hands out increasing IDs (the
12-bit counter of RFC 9562, method 1), and the remaining 62 bits are random.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["friendly_name", "new_run_id", "normalize_id_prefix", "run_id_time_ms"]

_lock = threading.Lock()
_last_ms = -1
_counter = 0


def new_run_id(time_ms: int | None = None) -> str:
    """A new time-sortable, unique run ID.

    Args:
        time_ms: the creation time to encode; now if omitted (tests inject it).
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000 if time_ms is None else time_ms
    with _lock:
        if ms <= _last_ms:
            # Same (or an earlier, clock-stepped) millisecond: keep IDs increasing.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return f"{value:032x}"


def run_id_time_ms(run_id: str) -> int:
    """The creation time (ms since the epoch) encoded in a run ID."""
    return int(run_id[:12], 16)


def normalize_id_prefix(text: str) -> str:
    """A user-typed ID or prefix in stored form: lowercase, dashes removed."""
    return text.strip().lower().replace("-", "")


_ADJECTIVES = """
amber azure bold brisk calm clever coral crisp dapper eager early fleet gentle
golden hardy humble ivory jolly keen lively lucid mellow misty nimble noble
olive plucky quiet rapid rosy rustic sage shiny silent sleek steady sunny
swift tidy vivid warm wild witty young zesty
""".split()
_NOUNS = """
otter falcon badger heron lynx marten osprey panda quail raven robin salmon
sparrow tiger walrus wombat yak zebra beacon canyon cedar comet delta ember
fjord glacier harbor island lagoon meadow mesa nebula orchid pebble prairie
quartz reef ridge summit tundra willow
""".split()


def friendly_name(run_id: str) -> str:
    """A short, memorable default name derived from the ID's random bits."""
    bits = int(run_id[16:], 16)
    adjective = _ADJECTIVES[bits % len(_ADJECTIVES)]
    noun = _NOUNS[(bits // len(_ADJECTIVES)) % len(_NOUNS)]
    return f"{adjective}-{noun}-{run_id[-4:]}"
