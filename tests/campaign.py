"""Book-keeping of the bad-input campaign (tests/test_robustness.py): how many cases were tried.

Every case the campaign throws at a target is counted here by target and outcome; pytest prints
the totals at the end of the run (tests/conftest.py), and writes them as JSON to
$HWR_CAMPAIGN_REPORT when that is set. $HWR_CAMPAIGN_SCALE multiplies the number of hypothesis
examples (default 1, the CI size; RELIABILITY.md quotes a run with a larger scale).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterator

CASES: Counter[tuple[str, str]] = Counter()  # (target, outcome) -> cases
SCALE = float(os.environ.get("HWR_CAMPAIGN_SCALE") or 1)
HANG_LIMIT_S = 60  # one case taking longer than this is a hang, whatever the machine


def examples(n: int) -> int:
    """`n` hypothesis examples, scaled by $HWR_CAMPAIGN_SCALE."""
    return max(1, round(n * SCALE))


def record(target: str, outcome: str) -> None:
    CASES[(target, outcome)] += 1


def totals() -> dict[str, dict[str, int]]:
    """{target: {outcome: cases, ..., "total": cases}}."""
    out: dict[str, dict[str, int]] = {}
    for (target, outcome), n in sorted(CASES.items()):
        row = out.setdefault(target, {})
        row[outcome] = n
        row["total"] = row.get("total", 0) + n
    return out


@contextlib.contextmanager
def no_hang(limit_s: int = HANG_LIMIT_S) -> Iterator[None]:
    """Fail (TimeoutError) if the block runs longer than `limit_s`: a hang, not a slow machine."""

    def alarm(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"a case ran for more than {limit_s} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(limit_s)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
