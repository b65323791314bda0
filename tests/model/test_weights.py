"""Weights by torchvision name (through torchvision's own cache) or by path; the box predictor is re-initialised.

No test downloads: a name resolves to a small stand-in file placed where torchvision's cache keeps it
($TORCH_HOME/hub/checkpoints/<file name of the URL>). Its tensors are one value expanded to each
parameter's shape (a few kB on disk), so the test can see which tensors were loaded.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.hub
from torchvision.models import get_weight

from softsampling.engine.build import build_model
from softsampling.engine.config import RunConfig, apply_overrides
from softsampling.errors import SoftSamplingError
from softsampling.model import build_digits_model, build_paper_model
from softsampling.model.weights import is_weights_name

V2_COCO = "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1"
FILL = 0.25


def _stand_in(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(FILL, dtype=v.dtype).expand(v.shape) for k, v in state.items()}


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torchvision cache, and no network: a download attempt fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return cache


def _cache(cache: Path, name: str, state: dict[str, torch.Tensor]) -> None:
    torch.save(_stand_in(state), cache / Path(get_weight(name).url).name)


def test_detector_weights_by_name_load_all_but_the_box_predictor(torch_home) -> None:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    with torch.device("meta"):  # only the names and shapes of torchvision's COCO checkpoint
        coco = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    _cache(torch_home, V2_COCO, coco.state_dict())

    model = build_paper_model(11, weights=V2_COCO, version=2, min_size=64, max_size=64)
    loaded = model.state_dict()
    predictor = {k for k in loaded if k.startswith("roi_heads.box_predictor.")}
    assert all(
        torch.all(v == FILL) for k, v in loaded.items() if k not in predictor and not k.endswith("num_batches_tracked")
    )
    assert model.roi_heads.box_predictor.cls_score.out_features == 11
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 44
    assert not torch.all(model.roi_heads.box_predictor.cls_score.weight == FILL)  # fresh, not the COCO head
    report = model.weights_report
    assert report.source == V2_COCO and set(report.skipped) >= predictor
    assert (
        report.skipped["roi_heads.box_predictor.cls_score.weight"]
        == "(91, 1024) -> (11, 1024), re-initialised for 11 classes"
    )
    assert type(model.backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    assert "skipped roi_heads.box_predictor.cls_score.weight" in report.summary()


def test_names_are_checked_against_torchvision_and_the_model(torch_home) -> None:
    with pytest.raises(SoftSamplingError, match="no weights called.*use one of ResNet50_Weights.IMAGENET1K_V1"):
        build_paper_model(3, backbone_weights="ResNet50_Weights.IMAGENET9K")
    with pytest.raises(SoftSamplingError, match="not usable as ImageNet backbone weights.*ResNet50_Weights"):
        build_paper_model(3, backbone_weights="ResNet18_Weights.IMAGENET1K_V1")
    with pytest.raises(
        SoftSamplingError, match="weights of model.name=resnet50_fpn_v2.*--set model.name=resnet50_fpn_v2"
    ):
        build_paper_model(3, weights=V2_COCO, version=1)
    # not cached and no network: the error says how to fill the cache on another machine
    with pytest.raises(
        SoftSamplingError, match=r"cannot get torchvision weights .*URLError.*TORCH_HOME/hub/checkpoints"
    ):
        build_paper_model(3, weights="FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    assert is_weights_name(V2_COCO) and not is_weights_name("weights/ResNet50_Weights.pth")


def test_backbone_weights_by_name(torch_home) -> None:
    from torchvision.models import resnet50

    with torch.device("meta"):
        imagenet = resnet50(weights=None)
    _cache(torch_home, "ResNet50_Weights.IMAGENET1K_V2", imagenet.state_dict())
    model = build_paper_model(3, backbone_weights="ResNet50_Weights.IMAGENET1K_V2", min_size=64, max_size=64)
    assert torch.all(model.backbone.body.layer3[0].conv1.weight == FILL)
    assert not torch.all(model.backbone.fpn.inner_blocks[0][0].weight == FILL)  # the FPN is not in ImageNet weights
    assert model.weights_report is None


def test_detector_weights_from_a_local_file_for_other_classes(tmp_path) -> None:
    source = build_digits_model(num_classes=5)
    torch.nn.init.constant_(source.backbone[0].weight, FILL)
    path = tmp_path / "model.pt"
    torch.save({"model": source.state_dict(), "labels": {}}, path)  # a softsampling model.pt holds it under "model"
    cfg = apply_overrides(RunConfig(), [f"model.weights={path}"])
    model = build_model(cfg, num_classes=11)
    assert torch.all(model.backbone[0].weight == FILL)
    assert model.roi_heads.box_predictor.cls_score.out_features == 11
    assert sorted(model.weights_report.skipped) == [
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.cls_score.weight",
    ]
    untouched = build_model(cfg, num_classes=11, load_weights=False)  # what predict does: model.pt holds everything
    assert untouched.weights_report is None and not torch.all(untouched.backbone[0].weight == FILL)
    wide = build_digits_model(num_classes=5, widths=(8, 16, 32))
    torch.save(wide.state_dict(), path)
    with pytest.raises(SoftSamplingError, match="do not fit model.name=digits.*of another shape"):
        build_model(cfg, num_classes=11)
    with pytest.raises(SoftSamplingError, match="detector weights not found"):
        build_model(apply_overrides(RunConfig(), [f"model.weights={tmp_path / 'none.pt'}"]), num_classes=11)
