"""What is said of a JSONL line that was turned away (corpus tuples, operators' corrections)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InvalidLine:
    """A line turned away, with its file, 1-based line number (0: the whole file) and reason."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"
