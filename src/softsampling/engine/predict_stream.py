"""Predict on any number of images with constant memory, resumably, in one or many processes.

``softsampling predict`` runs through this module:

- the image list is an iterator (``--image-list FILE`` is read line by line,
  never held whole);
- images are taken in *chunks* of ``chunk_size`` consecutive images; chunk
  ``k`` (images ``k*C .. k*C+C-1``) goes to process ``k % world`` under
  ``torchrun``; each finished chunk is written atomically to
  ``OUT/detections.partial/chunk-<k>.json``, so memory holds one chunk;
- a killed run, started again with the same command, skips the chunks already
  on disk (``job.json`` in the same folder records the settings; other
  settings are refused until ``--force``);
- at the end rank 0 streams the chunks, in order, into ``OUT/detections.json``
  and removes the partial folder.

Every image is its own forward pass and its detections are named by its
``file_name`` (never by a position, which would not match a ground truth's
ids), in list order, so the output does not depend on the chunk size, the
number of processes or interruptions: it is byte-identical to one
uninterrupted process.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softsampling.engine.data import LabelMap, load_image
from softsampling.engine.distributed import barrier, distributed_context, owned
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write, commit_together, write_json

PARTIAL = "detections.partial"
CHUNK_SIZE = 1000


def read_image_list(path: Path) -> Iterator[Path]:
    """Image paths from a text file, one per line, streamed; relative paths are relative to the file's folder.

    Blank lines and lines starting with ``#`` are skipped.
    """
    if not path.is_file():
        raise SoftSamplingError("image list not found", file=path, fix="pass a text file with one image path per line")
    base = path.parent
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.strip()
            if text and not text.startswith("#"):
                p = Path(text)
                yield p if p.is_absolute() else base / p


def detection_entries(
    file_name: str, boxes: np.ndarray, category_ids: np.ndarray, scores: np.ndarray
) -> list[dict[str, Any]]:
    """COCO results entries of one image (``bbox`` ``[x, y, w, h]``, rounded to 0.01 px; scores to 1e-5)."""
    entries = []
    for b, c, s in zip(boxes, category_ids, scores, strict=True):
        x1, y1, x2, y2 = (round(float(v), 2) for v in b)
        entries.append(
            {
                "file_name": file_name,
                "category_id": int(c),
                "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(s), 5),
            }
        )
    return entries


def _chunk_path(partial: Path, k: int) -> Path:
    return partial / f"chunk-{k:07d}.json"


def _start_or_resume(partial: Path, job: dict[str, Any], force: bool) -> int:
    """Rank 0: make the partial folder for ``job`` (or check it belongs to ``job``); return chunks already done."""
    job_file = partial / "job.json"
    if force and partial.exists():
        shutil.rmtree(partial)
    if job_file.exists():
        try:
            previous = json.loads(job_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != job:
            raise SoftSamplingError(
                "an interrupted prediction with other settings is in this folder",
                file=partial,
                fix="rerun it with its own settings to finish it, or pass --force to start over",
            )
        return len(list(partial.glob("chunk-*.json")))
    partial.mkdir(parents=True, exist_ok=True)
    write_json(job_file, job)
    return 0


def predict_to_file(
    model: torch.nn.Module,
    label_map: LabelMap,
    images: Iterable[Path],
    out_json: Path,
    *,
    job: dict[str, Any],
    cut: np.ndarray,
    device: torch.device,
    num_images: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    force: bool = False,
    progress: bool = True,
    on_image: Callable[[Path, torch.Tensor, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
) -> tuple[int, int]:
    """Write the detections of ``images`` to ``out_json`` (COCO results); return (images, detections).

    ``job``: the settings that determine the output (checked on resume). ``cut``:
    score threshold per model class (index 0 = background). ``on_image(path, image,
    boxes, category_ids, scores)`` is called for every image this process predicts
    (e.g. to draw it). Every process of a ``torchrun`` job must call this.
    """
    rank, _ = distributed_context()
    partial = out_json.parent / PARTIAL
    job = {**job, "chunk_size": chunk_size}
    if rank == 0:
        resumed = _start_or_resume(partial, job, force)
        if resumed:
            print(f"resuming: {resumed} chunk(s) of {chunk_size} images already done in {partial}")
    barrier()
    try:
        total = _predict_chunks(
            model,
            label_map,
            images,
            partial,
            cut=cut,
            device=device,
            num_images=num_images,
            chunk_size=chunk_size,
            progress=progress and rank == 0,
            on_image=on_image,
        )
    except BaseException:
        if rank == 0 and partial.is_dir() and not any(partial.glob("chunk-*.json")):
            shutil.rmtree(partial, ignore_errors=True)  # nothing to resume: leave no partial output
        raise
    barrier()
    count = _merge(partial, out_json, total, chunk_size) if rank == 0 else 0
    barrier()
    return total, count


def _predict_chunks(
    model: torch.nn.Module,
    label_map: LabelMap,
    images: Iterable[Path],
    partial: Path,
    *,
    cut: np.ndarray,
    device: torch.device,
    num_images: int | None,
    chunk_size: int,
    progress: bool,
    on_image: Callable[[Path, torch.Tensor, np.ndarray, np.ndarray, np.ndarray], None] | None,
) -> int:
    """Predict this process's chunks that are not on disk yet; return the number of images listed."""
    from tqdm import tqdm

    from softsampling.engine.predict import predict_images

    rank, world = distributed_context()
    total = 0
    # disable=None: no bar when stderr is not a terminal (logs and error messages stay clean)
    bar = tqdm(total=num_images, disable=None if progress else True, desc="predict", unit="img", dynamic_ncols=True)
    iterator = iter(images)
    for k in itertools.count():
        paths = list(itertools.islice(iterator, chunk_size))
        if not paths:
            break
        first = k * chunk_size
        total = first + len(paths)
        chunk_file = _chunk_path(partial, k)
        if owned(k, rank, world) and not chunk_file.exists():
            with commit_together():  # a chunk and its drawings appear together, or neither
                entries: list[dict[str, Any]] = []
                for path in paths:
                    image = load_image(path)
                    out = predict_images(model, [image], device)[0]
                    labels = out["labels"].numpy()
                    keep = out["scores"].numpy() >= cut[labels]
                    boxes, scores = out["boxes"].numpy()[keep], out["scores"].numpy()[keep]
                    cats = label_map.to_dataset(labels[keep])
                    entries.extend(detection_entries(path.name, boxes, cats, scores))
                    if on_image is not None:
                        on_image(path, image, boxes, cats, scores)
                write_json(chunk_file, {"first": first, "images": len(paths), "detections": entries}, indent=None)
        bar.update(len(paths))
    bar.close()
    return total


def _merge(partial: Path, out_json: Path, num_images: int, chunk_size: int) -> int:
    """Stream the chunks, in order, into ``out_json`` (the bytes ``write_json(list, indent=None)`` writes)."""
    count = 0
    with atomic_write(out_json) as f:
        f.write("[")
        for k in range((num_images + chunk_size - 1) // chunk_size):
            path = _chunk_path(partial, k)
            try:
                chunk = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SoftSamplingError(
                    f"chunk of images {k * chunk_size}.. is missing or unreadable ({exc})",
                    file=path,
                    fix="run the same command again to redo it",
                ) from None
            for entry in chunk["detections"]:
                f.write(", " if count else "")
                f.write(json.dumps(entry, ensure_ascii=False))
                count += 1
        f.write("]\n")
    shutil.rmtree(partial)
    return count
