"""Write the malformed-input corpus of tests/reliability/test_bad_input.py into this folder.

Every file is a small, otherwise valid input with exactly one defect, named
after it. Run ``python tests/data/bad/make_corpus.py`` to regenerate (the
output is deterministic); tests read the committed files and never run this.

Families (prefix): ``coco_`` COCO instances JSON, ``voc_`` Pascal VOC XML,
``oi_`` Open Images boxes CSV, ``txt_`` one-txt-per-image layout (ground
truth and detections), ``det_`` detection files (COCO results JSON, CSV),
``cfg_`` training configs (YAML), ``img_`` image files.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- COCO instances
COCO_GOOD = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [20, 10, 8, 8], "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}


def coco_with(edit) -> str:
    doc = copy.deepcopy(COCO_GOOD)
    edit(doc)
    return json.dumps(doc, indent=1)


def _set(path: tuple, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _delete(path: tuple):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


COCO_FILES: dict[str, str | bytes] = {
    "coco_truncated.json": json.dumps(COCO_GOOD, indent=1)[:300],
    "coco_empty.json": b"",
    "coco_top_level_array.json": json.dumps([COCO_GOOD]),
    "coco_missing_annotations_key.json": coco_with(_delete(("annotations",))),
    "coco_bbox_is_string.json": coco_with(_set(("annotations", 1, "bbox"), "20,10,8,8")),
    "coco_bbox_three_numbers.json": coco_with(_set(("annotations", 1, "bbox"), [20, 10, 8])),
    "coco_missing_category_id.json": coco_with(_delete(("annotations", 1, "category_id"))),
    "coco_negative_width_box.json": coco_with(_set(("annotations", 1, "bbox"), [20, 10, -8, 8])),
    "coco_nan_box.json": coco_with(_set(("annotations", 1, "bbox"), [20, float("nan"), 8, 8])),
    "coco_negative_image_size.json": coco_with(_set(("images", 1, "width"), -64)),
    "coco_fractional_image_size.json": coco_with(_set(("images", 1, "height"), 48.5)),
    "coco_box_far_outside.json": coco_with(_set(("annotations", 1, "bbox"), [500, 10, 8, 8])),
    "coco_unknown_category_id.json": coco_with(_set(("annotations", 1, "category_id"), 99)),
    "coco_unknown_image_id.json": coco_with(_set(("annotations", 1, "image_id"), 7)),
    "coco_duplicate_annotation_id.json": coco_with(_set(("annotations", 1, "id"), 1)),
    "coco_duplicate_image_id.json": coco_with(_set(("images", 1, "id"), 1)),
    "coco_iscrowd_is_string.json": coco_with(_set(("annotations", 1, "iscrowd"), "no")),
    "coco_huge_box_1e308.json": coco_with(_set(("annotations", 1, "bbox"), [1e308, 10, 1e308, 8])),
    "coco_id_beyond_int64.json": coco_with(_set(("annotations", 1, "id"), 2**70)),
    "coco_image_id_beyond_int64.json": coco_with(_set(("images", 1, "id"), 2**64)),
    "coco_image_width_2_pow_70.json": coco_with(_set(("images", 1, "width"), 2**70)),
    "coco_category_id_1e309.json": coco_with(_set(("annotations", 1, "category_id"), 1e309)).replace(
        "Infinity", "1e309"
    ),
    # "\ud800" in the file: a JSON escape of a lone surrogate, which is not Unicode text
    "coco_name_lone_surrogate.json": coco_with(_set(("categories", 1, "name"), "d\ud800g")),
    # a category name written in latin-1 (0xE9 for e-acute) instead of UTF-8
    # an extra field nested 5000 levels deep (the JSON parser's recursion limit is about 1000)
    "coco_deep_nesting.json": coco_with(_set(("annotations", 1, "note"), "DEEP")).replace(
        '"DEEP"', "[" * 5000 + "]" * 5000
    ),
    "coco_latin1.json": coco_with(_set(("categories", 1, "name"), "CAFE_NAME"))
    .replace("CAFE_NAME", "caf\u00e9")
    .encode("latin-1"),
}

# ---------------------------------------------------------------- Pascal VOC XML


def voc_xml(
    objects: str = None,
    size: str = "<size><width>64</width><height>48</height><depth>3</depth></size>",
    filename: str = "000002.png",
) -> str:
    if objects is None:
        objects = voc_object()
    return (
        f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{filename}</filename>\n\t{size}\n"
        f"{objects}</annotation>\n"
    )


def voc_object(name: str = "dog", box: tuple = ("21", "11", "28", "18"), extra: str = "") -> str:
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"\t<object>\n\t\t<name>{name}</name>{extra}\n\t\t<bndbox>{coords}</bndbox>\n\t</object>\n"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>000002.png</filename><size><width>64</width><height>48</height></size>
<object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<annotation><filename>000002.png</filename><size><width>64</width><height>48</height></size>
<object><name>&secret;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>
"""

VOC_FILES: dict[str, str | bytes] = {
    "voc_truncated.xml": voc_xml()[:150],
    "voc_wrong_root.xml": "<html><body>not an annotation</body></html>\n",
    "voc_missing_size.xml": voc_xml(size=""),
    "voc_negative_size.xml": voc_xml(size="<size><width>-64</width><height>48</height></size>"),
    "voc_size_beyond_int64.xml": voc_xml(size="<size><width>99999999999999999999999</width><height>48</height></size>"),
    "voc_missing_bndbox.xml": voc_xml(objects="\t<object><name>dog</name></object>\n"),
    "voc_coordinate_not_a_number.xml": voc_xml(objects=voc_object(box=("21", "eleven", "28", "18"))),
    "voc_xmax_before_xmin.xml": voc_xml(objects=voc_object(box=("28", "11", "21", "18"))),
    "voc_nan_coordinate.xml": voc_xml(objects=voc_object(box=("21", "nan", "28", "18"))),
    "voc_box_far_outside.xml": voc_xml(objects=voc_object(box=("21", "11", "900", "18"))),
    "voc_difficult_not_a_flag.xml": voc_xml(objects=voc_object(extra="<difficult>yes</difficult>")),
    "voc_missing_name.xml": voc_xml(objects=voc_object(name="")),
    # latin-1 byte 0xE9 in a file that declares itself UTF-8
    "voc_latin1.xml": (
        '<?xml version="1.0" encoding="utf-8"?>\n' + voc_xml(objects=voc_object(name="caf\u00e9"))
    ).encode("latin-1"),
    "voc_billion_laughs.xml": BILLION_LAUGHS,
    "voc_external_entity.xml": EXTERNAL_ENTITY,
    "voc_deep_nesting.xml": voc_xml(objects=voc_object() + "<x>" * 5000 + "</x>" * 5000 + "\n"),
    # split file listing the same image twice
    "voc_split_duplicate.txt": "000001\n000002\n000001\n",
    # split line that would name an XML file outside Annotations/ (refused before any path is opened)
    "voc_split_path_traversal.txt": "000001\n../../../outside/secret\n",
}

# ---------------------------------------------------------------- Open Images CSV
OI_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)
OI_ROW1 = "img1,xclick,/m/cat,1,0.1,0.4,0.2,0.6,0,0,0,0,0"


def oi(row2: str, header: str = OI_HEADER) -> str:
    return f"{header}\n{OI_ROW1}\n{row2}\n"


OI_ROW2 = "img2,xclick,/m/dog,1,0.3,0.5,0.2,0.4,0,0,0,0,0"
OI_FILES: dict[str, str | bytes] = {
    "oi_classes.csv": "/m/cat,Cat\n/m/dog,Dog\n",  # the good companion files
    "oi_sizes.csv": "ImageID,width,height\nimg1,64,48\nimg2,64,48\n",
    "oi_truncated.csv": oi(OI_ROW2)[:-30],
    "oi_missing_column.csv": oi(OI_ROW2.replace(",0.5,", ","), header=OI_HEADER.replace("XMax,", "")),
    "oi_too_few_fields.csv": oi("img2,xclick,/m/dog,1,0.3,0.5"),
    "oi_coordinate_not_a_number.csv": oi(OI_ROW2.replace("0.3,0.5", "0.3,half")),
    "oi_xmax_before_xmin.csv": oi(OI_ROW2.replace("0.3,0.5", "0.5,0.3")),
    "oi_nan_coordinate.csv": oi(OI_ROW2.replace("0.3,0.5", "nan,0.5")),
    "oi_box_far_outside.csv": oi(OI_ROW2.replace("0.3,0.5", "0.3,7.5")),
    "oi_huge_1e308.csv": oi(OI_ROW2.replace("0.3,0.5", "0.3,1e308")),
    "oi_unknown_label.csv": oi(OI_ROW2.replace("/m/dog", "/m/unicorn")),
    "oi_flag_not_binary.csv": oi(OI_ROW2[:-9] + "0,0,7,0,0"),
    "oi_latin1_image_id.csv": oi(OI_ROW2.replace("img2", "img\u00e9")).encode("latin-1"),
    "oi_utf16.csv": oi(OI_ROW2).encode("utf-16"),
    "oi_image_without_size.csv": oi(OI_ROW2.replace("img2", "img3")),
    # img1 and img1<NUL>: numpy byte strings drop trailing NULs, so they were merged into one image
    "oi_nul_in_image_id.csv": oi(OI_ROW2.replace("img2", "img1\x00")),
    # full-width digits (U+FF10...) that Python's float() reads as 0.5
    "oi_fullwidth_digit.csv": oi(OI_ROW2.replace("0.3,0.5", "0.3,\uff10.\uff15")),
    # a 300-byte Source value (a 3 MB one made the reader ask for 168 GiB)
    "oi_long_field.csv": oi(OI_ROW2.replace("xclick", "x" * 300)),
    # detections in pixels against ground truth read without sizes (normalised): scored 0.0 silently
    "oi_det_pixels_without_sizes.csv": "image,label,score,xmin,ymin,xmax,ymax\nimg1,Cat,0.9,6.4,9.6,25.6,28.8\n",
}

# ---------------------------------------------------------------- txt layout (Cartucho/mAP)
TXT_FILES: dict[str, str | bytes] = {
    "txt_gt_good.txt": "cat 5 5 14 14\n",
    "txt_gt_four_fields.txt": "cat 5 5 14 14\ndog 21 11 28\n",
    "txt_gt_right_before_left.txt": "cat 5 5 14 14\ndog 28 11 21 18\n",
    "txt_gt_nan.txt": "cat 5 5 14 14\ndog 21 nan 28 18\n",
    "txt_gt_huge_1e999.txt": "cat 5 5 14 14\ndog 21 11 1e999 18\n",
    "txt_gt_latin1.txt": "cat 5 5 14 14\ncaf\u00e9 21 11 28 18\n".encode("latin-1"),
    "txt_det_score_not_a_number.txt": "cat 0.9 5 5 14 14\ncat high 5 5 14 14\n",
    "txt_det_five_fields.txt": "cat 0.9 5 5 14\n",
}

# ---------------------------------------------------------------- detection files (against COCO_GOOD)
DET_GOOD = [
    {"image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10], "score": 0.9},
    {"image_id": 2, "category_id": 2, "bbox": [20, 10, 8, 8], "score": 0.8},
]


def det_with(i: int, key: str, value) -> str:
    d = copy.deepcopy(DET_GOOD)
    if value is _DELETE:
        del d[i][key]
    else:
        d[i][key] = value
    return json.dumps(d, indent=1, ensure_ascii=False)


_DELETE = object()
CSV_HEADER = "image,label,score,xmin,ymin,xmax,ymax"
DET_FILES: dict[str, str | bytes] = {
    "det_truncated.json": json.dumps(DET_GOOD, indent=1)[:100],
    "det_not_a_list.json": json.dumps({"detections": DET_GOOD}),
    "det_missing_score.json": det_with(1, "score", _DELETE),
    "det_score_is_string.json": det_with(1, "score", "high"),
    "det_unknown_image.json": det_with(1, "image_id", 42),
    "det_image_id_beyond_int64.json": det_with(1, "image_id", 2**70),
    "det_nan_score.json": det_with(1, "score", float("nan")),
    "det_negative_width.json": det_with(1, "bbox", [20, 10, -8, 8]),
    "det_all_unknown_categories.json": json.dumps([{**d, "category_id": 99} for d in DET_GOOD]),
    "det_latin1.json": det_with(1, "file_name", "caf\u00e9").encode("latin-1"),
    "det_missing_column.csv": "image,label,score,xmin,ymin,xmax\na.png,cat,0.9,4,4,14\n",
    "det_coordinate_not_a_number.csv": f"{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\nb.png,dog,0.8,20,ten,28,18\n",
    "det_unknown_image.csv": f"{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\nz.png,dog,0.8,20,10,28,18\n",
    "det_short_line.csv": f"{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\nb.png,dog,0.8\n",
    "det_huge_inf.csv": f"{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\nb.png,dog,0.8,20,10,1e309,18\n",
    "det_utf16.csv": f"{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\n".encode("utf-16"),
    # an unterminated quote: the csv module read the rest of the file as one value (one detection, not three)
    "det_unterminated_quote.csv": f'{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\n"b.png,dog,0.8,20,10,28,18\n'
    f"a.png,cat,0.7,5,5,14,14\n",
    "det_fullwidth_digit.csv": f"{CSV_HEADER}\na.png,cat,0.9,4,4,14,14\nb.png,dog,0.8,20,10,\uff12\uff18,18\n",
    # COCO results that were coerced: 1.7 -> 1, "2088" -> [2, 0, 8, 8], true -> 1.0
    "det_category_id_fraction.json": det_with(1, "category_id", 1.7),
    "det_bbox_digit_string.json": det_with(1, "bbox", "2088"),
    "det_score_is_true.json": det_with(1, "score", True),
    # image_id 0 (a 0-based list position, as predict wrote) while file_name a.png is image 1
    "det_id_and_file_name_disagree.json": json.dumps([{**DET_GOOD[0], "image_id": 0, "file_name": "a.png"}]),
    # every box inside [0, 1]: normalised detections against pixel ground truth
    "det_normalised_boxes.json": json.dumps([{**d, "bbox": [0.1, 0.1, 0.2, 0.2]} for d in DET_GOOD]),
    "det_deep_nesting.json": "[" * 5000 + "]" * 5000,
}

# ---------------------------------------------------------------- training configs
CFG_FILES: dict[str, str | bytes] = {
    "cfg_invalid_yaml.yaml": "seed: 0\ntrain:\n  iterations: [10\n  lr: 0.02\n",
    "cfg_not_a_mapping.yaml": "- seed: 0\n- strategy: baseline\n",
    "cfg_unknown_key.yaml": "seed: 0\ntrian:\n  iterations: 10\n",
    "cfg_iterations_not_integer.yaml": "train:\n  iterations: many\n",
    "cfg_unknown_strategy.yaml": "strategy: softest\n",
    "cfg_data_not_a_mapping.yaml": "data: digits/annotations/train.json\n",
    "cfg_negative_lr.yaml": "train:\n  lr: -0.02\n",
    "cfg_latin1.yaml": "# r\u00e9sum\u00e9\nseed: 0\n".encode("latin-1"),
    "cfg_score_soft_without_prior.yaml": "strategy: score_soft\n",
    # 5000 nested flow lists (20000 took PyYAML 1.4 s to end in a RecursionError)
    "cfg_deep_nesting.yaml": "seed: 0\nmodel:\n  options: " + "[" * 5000 + "]" * 5000 + "\n",
    "cfg_seed_negative.yaml": "seed: -1\n",
    "cfg_seed_fractional.yaml": "seed: 1.5\n",
    "cfg_threads_negative.yaml": "train:\n  threads: -1\n",
    "cfg_momentum_negative.yaml": "train:\n  momentum: -1\n",
    "cfg_warmup_not_a_number.yaml": "train:\n  warmup_iterations: abc\n",
    "cfg_min_size_not_a_number.yaml": "model:\n  min_size: abc\n",
    "cfg_data_train_is_a_list.yaml": "data:\n  train: [a, b]\n",
    "cfg_iterations_beyond_int64.yaml": "train:\n  iterations: 100000000000000000000000\n",
    "cfg_lr_nan.yaml": "train:\n  lr: .nan\n",
    "cfg_strategy_param_not_taken.yaml": "strategy: baseline\nstrategy_params:\n  a: 0.3\n",
    "cfg_strategy_param_not_a_number.yaml": "strategy: overlap_soft\nstrategy_params:\n  a: high\n",
    "cfg_model_option_unknown.yaml": "model:\n  options:\n    rpn_post_nms_top_n_trian: 6000\n",
    "cfg_model_option_not_a_number.yaml": "model:\n  options:\n    box_score_thresh: abc\n",
    "cfg_deterministic_not_a_flag.yaml": "train:\n  deterministic: 3\n",
    "cfg_head_norm_unknown.yaml": "model:\n  name: digits_retinanet\n  options:\n    head_norm: batch\n",
}


# ---------------------------------------------------------------- images
def png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A grayscale 8-bit PNG; with ``pixels=None`` its IDAT holds only one row (a decompression bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = pixels if pixels is not None else b"\x00" * (width + 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


GOOD_PNG = png(64, 48, b"".join(b"\x00" + bytes([(x * 4) % 256 for x in range(64)]) for _ in range(48)))
IMG_FILES: dict[str, str | bytes] = {
    "img_good.png": GOOD_PNG,
    "img_empty.png": b"",
    "img_truncated.png": GOOD_PNG[: len(GOOD_PNG) // 2],
    "img_not_an_image.png": "this is a text file, not a PNG\n",
    "img_bomb_100000x100000.png": png(100_000, 100_000),
}


def main() -> None:
    for files in (COCO_FILES, VOC_FILES, OI_FILES, TXT_FILES, DET_FILES, CFG_FILES, IMG_FILES):
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (HERE / name).write_bytes(data)
    (HERE / "coco_good.json").write_text(json.dumps(COCO_GOOD, indent=1) + "\n", encoding="utf-8")
    good_object = voc_object(name="cat", box=("5", "5", "14", "14"))
    (HERE / "voc_good.xml").write_text(voc_xml(objects=good_object, filename="000001.png"), encoding="utf-8")
    (HERE / "oi_good.csv").write_text(oi(OI_ROW2), encoding="utf-8")
    (HERE / "det_good.json").write_text(json.dumps(DET_GOOD, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
