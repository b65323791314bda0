"""One module per ``softsampling`` sub-command, each exposing ``register(parser)`` and ``run(args) -> int``.

They sit on the top floor, under only ``cli.py``: a command parses arguments,
calls library code from the floors below and prints; it defines nothing another
module imports (see docs/architecture.md).
"""
