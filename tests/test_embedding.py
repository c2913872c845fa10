"""Penultimate features (models from build_model), the 2-D map and cosine look-alike search."""

import doctest

import keras
import numpy as np
import pytest

from galaxy_core.evaluation import embedding
from galaxy_core.config import Config
from galaxy_core.evaluation.embedding import (EmbeddingError, feature_layer, feature_model, nearest_neighbours,
                                   penultimate_features, project_2d)
from galaxy_core.errors import ModelError
from galaxy_core.models.network import build_model

SMALL = dict(backbone="SmallCNN", image_size=32, dense_units=16)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_docstring_examples():
    assert doctest.testmod(embedding).failed == 0


@pytest.mark.parametrize("cfg", [
    Config(**SMALL, head="gap"),
    Config(**SMALL, head="flatten"),
    Config(backbone="MobileNetV2", image_size=32, dense_units=24, head="gap"),
], ids=["smallcnn-gap", "smallcnn-flatten", "mobilenetv2-gap"])
def test_penultimate_features_are_what_the_classifier_reads(cfg):
    model = build_model(cfg)  # weights=None: random init, never downloads
    assert feature_layer(model).name == "head_dense"
    images = np.random.default_rng(0).uniform(0, 1, (5, 32, 32, 3)).astype(np.float32)
    calls = []
    feats = penultimate_features(model, images, batch_size=2,
                                 on_progress=lambda done, total: calls.append((done, total)))
    assert feats.dtype == np.float32 and feats.shape == (5, cfg.dense_units)
    assert (feats >= 0).all()  # after the relu
    assert calls == [(2, 5), (4, 5), (5, 5)]
    # The classifier applied to these features gives the model's own probabilities.
    kernel, bias = model.get_layer("predictions").get_weights()
    np.testing.assert_allclose(softmax(feats @ kernel + bias), model.predict_on_batch(images),
                               atol=1e-5)


def test_uint8_input_and_a_reused_feature_model_give_the_same_features():
    model = build_model(Config(**SMALL))
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    extractor = feature_model(model)
    a = penultimate_features(model, images)
    b = penultimate_features(extractor, images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert penultimate_features(extractor, images[:0]).shape == (0, 16)


def test_a_model_loaded_from_a_bundle_file_gives_the_same_features(tmp_path):
    """Older bundles: features computed on demand from model.keras (augmentation stays off)."""
    from galaxy_core.models.network import load_model

    model = build_model(Config(**SMALL, flips=True, rotation_factor=0.2))
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert feature_layer(loaded).name == "head_dense"
    images = np.random.default_rng(2).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(penultimate_features(loaded, images),
                               penultimate_features(model, images), atol=1e-6)


def test_models_without_a_dense_classifier_are_refused():
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    with pytest.raises(ModelError, match="Dense classifier"):
        feature_layer(keras.Model(inputs, pooled))
    per_pixel = keras.layers.Dense(3, activation="softmax")(inputs)  # classifier on a 4-D tensor
    with pytest.raises(ModelError, match="2-D feature tensor"):
        feature_layer(keras.Model(inputs, per_pixel))
    with pytest.raises(EmbeddingError, match=r"\(N, S, S, 3\)"):
        penultimate_features(build_model(Config(**SMALL)), np.zeros((2, 32, 32)))


def two_clusters(n=30, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=d)
    a = centre + rng.normal(0, 0.1, (n, d))
    b = -centre + rng.normal(0, 0.1, (n, d))
    return np.vstack([a, b]).astype(np.float32), np.repeat([0, 1], n)


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_project_2d_keeps_clusters_apart_and_is_seeded(method):
    x, group = two_clusters()
    xy = project_2d(x, method=method, seed=3)
    assert xy.dtype == np.float32 and xy.shape == (60, 2)
    np.testing.assert_array_equal(xy, project_2d(x, method=method, seed=3))
    # Every point's nearest neighbour on the map is from its own cluster.
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (group[d.argmin(axis=1)] == group).all()


def test_project_2d_edge_cases_and_errors():
    assert project_2d(np.ones((5, 1)), method="pca").shape == (5, 2)
    assert project_2d(np.random.default_rng(0).normal(size=(4, 3)), method="tsne").shape == (4, 2)
    with pytest.raises(EmbeddingError, match="method='pca'"):
        project_2d(np.zeros((3, 4)), method="tsne")
    with pytest.raises(EmbeddingError, match="Unknown projection method"):
        project_2d(np.zeros((10, 4)), method="umap")
    with pytest.raises(EmbeddingError, match="NaN"):
        project_2d(np.full((10, 4), np.nan))


def test_nearest_neighbours_match_brute_force_cosine():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    q = rng.normal(size=(3, 6)).astype(np.float32)
    idx, dist = nearest_neighbours(x, q, k=5)
    assert idx.dtype == np.int64 and dist.dtype == np.float32 and idx.shape == (3, 5)
    cos = 1 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(idx, np.argsort(cos, axis=1)[:, :5])
    np.testing.assert_allclose(dist, np.sort(cos, axis=1)[:, :5], atol=1e-5)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_nearest_neighbours_exclude_the_query_itself():
    x, _ = two_clusters(n=10)
    idx, dist = nearest_neighbours(x, x[[0, 15]], k=4, exclude=[0, 15])
    assert idx.shape == (2, 4)
    assert 0 not in idx[0] and 15 not in idx[1]
    assert (idx[0] < 10).all() and (idx[1] >= 10).all()  # look-alikes from the same cluster
    kept, _ = nearest_neighbours(x, x[[0]], k=4, exclude=[-1])
    assert kept[0, 0] == 0  # nothing excluded: the image is its own nearest neighbour
    capped, _ = nearest_neighbours(x[:3], x[[0]], k=10, exclude=[0])
    assert sorted(capped[0].tolist()) == [1, 2]
    one, _ = nearest_neighbours(x, x[0], k=2)  # a single (D,) query
    assert one.shape == (1, 2)


@pytest.mark.parametrize("call, words", [
    (lambda: nearest_neighbours(np.zeros((5, 3)), np.zeros((1, 4))), "same model"),
    (lambda: nearest_neighbours(np.zeros((5, 3)), np.zeros((1, 3)), k=0), "positive integer"),
    (lambda: nearest_neighbours(np.zeros((1, 3)), np.zeros((1, 3)), exclude=[0]), "No candidate"),
    (lambda: nearest_neighbours(np.zeros((5, 3)), np.zeros((2, 3)), exclude=[0]), "one row per query"),
    (lambda: nearest_neighbours(np.zeros(5), np.zeros((1, 5))), "(N, D)"),
])
def test_nearest_neighbour_errors(call, words):
    with pytest.raises(EmbeddingError) as info:
        call()
    assert words in str(info.value)


def test_tsne_thread_count_is_a_parameter_and_one_thread_is_the_default():
    from galaxy_core.evaluation import embedding

    x = np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32)
    assert embedding.TSNE_THREADS == 1
    one = embedding.project_2d(x, seed=0)
    np.testing.assert_array_equal(one, embedding.project_2d(x, seed=0, n_threads=1))
    every = embedding.project_2d(x, seed=0, n_threads=None)
    assert every.shape == (40, 2) and np.isfinite(every).all()


def test_embed_test_set_is_features_then_the_auto_map_and_takes_stored_features():
    model = build_model(Config(**SMALL, head="gap"))
    images = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    emb = embedding.embed_test_set(model, images, seed=5, batch_size=4)
    np.testing.assert_array_equal(emb.features, penultimate_features(model, images))
    assert emb.method == embedding.auto_method(6) == "tsne" and emb.features_s > 0 and emb.map_s > 0
    np.testing.assert_array_equal(emb.embedding_2d, project_2d(emb.features, "tsne", seed=5))

    calls = []  # given features: no model, the same map, progress reported done
    again = embedding.embed_test_set(None, None, seed=5, features=emb.features,
                                     on_progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_array_equal(again.embedding_2d, emb.embedding_2d)
    assert again.features_s == 0 and calls == [(6, 6)]
    one = embedding.embed_test_set(model, images[:1], seed=5)
    assert one.features.shape == (1, 16) and one.embedding_2d is None and one.method is None
