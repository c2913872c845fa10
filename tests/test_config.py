"""Tests for galaxy_core.config: defaults, validation, JSON round trip, presets and CLI flags."""

import argparse
import json

import pytest

from galaxy_core.config import (CLASS_NAMES, PRESETS, Config, ConfigError, add_config_arguments,
                                config_from_args, preset_config)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_follow_the_published_recipe():
    cfg = Config()
    assert (cfg.backbone, cfg.head, cfg.dense_units, cfg.dropout) == ("DenseNet201", "flatten", 1024, 0.3)
    assert (cfg.batch_size, cfg.epochs, cfg.patience, cfg.class_weights) == (32, 50, 20, True)
    assert cfg.freeze_backbone is False and cfg.weights == "imagenet"
    assert cfg.num_classes == 10 and cfg.class_names == CLASS_NAMES
    assert (cfg.val_fraction, cfg.test_fraction) == (0.1, 0.1)


def test_blended_says_whether_a_morphology_classifier_is_mixed_in():
    assert not Config().blended and Config(morphology_weight=0.5).blended
    assert not Config(morphology_weight=0.5).replace(morphology_weight=0.0).blended


def test_json_round_trip_preserves_every_field(tmp_path):
    cfg = Config(image_size=64, clahe_clip_limit=3.5, opening_kernel_shape="cross", flips=True)
    path = tmp_path / "config.json"
    cfg.to_json(path)
    assert Config.from_json(path) == cfg
    assert Config.from_json(cfg.to_json()) == cfg
    assert json.loads(path.read_text())["class_names"] == list(CLASS_NAMES)


def test_the_galaxy_crop_is_off_by_default_and_in_the_preprocessing_fields():
    from galaxy_core.config import FIELD_RANGES, PREPROCESS_FIELDS

    assert Config().crop_scale == 0.0  # the published recipe: the whole image, as before
    assert PREPROCESS_FIELDS[:2] == ("crop_scale", "crop_min_fraction")  # the chain's first stage
    assert FIELD_RANGES["crop_scale"][0] == 0.0 and FIELD_RANGES["crop_min_fraction"][1] == 1.0
    assert "crop_scale" not in Config().preprocess_key
    assert Config(crop_scale=3.0).preprocess_key["crop_scale"] == 3.0
    cfg = config_from_args(parse(["--crop-scale", "3", "--crop-min-fraction", "0.3"]))
    assert (cfg.crop_scale, cfg.crop_min_fraction) == (3.0, 0.3)


def test_config_is_frozen():
    with pytest.raises(Exception):
        Config().epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("changes, field", [
    ({"opening_kernel_size": 4}, "opening_kernel_size"),
    ({"clahe_clip_limit": 0}, "clahe_clip_limit"),
    ({"channel_mode": "hsv"}, "channel_mode"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
    ({"dropout": 1.0}, "dropout"),
    ({"image_size": 8}, "image_size"),
    ({"strategy": "tpu"}, "strategy"),
    ({"crop_scale": -1.0}, "crop_scale"),
    ({"crop_scale": 25.0}, "crop_scale"),
    ({"crop_min_fraction": 0.0}, "crop_min_fraction"),
    ({"crop_min_fraction": 1.5}, "crop_min_fraction"),
])
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        Config().replace(**changes)


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="Unknown config field"):
        Config.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{not json")


def test_presets_match_the_three_published_experiments():
    assert set(PRESETS) == {"densenet201-finetune", "densenet201-frozen", "vgg19-frozen"}
    frozen = preset_config("densenet201-frozen")
    assert frozen.freeze_backbone and not frozen.class_weights
    vgg = preset_config("vgg19-frozen")
    assert vgg.backbone == "VGG19" and vgg.freeze_backbone
    with pytest.raises(ConfigError, match="Unknown preset"):
        preset_config("resnet-huge")


def test_cli_flags_override_the_preset_only_when_given():
    args = parse(["--epochs", "3", "--image-size", "64", "--class-weights"])
    cfg = config_from_args(args, "densenet201-frozen")
    assert (cfg.epochs, cfg.image_size, cfg.class_weights) == (3, 64, True)
    assert cfg.freeze_backbone is True  # from the preset, untouched
    cfg = config_from_args(parse(["--no-class-weights", "--freeze-backbone"]))
    assert cfg.class_weights is False and cfg.freeze_backbone is True


def test_cli_rejects_bad_choices():
    with pytest.raises(SystemExit):
        parse(["--opening-kernel-shape", "star"])
