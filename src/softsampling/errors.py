"""The one error type users see.

Every problem a user can fix (bad input file, missing path, bad option) raises
:class:`SoftSamplingError`. The CLI prints it as a single line on stderr and
exits with status 2; library users catch it like any exception.
"""

from __future__ import annotations

from pathlib import Path


class SoftSamplingError(Exception):
    """A problem the user can fix: names the file, the record and the fix.

    Example:
        >>> e = SoftSamplingError(
        ...     "box has x2 <= x1", file="a.json", record="annotation id 7", fix="remove the box or pass --clip"
        ... )
        >>> str(e)
        'a.json: annotation id 7: box has x2 <= x1 (fix: remove the box or pass --clip)'
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        record: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.record = record
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [p for p in (self.file, self.record) if p]
        head = ": ".join(parts + [self.problem])
        return f"{head} (fix: {self.fix})" if self.fix else head
