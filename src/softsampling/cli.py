"""The ``softsampling`` command: one entry point, one sub-command per stage.

Each sub-command is a module of ``softsampling.commands`` that exposes
``register(parser)`` (adds its arguments) and ``run(args) -> int``. This file
only wires them together and turns :class:`SoftSamplingError` into a one-line
message and exit status 2 (``--debug`` shows the traceback instead); Ctrl-C
(exit 130) and SIGTERM (exit 143) stop a command after removing its temp files.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from softsampling import __version__
from softsampling.errors import SoftSamplingError
from softsampling.io import Terminated, raise_on_sigterm

# name -> (module, one-line help). Order is the order of the workflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("softsampling.commands.data", "build datasets (the digit-scene benchmark, Open Images subsets)"),
    "curate": ("softsampling.commands.curate", "drop annotations reproducibly to simulate missing labels"),
    "train": ("softsampling.commands.train", "train Faster R-CNN with a label-assignment strategy"),
    "predict": ("softsampling.commands.predict", "run a trained model on images"),
    "evaluate": ("softsampling.commands.evaluate", "score detections: VOC, COCO and Open Images metrics"),
    "calibrate": ("softsampling.commands.calibrate", "choose per-class score thresholds on a validation split"),
    "audit": ("softsampling.commands.audit", "find missing annotations: rank unannotated detections for review"),
    "audit-merge": ("softsampling.commands.audit_merge", "add the boxes accepted in an audit's review.html"),
    "analyze": ("softsampling.commands.analyze", "analyses of missing labels (overlap vs. dropped objects)"),
    "reproduce": ("softsampling.commands.reproduce", "reproduce the paper's Table 1 and figures"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softsampling",
        description="Train and evaluate object detectors on datasets with missing annotations "
        "(Soft Sampling, Wu et al., BMVC 2019).",
    )
    parser.add_argument("--version", action="version", version=f"softsampling {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            p = sub.add_parser(name, help=f"{help_text} (not available in this version)")
            p.set_defaults(func=_not_available(name))
            continue
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.register(p)
        p.set_defaults(func=module.run)
    return parser


def _not_available(name: str):
    def run(args: argparse.Namespace) -> int:
        raise SoftSamplingError(
            f"the '{name}' command is not implemented in softsampling {__version__} yet",
            fix="see `softsampling --help` for the available commands",
        )

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    raise_on_sigterm()  # SIGTERM cleans up temp files and locks as Ctrl-C does
    try:
        return int(args.func(args) or 0)
    except SoftSamplingError as exc:
        if args.debug:
            raise
        print(f"softsampling {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"softsampling {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"softsampling {args.command}: terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
