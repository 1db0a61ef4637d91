"""Orchestration: prepare the input, submit it to Clearout, push ids to XCom, defer, write the result."""

from __future__ import annotations

from typing import Literal

#: Below this many addresses, instant calls finish sooner than a bulk list's queue and polling.
INSTANT_THRESHOLD = 200


def choose_verification_mode(
    n_addresses: int, threshold: int = INSTANT_THRESHOLD
) -> Literal["instant", "bulk"]:
    """``"instant"`` for fewer than ``threshold`` addresses to verify, else ``"bulk"``.

    Why a threshold: a bulk list costs a queue slot (Clearout runs only a few at once) and minutes of
    polling even for ten addresses, while instant calls are paced by the account's per-minute rate, so
    they only pay off for small deltas. Count the addresses AFTER preparation (deduplicated, syntax
    checked): that is what either path sends.
    """
    if n_addresses < 0:
        raise ValueError(f"n_addresses must be >= 0, not {n_addresses}")
    return "instant" if n_addresses < threshold else "bulk"
