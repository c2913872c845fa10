"""Tests of galaxy_core.explain on tiny models and a synthetic blob task (not Galaxy10 data).

Blob task: 4 classes = the colour of one Gaussian blob placed in a random quadrant of a dark noisy
image, so the evidence for the class lies in one known region.
"""

import h5py
import keras
import numpy as np
import pytest

from galaxy_core import explain
from galaxy_core.errors import BundleError, ExplainError
from galaxy_core.models.network import feature_map_layer

SIZE = 32
QUADRANT_METHODS = ("saliency", "smoothgrad", "gradcam", "gradcam_plus_plus")


def blob_images(n, seed):
    """Synthetic blob task: one coloured Gaussian blob in a random quadrant of a dark noisy image.

    The class is the blob's colour (red, green, blue, white), so the only evidence for the class
    is in the blob's quadrant. Returns uint8 (n, 32, 32, 3) images, int64 labels and int64
    quadrants (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    quadrants = rng.integers(0, 4, n)
    colours = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0], [1.0, 1.0, 1.0]])
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.uniform(0.0, 0.15, (n, SIZE, SIZE, 3))
    half = SIZE // 2
    for i, (label, quadrant) in enumerate(zip(labels, quadrants)):
        cy = rng.uniform(5, half - 5) + half * (quadrant // 2)
        cx = rng.uniform(5, half - 5) + half * (quadrant % 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5 ** 2))
        images[i] += 0.85 * blob[..., None] * colours[label]
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels.astype(np.int64), quadrants


def quadrant_of(rows, cols):
    return (rows >= SIZE // 2) * 2 + (cols >= SIZE // 2)


@pytest.fixture(scope="module")
def blob_task():
    """A tiny flat CNN trained on the blob task, with held-out images."""
    keras.utils.set_random_seed(0)
    train_x, train_y, _ = blob_images(512, seed=1)
    test_x, test_y, test_quadrants = blob_images(40, seed=2)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.Flatten()(x)  # the paper's head type
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_x / 255.0, train_y, epochs=6, batch_size=32, verbose=0)
    probs = model.predict(test_x / 255.0, verbose=0)
    return model, test_x, test_y, probs, test_quadrants


def flat_backbone(name, **kwargs):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)  # a backbone scaling layer, as in the app
    base = getattr(keras.applications, name)(include_top=False, weights=None, input_tensor=x, **kwargs)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", dtype="float32")(x))


def test_blob_model_learned_the_task(blob_task):
    _, _, labels, probs, _ = blob_task
    assert (probs.argmax(1) == labels).mean() >= 0.9


@pytest.mark.parametrize("method", QUADRANT_METHODS)
def test_maps_shape_dtype_range(blob_task, method):
    model, images, labels, _, _ = blob_task
    fn = explain.METHODS[method]
    kwargs = {"samples": 4} if method == "smoothgrad" else {}
    from_uint8 = fn(model, images[:5], labels[:5], **kwargs)
    from_float = fn(model, images[:5].astype(np.float32) / 255, labels[:5], **kwargs)
    assert from_uint8.shape == (5, SIZE, SIZE) and from_uint8.dtype == np.float32
    assert np.isfinite(from_uint8).all() and from_uint8.min() >= 0 and from_uint8.max() <= 1
    assert np.allclose(from_uint8.max(axis=(1, 2)), 1.0)  # normalised per image
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-5)


def test_compiled_engine_matches_tf_keras_vis_and_leaves_model_alone(blob_task):
    model, images, labels, _, _ = blob_task
    weights = [w.copy() for w in model.get_weights()]
    x = images[:6]
    for method in ("saliency", "gradcam", "gradcam_plus_plus"):
        fast = explain.METHODS[method](model, x, labels[:6])
        reference = explain.METHODS[method](model, x, labels[:6], engine="tf-keras-vis")
        np.testing.assert_allclose(fast, reference, atol=2e-3, err_msg=method)
    reference_sg = explain.smoothgrad_map(model, x, labels[:6], samples=2, engine="tf-keras-vis")
    assert reference_sg.shape == (6, SIZE, SIZE)
    # SmoothGrad with zero noise is the saliency map.
    np.testing.assert_allclose(explain.smoothgrad_map(model, x, labels[:6], samples=3, noise=0.0),
                               explain.saliency_map(model, x, labels[:6]), atol=1e-5)
    # ReplaceToLinear worked on a clone: the caller's model still ends in softmax, same weights.
    assert model.layers[-1].activation.__name__ == "softmax"
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(model.predict(x / 255.0, verbose=0).sum(axis=1), 1.0, rtol=1e-5)


def test_gradcam_peaks_in_the_blob_quadrant_and_beats_random_on_deletion(blob_task):
    model, images, labels, probs, quadrants = blob_task
    classes = explain.target_classes(probs, labels, target="true")
    cams = explain.gradcam_map(model, images, classes)
    peaks = cams.reshape(len(cams), -1).argmax(axis=1)
    hit = quadrant_of(peaks // SIZE, peaks % SIZE) == quadrants
    assert hit.mean() >= 0.8, hit.mean()
    random_maps = np.random.default_rng(0).random(cams.shape).astype(np.float32)
    ours = explain.faithfulness_scores(model, images[:16], cams[:16], classes[:16], steps=10)
    rand = explain.faithfulness_scores(model, images[:16], random_maps[:16], classes[:16], steps=10)
    assert ours["deletion"].mean() < rand["deletion"].mean()
    assert ours["insertion"].mean() > rand["insertion"].mean()


def test_faithfulness_curve_endpoints(blob_task):
    model, images, labels, _, _ = blob_task
    x = images[:3].astype(np.float32) / 255
    heat = np.random.default_rng(1).random((3, SIZE, SIZE))
    found = explain.faithfulness_scores(model, x, heat, labels[:3], steps=5, return_curves=True)
    p_orig = model.predict(x, verbose=0)[np.arange(3), labels[:3]]
    p_black = model.predict(np.zeros_like(x), verbose=0)[np.arange(3), labels[:3]]
    np.testing.assert_allclose(found["deletion_curve"][:, 0], p_orig, atol=1e-5)
    np.testing.assert_allclose(found["deletion_curve"][:, -1], p_black, atol=1e-5)
    np.testing.assert_allclose(found["insertion_curve"][:, 0], p_black, atol=1e-5)
    np.testing.assert_allclose(found["insertion_curve"][:, -1], p_orig, atol=1e-5)
    expected = np.trapezoid(found["deletion_curve"], dx=1 / 5, axis=1)
    np.testing.assert_allclose(found["deletion"], expected, rtol=1e-5)
    single = explain.deletion_score(model, x[0], heat[0], int(labels[0]), steps=5)
    assert single == pytest.approx(float(found["deletion"][0]), abs=1e-6)
    single = explain.insertion_score(model, x[0], heat[0], int(labels[0]), steps=5)
    assert single == pytest.approx(float(found["insertion"][0]), abs=1e-6)


@pytest.mark.parametrize("backbone, layer", [("MobileNetV2", "out_relu"), ("VGG19", "block5_conv4")])
def test_flat_keras_applications_backbones(backbone, layer):
    model = flat_backbone(backbone)
    assert feature_map_layer(model).name == layer
    assert explain.find_feature_layer(model).name == layer  # explain uses the model's one rule
    x = np.random.default_rng(0).random((2, SIZE, SIZE, 3)).astype(np.float32)
    for method in QUADRANT_METHODS:
        kwargs = {"samples": 2} if method == "smoothgrad" else {}
        maps = explain.METHODS[method](model, x, [3, 7], **kwargs)
        assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32, method
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1, method


def tiny_conv(name="tiny"):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name=name)


def test_unsupported_models_raise_explain_error_before_tf_keras_vis():
    x = np.zeros((1, SIZE, SIZE, 3), np.float32)
    inputs = keras.Input((SIZE, SIZE, 3))
    nested = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(tiny_conv()(inputs)))
    with pytest.raises(ExplainError, match="nested models"):
        explain.gradcam_map(nested, x, [0])
    with pytest.raises(ExplainError, match="nested models"):
        explain.saliency_map(nested, x, [0], engine="tf-keras-vis")
    no_conv = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ExplainError, match="no convolution"):
        explain.saliency_map(no_conv, x, [0])
    backbone = tiny_conv()
    logits = keras.Model(backbone.inputs, keras.layers.Dense(3)(backbone.output))
    with pytest.raises(ExplainError, match="not a softmax"):
        explain.gradcam_plus_plus_map(logits, x, [0])
    conv_in = keras.Input((SIZE, SIZE, 3))
    spatial = keras.Model(conv_in, keras.layers.Conv2D(3, 3, activation="softmax")(conv_in))
    with pytest.raises(ExplainError, match="one output"):
        explain.smoothgrad_map(spatial, x, [0])


def test_augmentation_sequential_is_allowed_and_inputs_are_checked():
    inputs = keras.Input((SIZE, SIZE, 3))
    augment = keras.Sequential([keras.layers.RandomFlip(), keras.layers.RandomRotation(0.5)])
    x = keras.layers.Conv2D(4, 3, activation="relu")(augment(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(keras.layers.Dense(3)(x)))
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 3)).astype(np.float32)
    maps = explain.gradcam_map(model, images, [0, 2])
    assert maps.shape == (2, SIZE, SIZE)
    with pytest.raises(ExplainError, match="model takes"):
        explain.saliency_map(model, np.zeros((1, 16, 16, 3), np.float32), [0])
    with pytest.raises(ExplainError, match=r"in \[0, 3\)"):
        explain.saliency_map(model, images, [0, 3])
    with pytest.raises(ExplainError, match="one per image"):
        explain.saliency_map(model, images, [0])
    with pytest.raises(ExplainError, match="no layer"):
        explain.gradcam_map(model, images, [0, 1], layer="nope")


def test_cache_does_not_keep_the_model_alive():
    import gc
    import weakref

    from galaxy_core.explain import _engine

    model = tiny_conv()
    model = keras.Model(model.inputs, keras.layers.Dense(3, activation="softmax")(model.output))
    explain.gradcam_map(model, np.zeros((1, SIZE, SIZE, 3), np.float32), [1])
    assert model in _engine._CACHE
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_constant_map_normalises_to_zeros():
    maps = np.stack([np.full((4, 4), 3.0), np.arange(16.0).reshape(4, 4), np.full((4, 4), np.nan)])
    out = explain.normalize_maps(maps)
    assert out.dtype == np.float32 and not np.isnan(out).any()
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[2], 0.0)
    assert out[1].min() == 0.0 and out[1].max() == 1.0


def test_overlay():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    heat = rng.random((10, 15)).astype(np.float32)  # resized to the image
    out = explain.overlay(image, heat, alpha=0.4, colormap="inferno")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(explain.overlay(image, heat, alpha=0.0), image)
    full = explain.overlay(image, np.ones((20, 30)), alpha=1.0, colormap="jet")
    np.testing.assert_array_equal(full, np.broadcast_to([128, 0, 0], full.shape))  # jet(1) = dark red
    assert not np.array_equal(out, image)
    with pytest.raises(ExplainError):
        explain.overlay(image.astype(np.float32), heat)
    with pytest.raises(ExplainError):
        explain.overlay(image, heat, alpha=1.5)
    with pytest.raises(ExplainError, match="colormap"):
        explain.overlay(image, heat, colormap="no-such-map")


def test_error_analysis_helpers():
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.array([
        [0.9, 0.05, 0.05],  # 0 correct
        [0.6, 0.3, 0.1],    # 1 error 1->0, confidence 0.6
        [0.1, 0.85, 0.05],  # 2 error 2->1, confidence 0.85
        [0.45, 0.44, 0.11],  # 3 correct, margin 0.01
        [0.7, 0.2, 0.1],    # 4 error 1->0, confidence 0.7
        [0.2, 0.3, 0.5],    # 5 correct
    ], np.float32)
    np.testing.assert_array_equal(explain.misclassified(labels, probs), [2, 4, 1])
    np.testing.assert_array_equal(explain.most_ambiguous(probs, 2), [3, 5])
    pairs = explain.errors_by_pair(labels, probs)
    assert list(pairs) == [(1, 0), (2, 1)]
    np.testing.assert_array_equal(pairs[(1, 0)], [4, 1])
    np.testing.assert_array_equal(pairs[(2, 1)], [2])
    np.testing.assert_array_equal(explain.target_classes(probs, labels, "predicted"), [0, 0, 1, 0, 0, 2])
    np.testing.assert_array_equal(explain.target_classes(probs, labels, "true"), labels)
    with pytest.raises(ExplainError):
        explain.target_classes(probs, labels, "other")


def test_compute_save_load_round_trip(blob_task, tmp_path, capsys):
    model, images, labels, probs, quadrants = blob_task
    # Make a few confident errors by flipping some labels (the model itself is mostly right).
    labels = labels.copy()
    labels[:4] = (labels[:4] + 1) % 4
    indices = np.arange(len(labels)) + 1000
    data = explain.compute_explanations(
        model, images, labels, probs, indices, ["a", "b", "c", "d"], cap=3, n_correct=2,
        smooth_samples=2, steps=4, batch_size=4, progress=True)
    # One tqdm bar (galaxy_core.io's format), one unit per batch of maps: 4 methods x (2 + 1) batches.
    err = capsys.readouterr().err
    assert "explanations: 100%" in err and "12/12" in err
    rows = data["rows"]
    assert len(rows["row"]) == 5 and rows["correct"].tolist() == [False] * 3 + [True] * 2
    np.testing.assert_array_equal(rows["row"][:3], explain.misclassified(labels, probs)[:3])
    np.testing.assert_array_equal(rows["index"], rows["row"] + 1000)
    path = explain.save_explanations(tmp_path / "run" / "explanations.h5", data)
    assert [p.name for p in path.parent.iterdir()] == ["explanations.h5"]  # no temp file left
    with explain.load_explanations(path) as loaded:
        assert loaded.methods == list(explain.ALL_METHODS) and len(loaded) == 5
        assert loaded.class_names == ["a", "b", "c", "d"] and loaded.attrs["feature_layer"] == "last_conv"
        for key, value in rows.items():
            np.testing.assert_array_equal(loaded.rows[key], value)
        for method in explain.ALL_METHODS:
            for target in explain.TARGETS:
                stored = data["maps"][method][target]
                assert stored.dtype == np.uint8 and stored.shape == (5, SIZE, SIZE)
                np.testing.assert_allclose(loaded.map(method, target, 4), stored[4] / 255.0, atol=1e-7)
                found = loaded.scores[method][target]
                assert np.isfinite(found["deletion"]).all() and np.isfinite(found["insertion"]).all()
            # Correct rows: true class == predicted class, one map under both targets.
            np.testing.assert_array_equal(data["maps"][method]["true"][3:], data["maps"][method]["predicted"][3:])
        # Stored maps are the functions' maps, quantised.
        x = images[rows["row"][:2]]
        expected = explain.gradcam_map(model, x, rows["label"][:2])
        np.testing.assert_allclose(loaded.map("gradcam", "true", 1), expected[1], atol=1 / 255 + 1e-6)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(BundleError):
        explain.load_explanations(tmp_path / "other.h5")
    with pytest.raises(BundleError):
        explain.load_explanations(tmp_path / "missing.h5")


def test_pixel_ranks_break_ties_out_of_raster_order():
    from galaxy_core.explain.faithfulness import pixel_ranks

    heat = np.zeros((16, 16), np.float32)
    heat[5, 7] = 1.0
    ranks = pixel_ranks(heat)
    assert ranks[5 * 16 + 7] == 0  # the salient pixel first
    assert sorted(ranks.tolist()) == list(range(256))
    top_rows = ranks.reshape(16, 16)[:4]  # with raster order these would be ranks 1..64
    assert top_rows.max() > 128
    np.testing.assert_array_equal(ranks, pixel_ranks(heat))  # repeatable


def test_lookup_returns_stored_rows_only_for_the_same_predictions(blob_task, tmp_path):
    model, images, labels, probs, _ = blob_task
    labels = labels.copy()
    labels[:4] = (labels[:4] + 1) % 4
    data = explain.compute_explanations(model, images, labels, probs, np.arange(len(labels)), list("abcd"),
                                        cap=3, n_correct=1, smooth_samples=2, steps=4, batch_size=4)
    path = explain.save_explanations(tmp_path / "explanations.h5", data)
    row = int(data["rows"]["row"][0])
    pred, label = int(probs[row].argmax()), int(labels[row])
    with explain.load_explanations(path) as stored:
        found = stored.lookup(row, "predicted", pred=pred, label=label)
        assert sorted(found["maps"]) == sorted(explain.ALL_METHODS)
        np.testing.assert_array_equal(found["maps"]["gradcam"], stored.map("gradcam", "predicted", 0))
        assert found["scores"]["saliency"] == (float(stored.scores["saliency"]["predicted"]["deletion"][0]),
                                               float(stored.scores["saliency"]["predicted"]["insertion"][0]))
        assert stored.lookup(row, "predicted", pred=(pred + 1) % 4, label=label) is None  # re-evaluated since
        assert stored.lookup(row, "no-such-target", pred=pred, label=label) is None
        missing = next(r for r in range(len(labels)) if r not in set(data["rows"]["row"].tolist()))
        assert stored.lookup(missing, "predicted", pred=0, label=0) is None


def test_explain_image_and_score_maps_match_the_batch_functions(blob_task):
    model, images, labels, _, _ = blob_task
    maps = explain.explain_image(model, images[0], int(labels[0]), smooth_samples=2, seed=3)
    assert list(maps) == list(explain.ALL_METHODS)
    np.testing.assert_allclose(maps["gradcam"], explain.gradcam_map(model, images[:1], labels[:1])[0], atol=1e-6)
    np.testing.assert_allclose(maps["smoothgrad"],
                               explain.smoothgrad_map(model, images[:1], labels[:1], samples=2, seed=3)[0], atol=1e-6)
    scores = explain.score_maps(model, images[0], maps, int(labels[0]), steps=4)
    one = explain.faithfulness_scores(model, images[:1], maps["gradcam"][None], labels[:1], steps=4)
    assert scores["gradcam"] == pytest.approx((float(one["deletion"][0]), float(one["insertion"][0])), abs=1e-6)
    with pytest.raises(ExplainError, match="one image"):
        explain.explain_image(model, images[:2], 0)
    with pytest.raises(ExplainError, match="Unknown explanation method"):
        explain.explain_image(model, images[0], 0, methods=("occlusion",))


def test_a_1x1_feature_map_gives_a_note_instead_of_blank_maps(blob_task, tmp_path):
    """Issue 25 item 13: every Grad-CAM map of a 1 x 1 feature map is blank; that is said, not hidden."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 16, activation="relu", name="whole")(inputs)  # 1 x 1 x 8
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    note = explain.flat_feature_map_note(model)
    assert "'whole'" in note and "1 x 1 at 16 x 16 px" in note and "Saliency" in note
    assert explain.flat_feature_map_note(blob_task[0]) is None
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    probs = model.predict_on_batch(images.astype(np.float32) / 255)
    labels = (probs.argmax(1) + 1) % 3  # all misclassified
    data = explain.compute_explanations(model, images, labels, probs, np.arange(6), ["a", "b", "c"],
                                        methods=("saliency", "gradcam"), faithfulness=False, progress=False)
    assert not data["maps"]["gradcam"]["predicted"].any()  # blank, as the note says
    explain.save_explanations(tmp_path / "e.h5", data)
    with explain.load_explanations(tmp_path / "e.h5") as stored:
        assert stored.note("gradcam") == note and stored.note("saliency") is None
