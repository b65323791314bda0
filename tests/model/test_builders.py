"""Model builders: the digit model trains, the paper model loads local weights only."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet50

from softsampling.errors import SoftSamplingError
from softsampling.model import (
    DeformableConv3x3,
    SoftNMS,
    SoftSamplingRoIHeads,
    build_digits_model,
    build_digits_retinanet,
    build_paper_model,
    use_strategy,
)


def digit_batch(num_images: int = 4, seed: int = 0):
    """Bright squares (the 'objects') on dark noise, with their boxes."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(num_images):
        image = torch.rand(3, 128, 128, generator=gen) * 0.2
        boxes, labels = [], []
        for k in range(3):
            x, y = (torch.randint(0, 88, (2,), generator=gen)).tolist()
            side = int(torch.randint(14, 40, (1,), generator=gen))
            image[:, y : y + side, x : x + side] = 0.6 + 0.4 * (k % 2)
            boxes.append([x, y, x + side, y + side])
            labels.append(1 + k % 2)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    return images, targets


def test_digits_model_shapes() -> None:
    model = build_digits_model(num_classes=11)
    assert model.backbone.out_channels == 64
    assert model.transform.min_size == (128,) and model.transform.max_size == 128
    features = model.backbone(torch.rand(2, 3, 128, 128))
    assert features.shape == (2, 64, 16, 16)  # one map, stride 8
    assert model.roi_heads.box_predictor.cls_score.out_features == 11
    model = build_digits_model(num_classes=3, rpn_post_nms_top_n_train=40)
    assert model.rpn._post_nms_top_n["training"] == 40


def test_digits_retinanet_head_norm_keeps_the_head_signal() -> None:
    """Without a norm the head's std-0.01 convs shrink the features about 6x each; GroupNorm keeps them at 1."""
    torch.manual_seed(0)
    features = torch.randn(2, 64, 16, 16)
    spread = {}
    for norm in ("none", "group"):
        model = build_digits_retinanet(num_classes=11, head_norm=norm)
        norms = [m for m in model.head.classification_head.conv.modules() if isinstance(m, torch.nn.GroupNorm)]
        assert len(norms) == (4 if norm == "group" else 0)
        with torch.no_grad():
            spread[norm] = model.head.classification_head.conv(features).std().item()
    assert spread["none"] < 1e-3 and 0.3 < spread["group"] < 1.0, spread  # after the last ReLU
    with pytest.raises(ValueError, match="head_norm must be one of none, group"):
        build_digits_retinanet(head_norm="batch")


def test_digits_model_training_reduces_loss() -> None:
    torch.manual_seed(0)
    model = use_strategy(build_digits_model(num_classes=3), "overlap_soft")
    model.train()
    images, targets = digit_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    history = []
    for _ in range(10):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    # The RPN's proposals move while it learns, so the total is not monotone over a few steps;
    # both classifiers must have learned something within 10 steps on one batch.
    assert history[-1]["loss_classifier"] < 0.7 * history[0]["loss_classifier"], history
    assert history[-1]["loss_objectness"] < history[0]["loss_objectness"] - 0.01, history


def test_paper_model_missing_weights(tmp_path) -> None:
    path = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(SoftSamplingError, match="resnet50.pth.*not found.*ResNet50_Weights.IMAGENET1K_V2"):
        build_paper_model(21, backbone_weights=path)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SoftSamplingError, match="cannot read"):
        build_paper_model(21, backbone_weights=bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(SoftSamplingError, match="not ResNet-50 weights"):
        build_paper_model(21, backbone_weights=wrong)


def test_deformable_conv_starts_as_plain_conv() -> None:
    conv = torch.nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=False)
    deformable = DeformableConv3x3(conv)
    x = torch.randn(2, 8, 9, 9)
    assert torch.allclose(deformable(x), conv(x), atol=1e-5)
    deformable(x).sum().backward()
    assert deformable.offset.weight.grad is not None  # offsets learn


def test_paper_model_with_local_weights(tmp_path) -> None:
    reference = resnet50(weights=None)
    torch.nn.init.normal_(reference.layer1[0].conv1.weight)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build_paper_model(
        3,
        backbone_weights=path,
        deformable_conv5=True,
        soft_nms="linear",
        min_size=64,
        max_size=64,
        rpn_post_nms_top_n_train=16,
        rpn_post_nms_top_n_test=16,
    )
    body = model.backbone.body
    assert torch.equal(body.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert torch.equal(body.layer4[1].conv2.conv.weight, reference.layer4[1].conv2.weight)
    assert all(isinstance(block.conv2, DeformableConv3x3) for block in body.layer4)
    assert type(body.bn1).__name__ == "FrozenBatchNorm2d"
    assert not body.layer1[0].conv1.weight.requires_grad and body.layer2[0].conv1.weight.requires_grad
    assert isinstance(model.roi_heads, SoftSamplingRoIHeads) and model.roi_heads.soft_nms == SoftNMS("linear")
    use_strategy(model, "overlap_soft", batch_size_per_image=16)
    model.train()
    images, targets = digit_batch(1)
    images = [torch.nn.functional.interpolate(images[0][None], size=64)[0]]
    targets[0]["boxes"] = targets[0]["boxes"] / 2
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert body.layer4[0].conv2.offset.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert set(out[0]) == {"boxes", "labels", "scores"}
