"""What a fuzz case is judged by, and the tally a run reports.

Every case ends as an Outcome: fine, `hung` (it did not complete or close within its bound),
or `unexpected` (a response the documentation does not allow: an undocumented error code, a
status the input does not explain, INTERNAL/UNKNOWN from the worker, traceback text, a wrong
close code, malformed audio). Crashes are judged by the stack (the process exited).

One response is counted apart, neither fine nor unexpected: `lost_status`, a stream the
worker ended with a status while the client was still writing, which the grpc.aio client
reports as INTERNAL "Internal error from Core" instead of the worker's status
(grpc/grpc#36066). The worker's answer cannot be judged then; the count is reported."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Text that only an unhandled exception puts in a client-visible message.
LEAK_MARKERS = ("Traceback (most recent call last)", 'File "/', "Exception iterating")


def leaks_internals(text: str) -> bool:
    """Whether a message a client sees carries traceback text."""
    return any(marker in text for marker in LEAK_MARKERS)


@dataclass(frozen=True)
class Outcome:
    """How one case went."""

    target: str
    hung: bool = False
    problem: str | None = None  # set when the response was not one the docs allow
    lost_status: int = 0  # streams whose status the client library replaced (grpc#36066)

    @property
    def ok(self) -> bool:
        """Neither hung nor unexpected."""
        return not self.hung and self.problem is None


@dataclass
class Tally:
    """Counts per target, and the first few problems of each kind with their cases."""

    cases: Counter[str] = field(default_factory=Counter)
    hung: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    lost_status: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, outcome: Outcome, case: object) -> None:
        """Count one case; keep its description if it went wrong."""
        self.cases[outcome.target] += 1
        self.lost_status[outcome.target] += outcome.lost_status
        if outcome.hung:
            self.hung[outcome.target] += 1
        elif outcome.problem is not None:
            self.unexpected[outcome.target] += 1
        if not outcome.ok and len(self.examples) < self.max_examples:
            what = "hung" if outcome.hung else outcome.problem
            self.examples.append(f"[{outcome.target}] {what}\n    case: {_short(case)}")

    @property
    def total(self) -> int:
        """Cases run."""
        return sum(self.cases.values())

    @property
    def failures(self) -> int:
        """Cases hung or unexpected."""
        return sum(self.hung.values()) + sum(self.unexpected.values())


def _short(case: object, limit: int = 1500) -> str:
    text = repr(case)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"
