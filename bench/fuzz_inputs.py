"""Fuzz every input reader with mutated valid files; count tracebacks, hangs and memory blow-ups.

For each format a valid file from tests/data/bad/ (or one made here) is
mutated by hypothesis (byte flips, deletions, insertions of structural tokens
such as brackets, quotes, NUL, huge or non-ASCII numbers, duplicated spans)
and handed, in-process, to the reader a command uses. An outcome is

- fine: the reader returned, or raised ``SoftSamplingError`` (the one-line error);
- a traceback: any other exception (printed once per distinct type and place);
- a hang: the case ran over --timeout seconds (SIGALRM);
- memory: the address space grew past --memory-gb (RLIMIT_AS turns it into MemoryError).

Run from the repository root (PYTHONPATH=src):

    python bench/fuzz_inputs.py --examples 300             # a few minutes on one core
    python bench/fuzz_inputs.py --examples 10000           # the release target (about an hour per format)
    python bench/fuzz_inputs.py --formats coco,oi --examples 1000 --seed 1

Exit status 1 when anything other than "fine" happened. Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BAD = ROOT / "tests" / "data" / "bad"

from softsampling.errors import SoftSamplingError  # noqa: E402

TOKENS = [
    b"[",
    b"]",
    b"{",
    b"}",
    b"<",
    b">",
    b"</",
    b'"',
    b",",
    b"\n",
    b"\r",
    b"\x00",
    b"\t",
    b"-",
    b".",
    b"e",
    b"1e309",
    b"nan",
    b"-1",
    b"0",
    b"9999999999999999999999",
    b"\xef\xbc\x91",
    b"\xff",
    b"null",
    b"true",
    b"[" * 3000,
    b"<a>" * 3000,
    b"x" * 5000,
    b":",
    b"- ",
    b"&a ",
    b"*a",
    b"!!python/object ",
    b"\\",
]


class Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001 - signal handler signature
    raise Hang()


# ------------------------------------------------------------------ readers under test
def _coco_gt():
    from softsampling.data.formats import load_dataset

    return load_dataset(BAD / "coco_good.json", "coco")


def make_readers(work: Path) -> dict[str, tuple[bytes, Callable[[Path], object], str]]:
    """name -> (valid seed bytes, reader taking the mutated file's path, file suffix)."""
    from softsampling.data.formats import load_dataset
    from softsampling.engine.checkpoint import load_checkpoint, save_checkpoint
    from softsampling.engine.config import load_config
    from softsampling.evaluation.io import read_detections, read_txt_layout

    gt = _coco_gt()

    def voc(path: Path) -> object:
        voc_dir = work / "VOC2007"
        (voc_dir / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc_dir / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (voc_dir / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
        os.replace(path, voc_dir / "Annotations" / "000001.xml")
        return load_dataset(voc_dir, "voc")

    def txt(path: Path) -> object:
        gt_dir, det_dir = work / "gt", work / "det"
        gt_dir.mkdir(exist_ok=True)
        det_dir.mkdir(exist_ok=True)
        (gt_dir / "a.txt").write_text("cat 5 5 14 14\n")
        os.replace(path, det_dir / "a.txt")
        return read_txt_layout(gt_dir, det_dir, notes=[])

    ckpt = work / "seed.pt"
    save_checkpoint(
        ckpt,
        {"model": {"w": __import__("torch").zeros(3)}, "labels": {"ids": [1], "names": ["cat"]}, "config": {"seed": 0}},
    )
    return {
        "coco": ((BAD / "coco_good.json").read_bytes(), lambda p: load_dataset(p, "coco"), ".json"),
        "voc": ((BAD / "voc_good.xml").read_bytes(), voc, ".xml"),
        "openimages": (
            (BAD / "oi_good.csv").read_bytes(),
            lambda p: load_dataset(p, "openimages", classes_csv=BAD / "oi_classes.csv", sizes_csv=BAD / "oi_sizes.csv"),
            ".csv",
        ),
        "det_json": ((BAD / "det_good.json").read_bytes(), lambda p: read_detections(p, gt, notes=[]), ".json"),
        "det_csv": (
            b"image,label,score,xmin,ymin,xmax,ymax\na.png,cat,0.9,4,4,14,14\nb.png,dog,0.8,20,10,28,18\n",
            lambda p: read_detections(p, gt, notes=[]),
            ".csv",
        ),
        "txt": (b"cat 0.9 5 5 14 14\ndog 0.5 1 1 4 4\n", txt, ".txt"),
        "yaml": ((ROOT / "configs" / "digits.yaml").read_bytes(), load_config, ".yaml"),
        "checkpoint": (ckpt.read_bytes(), load_checkpoint, ".pt"),
    }


# ------------------------------------------------------------------ mutations
@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "token", "duplicate", "truncate"]))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif kind == "duplicate":
            end = min(len(data), pos + draw(st.integers(1, 64)))
            data[pos:pos] = data[pos:end] * draw(st.integers(2, 50))
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


def fuzz_format(
    name: str,
    original: bytes,
    reader: Callable[[Path], object],
    suffix: str,
    work: Path,
    *,
    examples: int,
    timeout: float,
    rng_seed: int,
) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    tracebacks: dict[str, str] = {}
    slowest = 0.0

    @seed(rng_seed)
    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck)
    )
    @given(mutated(original))
    def case(data: bytes) -> None:
        nonlocal slowest
        path = work / f"case{suffix}"
        path.write_bytes(data)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        start = time.perf_counter()
        try:
            reader(path)
            outcome = "returned"
        except SoftSamplingError:
            outcome = "one-line error"
        except Hang:
            outcome = "hang"
        except MemoryError:
            outcome = "memory"
        except Exception as exc:  # noqa: BLE001 - counting tracebacks is the point
            outcome = "traceback"
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            tracebacks.setdefault(key, f"{exc!s:.200} | input {data[:120]!r}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = time.perf_counter() - start
            slowest = max(slowest, elapsed)
        # The alarm can land where Python swallows exceptions (a gc callback): judge hangs by the clock too.
        if elapsed > timeout:
            outcome = "hang"
        if outcome in ("hang", "memory"):
            tracebacks.setdefault(outcome, f"{elapsed:.1f} s | input (hex, first 400 bytes) {data[:400].hex()}")
        outcomes[outcome] += 1

    warm = work / f"warm{suffix}"
    warm.write_bytes(original)
    with contextlib.suppress(SoftSamplingError):  # the first call pays the imports (torch: seconds), not a hang
        reader(warm)
    t0 = time.perf_counter()
    case()
    return {
        "format": name,
        "examples": sum(outcomes.values()),
        "seconds": round(time.perf_counter() - t0, 1),
        "slowest_case_s": round(slowest, 2),
        "outcomes": dict(outcomes),
        "findings": tracebacks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="mutations per format (default 300)")
    parser.add_argument(
        "--formats", default="all", help="comma list or 'all': coco,voc,openimages,det_json,det_csv,txt,yaml,checkpoint"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="address-space growth allowed per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        readers = make_readers(work)
        names = list(readers) if args.formats == "all" else args.formats.split(",")
        # the limit counts from what the imports (torch) already reserved
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        limit = used + int(args.memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        results = []
        for name in names:
            original, reader, suffix = readers[name]
            result = fuzz_format(
                name, original, reader, suffix, work, examples=args.examples, timeout=args.timeout, rng_seed=args.seed
            )
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    bad = sum(r["outcomes"].get(k, 0) for r in results for k in ("traceback", "hang", "memory"))
    print(f"{sum(r['examples'] for r in results)} cases, {bad} traceback/hang/memory outcome(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
