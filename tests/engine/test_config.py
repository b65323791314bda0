import numpy as np
import pytest

from softsampling.engine.config import RunConfig, apply_overrides, load_config, save_config
from softsampling.engine.train import global_batch, lr_factor
from softsampling.errors import SoftSamplingError


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(
        RunConfig(),
        [
            "strategy=hard_negative",
            "strategy_params.min_overlap=0.2",
            "train.iterations=30",
            "train.lr_steps=[0.5, 0.9]",
            "data.val=null",
        ],
    )
    assert cfg.strategy == "hard_negative"
    assert cfg.strategy_params == {"min_overlap": 0.2}
    assert cfg.train.iterations == 30 and cfg.train.lr_steps == [0.5, 0.9]
    assert cfg.data.val is None


@pytest.mark.parametrize(
    "bad,match",
    [
        ("strategy=soft", "unknown strategy 'soft'"),
        ("train.iters=5", "unknown config key 'train.iters'"),
        ("train.iterations=0", "train.iterations: must be a positive integer"),
        ("train.lr=-1e-3", "train.lr: must be a positive number, got -0.001"),
        ("strategy=score_soft", "score_soft needs a prior run"),
        ("strategy=pseudo_label", "pseudo_label needs a prior run"),
        ("strategy=[overlap_soft,focal]", "unknown rule 'focal'.*choose one of baseline"),
        ("strategy=[score_soft,overlap_soft]", "score_soft' must come last"),
        ("strategy_params.tau=2", "strategy: strategy 'baseline' got unknown parameter"),
        ("novalue", "bad --set 'novalue'"),
    ],
)
def test_bad_overrides_explain_the_fix(bad, match):
    with pytest.raises(SoftSamplingError, match=match):
        apply_overrides(RunConfig(), [bad])


@pytest.mark.parametrize(
    ("key", "owner", "name"),
    [
        ("sampling", "softsampling.sampling", "SAMPLING_MODES"),
        ("normalization", "softsampling.sampling", "NORMALIZATIONS"),
        ("data.format", "softsampling.data.formats", "FORMATS"),
        ("model.name", "softsampling.model.builders", "MODEL_NAMES"),
        ("model.soft_nms", "softsampling.model.soft_nms", "METHODS"),
    ],
)
def test_config_takes_its_lists_of_names_from_the_modules_that_own_them(key, owner, name, monkeypatch):
    import importlib

    module = importlib.import_module(owner)
    names = getattr(module, name)
    with pytest.raises(SoftSamplingError, match=f"config {key}: unknown .* 'new_name'.*use .*{names[-1]}"):
        apply_overrides(RunConfig(), [f"{key}=new_name"])
    monkeypatch.setattr(module, name, (*names, "new_name"))  # the owner learns a name: the config accepts it
    assert apply_overrides(RunConfig(), [f"{key}=new_name"]) is not None


def test_config_file_round_trip_and_errors(tmp_path):
    cfg = apply_overrides(RunConfig(), ["strategy=overlap_soft", "strategy_params.a=0.3", "seed=4"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and again.digest() == cfg.digest()
    (tmp_path / "bad.yaml").write_text("train:\n  iterations: [1\n")
    with pytest.raises(SoftSamplingError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "unk.yaml").write_text("model:\n  depth: 3\n")
    with pytest.raises(SoftSamplingError, match=r"unk.yaml: unknown config key model.'depth'"):
        load_config(tmp_path / "unk.yaml")


def test_shipped_configs_load():
    from tests.conftest import REPO

    for name in ("digits.yaml", "voc.yaml"):
        load_config(REPO / "configs" / name)


def test_global_batch_covers_each_epoch_once_and_depends_only_on_seed_and_iteration():
    n, bs = 10, 4
    seq = np.concatenate([global_batch(3, i, bs, n) for i in range(5)])  # 20 draws = 2 epochs
    assert sorted(seq[:10].tolist()) == list(range(10))
    assert sorted(seq[10:].tolist()) == list(range(10))
    assert np.array_equal(global_batch(3, 2, bs, n), seq[8:12])  # crosses the epoch boundary
    assert not np.array_equal(global_batch(4, 0, bs, n), global_batch(3, 0, bs, n))


def test_lr_schedule_warms_up_then_steps():
    cfg = apply_overrides(RunConfig(), ["train.iterations=100", "train.warmup_iterations=10", "train.lr_steps=[0.5]"])
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == 1.0 and lr_factor(49, cfg) == 1.0
    assert lr_factor(50, cfg) == pytest.approx(0.1)


def test_model_options_reach_the_builder_for_the_papers_hard_negative_setting():
    from softsampling.engine.build import build_model

    cfg = apply_overrides(
        RunConfig(),
        [
            "strategy=hard_negative",
            "strategy_params.hard_negative_topk=300",
            "model.options={rpn_post_nms_top_n_train: 6000, rpn_pre_nms_top_n_train: 6000}",
        ],
    )
    model = build_model(cfg, num_classes=11)
    assert model.rpn._post_nms_top_n["training"] == 6000
    assert model.roi_heads.hard_negative_topk == 300


def test_digest_ignores_test_data_and_empty_model_options_only():
    base = RunConfig()
    assert apply_overrides(base, ["data.test=t.json"]).digest() == base.digest()
    assert apply_overrides(base, ["model.options={rpn_post_nms_top_n_train: 600}"]).digest() != base.digest()
    assert apply_overrides(base, ["data.val=v.json"]).digest() != base.digest()


def test_strategy_compositions_from_set_and_yaml(tmp_path):
    cfg = apply_overrides(
        RunConfig(),
        ["strategy=[overlap_soft,pseudo_label]", "prior_run=runs/base", "strategy_params.pseudo_weight=one"],
    )
    assert cfg.strategy == ["overlap_soft", "pseudo_label"]
    (tmp_path / "c.yaml").write_text("strategy: [overlap_soft, objectness_mining]\nstrategy_params: {tau: 0.9}\n")
    loaded = load_config(tmp_path / "c.yaml")
    assert loaded.strategy == ["overlap_soft", "objectness_mining"] and loaded.strategy_params == {"tau": 0.9}
    save_config(loaded, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == loaded
    with pytest.raises(SoftSamplingError, match=r"c2.yaml: config strategy: tau must be"):
        (tmp_path / "c2.yaml").write_text("strategy: objectness_mining\nstrategy_params: {tau: 1.5}\n")
        load_config(tmp_path / "c2.yaml")


def test_head_options_stay_allowed_in_strategy_params():
    from softsampling.engine.build import build_model

    cfg = apply_overrides(
        RunConfig(),
        ["strategy=overlap_soft", "strategy_params.batch_size_per_image=64", "strategy_params.positive_fraction=0.5"],
    )
    head = build_model(cfg, num_classes=11).roi_heads
    assert head.fg_bg_sampler.batch_size_per_image == 64 and head.fg_bg_sampler.positive_fraction == 0.5


def test_named_strategy_digests_are_unchanged():
    """Runs made before the rule framework keep their folder names in the reproduce grid."""
    assert RunConfig().digest() == "d719c2dbb663"
    assert apply_overrides(RunConfig(), ["strategy=overlap_soft"]).digest() == "8504e2aa506b"


def test_drawings_of_small_images_are_upscaled_with_readable_labels(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from softsampling.engine.draw import draw_detections

    image = torch.zeros(3, 48, 64, dtype=torch.uint8)
    draw_detections(image, np.array([[4.0, 20.0, 30.0, 40.0]]), ["cat"], np.array([0.9]), tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (512, 384)  # x8: ceil(512 / 48) = 11, capped at 8
        pixels = np.asarray(im.convert("RGB"))
    # the label is drawn in a font of 12 px (384 / 32): its letters span several rows above the box top (y=160)
    label_rows = np.nonzero((pixels[:160, 32:320] > 0).any(axis=(1, 2)))[0]
    assert label_rows.size >= 8


def test_json_writer_refuses_nan(tmp_path):
    from softsampling.io import write_json

    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"threshold": float("nan")})
    assert not (tmp_path / "x.json").exists()
