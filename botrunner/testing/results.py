"""What a test run found: one `TestResult` per test, with its failures. The report formats
(`text`, `jsonreport`, `junit`) only read these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "stale", "not_recorded"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "stale", "not_recorded")


@dataclass(frozen=True, slots=True)
class Failure:
    """One assertion that did not hold (or why a replay stopped: `assertion` "stale")."""

    assertion: str
    message: str
    turn: int | None = None  # 1-based; None: the test as a whole
    user: str | None = None  # what the user said in that turn
    expected: Any = None
    got: Any = None
    detail: str = ""  # more lines: a diff, the grader's reason

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True, slots=True)
class Judgement:
    """A `judge` rubric's grade, passed or not, with the grader's reason."""

    turn: int
    rubric: str
    passed: bool
    reason: str


@dataclass(slots=True)
class TestResult:
    __test__ = False  # not a pytest class

    file: str
    name: str
    status: Status
    mode: str  # replay, live or record
    failures: list[Failure] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "name": self.name,
            "status": self.status,
            "mode": self.mode,
            "seconds": round(self.seconds, 3),
            "failures": [f.to_dict() for f in self.failures],
            "judgements": [asdict(j) for j in self.judgements],
        }


def counts(results: list[TestResult]) -> dict[str, int]:
    found = {status: 0 for status in STATUSES}
    for result in results:
        found[result.status] += 1
    return found


def summary(results: list[TestResult], seconds: float) -> str:
    """`5 tests: 3 passed, 1 failed, 1 stale (0.4 s)`."""
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in counts(results).items() if n]
    total = len(results)
    return (
        f"{total} test{'s' if total != 1 else ''}: {', '.join(parts) or 'none'} ({seconds:.1f} s)"
    )
