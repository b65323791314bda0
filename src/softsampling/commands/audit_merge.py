"""Add the candidates accepted in review.html to a copy of the annotations.

Reads --gt (never modified) and the decisions.json exported by `softsampling
audit`'s review.html, and writes --out in the same format with every accepted
box added as an ordinary annotation (COCO/Open Images: a file; VOC: a folder),
plus a manifest of the additions (OUT_STEM.additions.json beside a file,
OUT/additions.json inside a folder): new box id, image, class, box, rank.
With --candidates (the audit's candidates.json) every decision must name one
of its candidates, with the same image, class and box.

Examples:
  softsampling audit-merge --gt digits/annotations/train.json --gt-format coco \\
      --decisions ~/Downloads/decisions.json --candidates audit/candidates.json \\
      --out digits/annotations/train_audited.json

See docs/audit.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from softsampling.errors import SoftSamplingError

GT_FORMATS = ("coco", "voc", "openimages")


def register(parser: argparse.ArgumentParser) -> None:
    from softsampling.data.validate import add_invalid_options

    parser.add_argument("--gt", type=Path, required=True, metavar="PATH", help="annotations the audit ran on")
    parser.add_argument(
        "--gt-format", dest="format", required=True, choices=GT_FORMATS, help="format of --gt (and of --out)"
    )
    parser.add_argument(
        "--decisions", type=Path, required=True, metavar="JSON", help="decisions.json exported from review.html"
    )
    parser.add_argument(
        "--candidates",
        type=Path,
        metavar="JSON",
        help="the audit's candidates.json: check that every decision names one of its candidates",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PATH",
        help="merged annotations: a file for coco/openimages, a folder for voc",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    add_invalid_options(parser, what="boxes in --gt")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR", help="image folder of --gt")
    parser.add_argument("--split", default=None, help="voc: image set to read, e.g. trainval")
    parser.add_argument("--classes", type=Path, default=None, metavar="CSV", help="openimages: class descriptions CSV")
    parser.add_argument("--labels", type=Path, default=None, metavar="CSV", help="openimages: image-level labels CSV")
    parser.add_argument("--sizes", type=Path, default=None, metavar="CSV", help="openimages: image sizes CSV")


def additions_path_for(out: Path, *, is_dir: bool) -> Path:
    """Where the manifest of the additions goes: inside an output folder, else beside the output file."""
    return out / "additions.json" if is_dir else out.with_name(f"{out.stem}.additions.json")


def run(args: argparse.Namespace) -> int:
    from softsampling.commands.curate import reader_options
    from softsampling.data.formats import check_dataset_path
    from softsampling.io import check_input_file, check_output_path, commit_together, output_lock

    out_is_dir = args.format == "voc"
    options = reader_options(args)
    check_dataset_path(args.gt, args.format, option="--gt")
    check_input_file(args.decisions, option="--decisions", what="decisions JSON")
    if args.candidates is not None:
        check_input_file(args.candidates, option="--candidates", what="candidates JSON")
    manifest = additions_path_for(args.out, is_dir=out_is_dir)
    outputs = [args.out, manifest]
    if args.format == "openimages" and args.labels is not None:
        from softsampling.data.openimages import labels_path_for

        outputs.append(labels_path_for(args.out))
    inputs = [args.gt, args.decisions, args.candidates, args.images, args.classes, args.labels, args.sizes]
    for path in outputs:
        check_output_path(
            path,
            force=args.force,
            folder=out_is_dir and path == args.out,
            inputs=inputs,
            keep_out_of=[args.gt] if args.gt.is_dir() else [],
        )
    with output_lock(args.out), commit_together():
        return _merge(args, manifest, options)


def _merge(args: argparse.Namespace, manifest: Path, options: dict[str, Any]) -> int:
    from softsampling.commands.curate import writer_options
    from softsampling.data.curate import sha256_of_input
    from softsampling.data.formats import load_dataset, save_dataset
    from softsampling.evaluation.audit import merge_boxes
    from softsampling.io import write_json

    input_sha256 = sha256_of_input(args.gt)
    ds = load_dataset(args.gt, args.format, option="--gt", **options)
    document = _read_json(args.decisions, "--decisions")
    candidates = _read_candidates(args.candidates) if args.candidates is not None else None
    additions, rejected = parse_decisions(document, ds, args.decisions, candidates)
    merged, new_ids = merge_boxes(ds, additions)
    save_dataset(merged, args.out, args.format, **writer_options(args))
    write_json(
        manifest,
        {
            "input": str(args.gt),
            "input_format": args.format,
            "input_sha256": input_sha256,
            "decisions": str(args.decisions),
            "candidates_sha256": document.get("candidates_sha256"),
            "accepted": len(additions),
            "rejected": rejected,
            "added": [
                {
                    "box_id": int(i),
                    "image_id": _json_id(ds.image_ids[a.image_index]),
                    "file_name": ds.file_names[a.image_index],
                    "category_id": a.label,
                    "bbox": [a.box[0], a.box[1], a.box[2] - a.box[0], a.box[3] - a.box[1]],
                    "rank": a.rank,
                }
                for i, a in zip(new_ids.tolist(), additions, strict=True)
            ],
        },
    )
    print(
        f"added {len(additions)} accepted box(es) ({rejected} rejected) to {ds.num_boxes} annotated boxes; "
        f"wrote {args.out} and {manifest}"
    )
    return 0


def _json_id(value: Any) -> Any:
    return int(value) if isinstance(value, int) or hasattr(value, "item") else str(value)


def _read_json(path: Path, option: str) -> Any:
    from softsampling.parsing import parse_json

    return parse_json(path.read_bytes(), file=path, fix=f"pass the JSON file written by softsampling to {option}")


def _read_candidates(path: Path) -> dict[int, dict[str, Any]]:
    import hashlib

    data = path.read_bytes()
    entries = _read_json(path, "--candidates")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("rank"), int) for e in entries
    ):
        raise SoftSamplingError(
            "not a candidates list (entries with 'rank')",
            file=path,
            fix="pass the candidates.json that `softsampling audit` wrote",
        )
    by_rank = {e["rank"]: e for e in entries}
    by_rank[-1] = {"sha256": hashlib.sha256(data).hexdigest()}
    return by_rank


def parse_decisions(
    document: Any, ds: Any, path: Path, candidates: dict[int, dict[str, Any]] | None
) -> tuple[list[Any], int]:
    """The accepted additions of a decisions document, and the number rejected; any bad entry is an error."""
    from softsampling.evaluation.audit import Addition
    from softsampling.evaluation.review import DECISIONS_FORMAT

    fix = "export the decisions again from review.html"
    if (
        not isinstance(document, dict)
        or document.get("format") != DECISIONS_FORMAT
        or not isinstance(document.get("decisions"), list)
    ):
        raise SoftSamplingError(
            f"not a decisions file (expected format {DECISIONS_FORMAT!r} and a 'decisions' list)", file=path, fix=fix
        )
    if candidates is not None and document.get("candidates_sha256") not in (None, candidates[-1]["sha256"]):
        raise SoftSamplingError(
            "the decisions were made on another candidates.json (checksums differ)",
            file=path,
            fix="pass the candidates.json of the audit whose review.html made these decisions",
        )
    row_of = {name: r for r, name in enumerate(ds.file_names)}
    known_classes = {c.id for c in ds.categories}
    additions, rejected, seen = [], 0, set()
    for k, d in enumerate(document["decisions"]):
        record = f"decision {k}"
        if not isinstance(d, dict) or not isinstance(d.get("rank"), int) or isinstance(d.get("rank"), bool):
            raise SoftSamplingError("a decision needs an integer 'rank'", file=path, record=record, fix=fix)
        rank = d["rank"]
        record = f"decision for candidate {rank}"
        if rank in seen:
            raise SoftSamplingError("candidate decided twice", file=path, record=record, fix=fix)
        seen.add(rank)
        if d.get("decision") not in ("accept", "reject"):
            raise SoftSamplingError(
                f"'decision' must be 'accept' or 'reject', got {d.get('decision')!r}", file=path, record=record, fix=fix
            )
        if candidates is not None:
            c = candidates.get(rank) if rank != -1 else None
            if c is None:
                raise SoftSamplingError(
                    "names no candidate of --candidates",
                    file=path,
                    record=record,
                    fix="pass the candidates.json of the audit that made these decisions",
                )
            if any(c.get(key) != d.get(key) for key in ("file_name", "category_id", "bbox")):
                raise SoftSamplingError(
                    "differs from candidate of the same rank in --candidates (image, class or box)",
                    file=path,
                    record=record,
                    fix="pass the candidates.json of the audit that made these decisions",
                )
        if d["decision"] == "reject":
            rejected += 1
            continue
        row = row_of.get(d.get("file_name")) if isinstance(d.get("file_name"), str) else None
        if row is None:
            raise SoftSamplingError(
                f"image {d.get('file_name')!r} is not in --gt",
                file=path,
                record=record,
                fix="merge into the annotations the audit ran on",
            )
        if d.get("category_id") not in known_classes or isinstance(d.get("category_id"), bool):
            raise SoftSamplingError(
                f"category id {d.get('category_id')!r} is not in --gt",
                file=path,
                record=record,
                fix="merge into the annotations the audit ran on",
            )
        bbox = d.get("bbox")
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
            and bbox[2] > 0
            and bbox[3] > 0
        ):
            raise SoftSamplingError(
                f"'bbox' must be [x, y, w, h] with w, h > 0, got {bbox!r}", file=path, record=record, fix=fix
            )
        x, y, w, h = (float(v) for v in bbox)
        additions.append(Addition(row, (x, y, x + w, y + h), int(d["category_id"]), rank))
    return additions, rejected
