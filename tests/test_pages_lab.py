"""pages/lib/lab.py: the lab's fields, slider ranges, train command and thumbnails (no streamlit)."""

import numpy as np
import pytest

from galaxy_core import synthetic
from galaxy_core.preprocessing import preprocess
from galaxy_core.config import FIELD_RANGES, PREPROCESS_FIELDS, Config, ConfigError
from pages.lib import lab


def test_train_command_lists_every_parameter_as_a_flag():
    params = lab.preprocess_params(Config().replace(clahe_clip_limit=3.5, opening_kernel_shape="cross"))
    command = lab.train_command(params)
    assert command.startswith("python train.py ")
    assert "--clahe-clip-limit 3.5" in command and "--opening-kernel-shape cross" in command
    assert command.count("--") == len(PREPROCESS_FIELDS)
    assert lab.train_command({"flips": True, "class_weights": False}) == \
        "python train.py --flips --no-class-weights"


def test_train_command_flags_parse_back_to_the_same_config():
    import argparse
    import shlex

    from galaxy_core.config import add_config_arguments, config_from_args

    params = {"crop_scale": 3.0, "crop_min_fraction": 0.3,
              "clahe_clip_limit": 1.7, "clahe_tile_grid": 4, "channel_mode": "per_channel",
              "opening_kernel_shape": "rect", "opening_kernel_size": 5, "opening_iterations": 2}
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(shlex.split(lab.train_command(params))[2:])
    cfg = config_from_args(args)
    assert lab.preprocess_params(cfg) == params
    assert cfg.backbone == Config().backbone  # nothing else changed


def test_preprocess_stages_end_with_exactly_what_training_feeds_the_model():
    # The lab draws galaxy_core.preprocessing.preprocess.preprocess_stages: its last stage is the model's input.
    cfg = Config(image_size=48, clahe_clip_limit=3.0, opening_kernel_size=5)
    image = synthetic.render_galaxy(5, 80, np.random.default_rng(1))
    stages = preprocess.preprocess_stages(image, cfg)
    assert list(stages) == ["original", "galaxy crop", "CLAHE", "CLAHE + opening"]
    assert all(s.shape == (48, 48, 3) and s.dtype == np.uint8 for s in stages.values())
    np.testing.assert_array_equal(stages["CLAHE + opening"], preprocess.preprocess_image(image, cfg))
    assert not np.array_equal(stages["original"], stages["CLAHE"])


def test_preprocess_thumbnails_match_preprocess_image_in_order():
    cfg = Config(image_size=64)
    images = [synthetic.render_galaxy(c, 96, np.random.default_rng(c)) for c in range(4)]
    thumbs = lab.preprocess_thumbnails(images, cfg, 32)
    for image, thumb in zip(images, thumbs):
        assert thumb.shape == (32, 32, 3)
        np.testing.assert_array_equal(thumb, lab.thumbnail(preprocess.preprocess_image(image, cfg), 32))
    assert lab.preprocess_thumbnails(images[:1], cfg, 128)[0].shape == (64, 64, 3)  # never enlarged


def test_the_lab_has_one_widget_per_preprocessing_field_built_from_its_metadata():
    import dataclasses

    widgets = lab.lab_widgets()
    assert tuple(w.field for w in widgets) == tuple(lab.WIDGET_KEYS) == PREPROCESS_FIELDS
    assert len({w.key for w in widgets}) == len(PREPROCESS_FIELDS)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for w in widgets:
        meta = fields[w.field].metadata
        assert (w.label, w.group, w.help) == (meta["label"], meta["group"], meta["help"])
        value = getattr(Config(), w.field)
        if w.kind == "slider":
            assert w.bounds == FIELD_RANGES[w.field] and w.bounds[0] <= value <= w.bounds[1]
            assert isinstance(w.step, type(value))  # int sliders step in ints, float ones in floats
        else:
            assert value in w.options  # choices, or the odd kernel sizes
    kinds = {w.field: w.kind for w in widgets}
    assert kinds["channel_mode"] == "radio" and kinds["opening_kernel_shape"] == "selectbox"
    assert kinds["opening_kernel_size"] == "select_slider"
    assert [w.off_unless for w in widgets if w.off_unless] == ["crop_scale"]
    # Headings in the chain's order, each drawn once (its fields are adjacent).
    groups = [w.group for w in widgets]
    assert [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g] == \
        ["Galaxy crop", "CLAHE", "Morphological opening"]


def test_every_cli_field_round_trips_through_train_command():
    import argparse
    import dataclasses
    import shlex

    from galaxy_core.config import add_config_arguments, cli_args, config_from_args

    changed = {"image_size": 64, "crop_scale": 2.5, "channel_mode": "per_channel", "flips": True,
               "class_weights": False, "freeze_backbone": True, "learning_rate": 3e-4, "split_by": "random",
               "weights": "none", "morphology_weight": 0.25, "head": "gap"}
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_args(parser.parse_args(shlex.split(lab.train_command(changed))[2:]))
    assert {name: getattr(cfg, name) for name in changed} == changed
    cli = [f.name for f in dataclasses.fields(Config) if f.metadata.get("cli", True)]
    assert set(changed) <= set(cli)
    with pytest.raises(ConfigError, match="No command-line flag"):
        cli_args({"class_names": ["a", "b"]})


def test_slider_ranges_are_the_configs_validation_ranges():
    assert lab.slider_range("clahe_tile_grid") == (1, 64)  # was 1-32 in the lab, 1-64 in the config
    for field, (low, high) in FIELD_RANGES.items():
        assert lab.slider_range(field) == (low, high)
        Config().replace(**{field: type(getattr(Config(), field))(low)})  # both ends are valid...
        Config().replace(**{field: type(getattr(Config(), field))(high)})
    sizes = lab.kernel_sizes()
    assert sizes[0] == FIELD_RANGES["opening_kernel_size"][0] and sizes[-1] <= FIELD_RANGES["opening_kernel_size"][1]
    assert all(s % 2 == 1 for s in sizes) and sizes == sorted(sizes)
    for size in sizes:
        Config(opening_kernel_size=size)  # every offered size validates
    try:
        Config(opening_kernel_size=sizes[-1] + 2)
    except ConfigError:
        pass
    else:
        raise AssertionError("the kernel slider stops before the largest valid size")


def test_crop_caption_gives_the_crops_side_or_off():
    import cv2

    frame = np.full((128, 128, 3), 20, np.uint8)
    cv2.circle(frame, (64, 64), 8, (200, 200, 200), -1)
    assert lab.crop_caption(frame, Config()) == "galaxy crop: off (crop_scale 0)"
    caption = lab.crop_caption(frame, Config(crop_scale=3.0, crop_min_fraction=0.1))
    side = int(caption.split()[2])
    assert caption == f"galaxy crop: {side} x {side} of 128 x 128 px" and 16 < side < 64
    assert lab.crop_caption(frame[..., 0], Config(crop_scale=3.0)).endswith("of 128 x 128 px")  # gray
