"""galaxy_core/explain/registry.py: the one table of explanation methods, and every reader of it.

Adding a method must be one module + one row: `test_a_new_row_reaches_every_reader` adds a row for a
method defined here and checks that the store (explanations.h5), the one-image service, the engine,
`explain.METHODS` and the app's labels all pick it up without another edit.
"""

import keras
import numpy as np
import pytest

from galaxy_core import explain
from galaxy_core.errors import ExplainError
from galaxy_core.explain import registry
from pages.lib import saliency as app_saliency

SIZE = 16
SEEN_SEEDS: list = []


def brightness_map(model, images, class_indices, *, batch_size: int = 16, seed=None):
    """A method defined outside galaxy_core: each image's brightness, scaled to [0, 1]. (N, S, S)."""
    from galaxy_core.explain._engine import check_images, normalize_maps

    SEEN_SEEDS.append(seed)
    return normalize_maps(check_images(model, images).mean(axis=-1))


BRIGHTNESS = registry.Method("brightness", "Brightness", __name__, "brightness_map", options={"seed": "seed"})


@pytest.fixture(scope="module")
def tiny():
    """An untrained flat CNN (conv + softmax head) and a few images, labels and probabilities."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    probs = model.predict(images / 255.0, verbose=0)
    labels = (probs.argmax(axis=1) + np.array([1, 1, 0, 0, 0, 0])) % 3  # two errors
    return model, images, labels, probs


def test_every_row_names_a_loadable_function_and_reaches_every_reader():
    names = registry.method_names()
    assert len(set(names)) == len(names) == len(registry.METHODS)
    assert explain.ALL_METHODS == names and list(explain.METHODS) == list(names)
    for method in registry.METHODS:
        assert callable(method.load()) and explain.METHODS[method.name] is method.load()
        assert set(method.options.values()) <= set(registry.SETTINGS)
        assert app_saliency.map_caption(method.name, None).startswith(f"**{method.label}**")
        assert method.label in registry.describe_methods()
    assert registry.describe_methods() == "Saliency, SmoothGrad, Grad-CAM and Grad-CAM++"
    assert registry.get_method("smoothgrad").options == {"samples": "smooth_samples", "seed": "seed"}
    with pytest.raises(ExplainError, match="Unknown explanation method 'occlusion'"):
        registry.get_method("occlusion")
    with pytest.raises(ExplainError, match="Unknown explanation setting"):
        registry.get_method("saliency").bind(noise=0.3)


def test_the_tf_keras_vis_engine_builds_the_visualizers_the_table_names(tiny):
    from galaxy_core.explain._engine import model_functions

    visualizers = model_functions(tiny[0]).visualizers()
    assert set(visualizers) == {m.name for m in registry.METHODS if m.tf_keras_vis}
    assert visualizers["smoothgrad"] is visualizers["saliency"]  # one class, one instance
    assert type(visualizers["gradcam_plus_plus"]).__name__ == "GradcamPlusPlus"
    # All share one linearised clone: the caller's model keeps its softmax.
    assert visualizers["gradcam"].model is visualizers["saliency"].model is not tiny[0]


def test_a_new_row_reaches_every_reader(tiny, tmp_path, monkeypatch):
    model, images, labels, probs = tiny
    monkeypatch.setattr(registry, "METHODS", registry.METHODS + (BRIGHTNESS,))
    SEEN_SEEDS.clear()

    # The store computes, writes and reads it back.
    data = explain.compute_explanations(model, images, labels, probs, np.arange(6), ["a", "b", "c"], cap=2,
                                        n_correct=1, smooth_samples=2, steps=2, batch_size=4, seed=7,
                                        progress=False)
    assert list(data["maps"]) == list(registry.method_names()) and "brightness" in data["maps"]
    assert SEEN_SEEDS and set(SEEN_SEEDS) == {7}  # the run's seed, through the row's options
    path = explain.save_explanations(tmp_path / "explanations.h5", data)
    with explain.load_explanations(path) as stored:
        assert stored.methods[-1] == "brightness"
        row = int(stored.rows["row"][0])
        found = stored.lookup(row, "predicted", pred=int(probs[row].argmax()), label=int(labels[row]))
        assert set(found["maps"]) == set(registry.method_names())
        expected = brightness_map(model, images[row:row + 1], None)[0]
        np.testing.assert_allclose(found["maps"]["brightness"], expected, atol=1 / 255 + 1e-6)

    # The one-image service, explain.METHODS, the app's labels and the log/spinner phrase.
    maps = explain.explain_image(model, images[0], 0, smooth_samples=2, seed=3)
    assert list(maps) == list(registry.method_names()) and SEEN_SEEDS[-1] == 3
    assert "brightness" in explain.METHODS and explain.ALL_METHODS[-1] == "brightness"
    assert app_saliency.map_caption("brightness", (0.1, 0.5)).startswith("**Brightness**")
    assert registry.describe_methods().endswith("Grad-CAM++ and Brightness")
    assert "Brightness" in app_saliency.most_faithful({"brightness": (0.0, 0.9), "gradcam": (0.5, 0.6)})

    # The reference engine: a row without a tf-keras-vis class has no visualizer, and says so.
    from galaxy_core.explain._engine import ModelFunctions

    with pytest.raises(ExplainError, match="no tf-keras-vis visualizer"):
        ModelFunctions(model).visualizer("brightness")
