"""`--format json`: one object with a `tests` list (each with `name`, `status` and its
`failures`) and a `summary` of the counts."""

from __future__ import annotations

import json

from botrunner.testing.results import TestResult, counts


def format_json(results: list[TestResult], seconds: float, mode: str) -> str:
    summary = {**counts(results), "total": len(results), "seconds": round(seconds, 3)}
    data = {"mode": mode, "tests": [r.to_dict() for r in results], "summary": summary}
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
