"""galaxy_core.bundle.schema: config.json and metrics.json are checked by type and range when a bundle loads
(issue 25, Deliver item 2): each error names the file, the key and what was expected, never a traceback."""

import json
import shutil

import pytest

from galaxy_core.bundle.read import load_bundle
from galaxy_core.errors import BundleError


@pytest.fixture
def bundle_copy(good_bundle, tmp_path):
    return shutil.copytree(good_bundle, tmp_path / "run")


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("key, value, expected", [
    ("image_size", "64", "field 'image_size' must be an integer, got the string '64'"),
    ("morphology_weight", "0.5", "field 'morphology_weight' must be a number, got the string '0.5'"),
    ("class_names", "Disturbed,Merging", "field 'class_names' must be a list of at least 2 non-empty strings"),
    ("flips", 1, "field 'flips' must be true or false, got the number 1"),
    ("epochs", 2.5, "field 'epochs' must be an integer, got the number 2.5"),
])
def test_a_config_value_of_the_wrong_type_is_named(bundle_copy, key, value, expected):
    edit_json(bundle_copy / "config.json", lambda d: d.__setitem__(key, value))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    message = str(err.value)
    assert "config.json is invalid" in message and expected in message, message
    assert "metrics.json" not in message  # the old error blamed metrics.json for 17 'class names'


@pytest.mark.parametrize("key, value, expected", [
    ("accuracy", "0.9", "metrics['test']['accuracy'] must be a number in [0, 1], got str '0.9'"),
    ("accuracy", 1.5, "metrics['test']['accuracy'] must be a number in [0, 1], got float 1.5"),
    ("loss", -1, "metrics['test']['loss'] must be a number in [0, inf], got int -1"),
    ("n", "25", "metrics['test']['n'] must be a count of images"),
    ("per_class", [], "metrics['test']['per_class'] must be an object"),
    ("classification_report", 3, "metrics['test']['classification_report'] must be text"),
    ("confusion_matrix", [[1, 2]], "metrics['test']['confusion_matrix'] must be 10 x 10 counts"),
])
def test_a_metrics_value_of_the_wrong_type_or_range_is_named(bundle_copy, key, value, expected):
    edit_json(bundle_copy / "metrics.json", lambda d: d["test"].__setitem__(key, value))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    assert "metrics.json" in str(err.value) and expected in str(err.value), str(err.value)


def test_nan_metrics_still_load(bundle_copy):
    edit_json(bundle_copy / "metrics.json", lambda d: d["test"].__setitem__("loss", float("nan")))
    assert load_bundle(bundle_copy).metrics["test"]["loss"] != load_bundle(bundle_copy).metrics["test"]["loss"]


def test_a_broken_blend_section_is_named(morphology_bundle, tmp_path):
    run = shutil.copytree(morphology_bundle, tmp_path / "blended")
    edit_json(run / "metrics.json", lambda d: d.__setitem__("morphology", {"weight": 0.5, "test": d["test"],
                                                                           "test_blend": d["test"]}))
    assert load_bundle(run).blend_metrics.weight == 0.5  # valid as written
    edit_json(run / "metrics.json", lambda d: d["morphology"]["test_blend"].__setitem__("accuracy", "0.9"))
    with pytest.raises(BundleError, match=r"metrics\['morphology'\]\['test_blend'\]\['accuracy'\] must be a number"):
        load_bundle(run)
    edit_json(run / "metrics.json", lambda d: d["morphology"].__setitem__("weight", "0.5"))
    with pytest.raises(BundleError, match=r"metrics\['morphology'\] must be an object with a numeric 'weight'"):
        load_bundle(run)
