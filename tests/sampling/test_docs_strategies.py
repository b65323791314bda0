"""The Python examples in docs/strategies.md run and print what the comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"


def test_examples_run_and_print_documented_values() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(DOC), "exec"), {})
        printed = out.getvalue().splitlines()
        documented = [
            line.split("# ")[1].split(":")[0].split("  (")[0].strip()
            for line in block.splitlines()
            if line.strip().startswith("print(") and "# " in line
        ]
        assert len(printed) == len(documented)
        for got, want in zip(printed, documented, strict=True):
            assert got == want


def test_the_strategy_table_is_the_rule_table() -> None:
    from softsampling.sampling.rules import strategies_markdown

    text = DOC.read_text()
    start = text.index("<!-- generated: softsampling.sampling.rules.strategies_markdown() -->\n")
    end = text.index("<!-- end generated -->")
    assert text[start:end].split("\n", 1)[1].strip() == strategies_markdown()
