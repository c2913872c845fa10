"""Training: class weights, interrupted + resumed run that learns, MirroredStrategy on two logical
CPUs, and the train.py command line (early stopping and the epoch bar: test_callbacks.py; the lock,
work folder and checkpoints: test_checkpoint.py)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import write_galaxy10_like

from galaxy_core.config import Config
from galaxy_core.errors import TrainingError
from galaxy_core.training.checkpoint import work_dir_for
from galaxy_core.training.train import train_run

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("top-left", "top-right", "bottom-left", "bottom-right")
# Small and fast: SmallCNN at 32x32, no augmentation (the classes are positions, not rotation-proof).
CFG = Config(class_names=CLASSES, image_size=32, backbone="SmallCNN", weights="none", head="gap",
             dense_units=32, rotation_factor=0, zoom_factor=0, contrast_factor=0, epochs=3,
             batch_size=32, patience=10, explain_errors=4, explain_correct=2, smooth_samples=2,
             faithfulness_steps=3, learning_rate=3e-3,  # 3e-3: learns in 1-2 epochs, not a slow start
             export_onnx=False)  # exported by the one run that checks it (resumed_run): a child process each


def quadrant_images(labels, size=32, seed=0):
    """Learnable images: dim noise plus a bright square in the quadrant named by the label."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (len(labels), size, size, 3), dtype=np.uint8)
    half = size // 2
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[i, row * half + 2:(row + 1) * half - 2, col * half + 2:(col + 1) * half - 2] = 220
    return images


def write_quadrants(path, n=240, labels=None):
    labels = np.arange(n) % 4 if labels is None else np.asarray(labels)
    return write_galaxy10_like(path, n=len(labels), size=32, labels=labels,
                               images=quadrant_images(labels))


# --------------------------------------------------------------------------------------------
# Class weights reach fit
# --------------------------------------------------------------------------------------------
class _Captured(Exception):
    pass


@pytest.mark.parametrize("use_weights", [True, False])
def test_class_weights_passed_to_fit_equal_sklearn(tmp_path, monkeypatch, use_weights):
    from sklearn.utils.class_weight import compute_class_weight

    from galaxy_core.data.split import split_indices

    labels = np.repeat([0, 1, 2, 3], [60, 30, 20, 10])
    data = write_quadrants(tmp_path / "imbalanced.h5", labels=labels)
    captured = {}

    def fake_fit(self, *args, **kwargs):
        captured.update(kwargs)
        raise _Captured

    monkeypatch.setattr(keras.Model, "fit", fake_fit)
    cfg = CFG.replace(class_weights=use_weights)
    with pytest.raises(_Captured):
        train_run(cfg, data, tmp_path / "runs" / "cw", cache_dir=tmp_path / "cache")
    if not use_weights:
        assert captured["class_weight"] is None
        return
    train = split_indices(labels, cfg.val_fraction, cfg.test_fraction, cfg.seed).train
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels[train])
    assert sorted(captured["class_weight"]) == [0, 1, 2, 3]
    np.testing.assert_allclose([captured["class_weight"][c] for c in range(4)], expected)
    assert captured["class_weight"][3] > captured["class_weight"][0]


# --------------------------------------------------------------------------------------------
# A real run: interrupted after epoch 1, resumed, learns, writes a valid bundle
# --------------------------------------------------------------------------------------------
class InterruptAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    cfg = CFG.replace(export_onnx=True)
    data = write_quadrants(tmp / "quadrants.h5")
    out = tmp / "runs" / "quadrants"
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, data, out, cache_dir=tmp / "cache", callbacks=[InterruptAfterEpoch(1)])
    work = work_dir_for(out)
    interrupted = json.loads((work / "state.json").read_text())
    assert not out.exists()
    assert interrupted["checkpoint"] == "checkpoint-0001" and (work / interrupted["checkpoint"]).exists()
    assert (work / interrupted["best_weights"]).exists()
    with pytest.raises(TrainingError, match="--resume"):
        train_run(cfg, data, out, cache_dir=tmp / "cache")  # work folder in the way
    other = write_quadrants(tmp / "other.h5", n=200)
    with pytest.raises(TrainingError, match="was trained on .*quadrants.h5"):
        train_run(cfg, other, out, resume=True, cache_dir=tmp / "cache")  # not the run's dataset
    path = train_run(cfg, data, out, resume=True, cache_dir=tmp / "cache")
    return dict(path=path, work=work, interrupted=interrupted)


@pytest.mark.slow
def test_interrupted_run_checkpointed_epoch_one(resumed_run):
    state = resumed_run["interrupted"]
    assert state["epochs_done"] == 1 and state["history"]["epoch"] == [1]
    assert state["policy"] == "float32"  # a resume must load under the same dtype policy
    assert len(state["history"]["val_accuracy"]) == 1


@pytest.mark.slow
def test_resume_finishes_with_full_history_and_removes_work_folder(resumed_run):
    from galaxy_core.bundle.read import load_bundle

    bundle = load_bundle(resumed_run["path"])
    assert bundle.history["epoch"] == [1, 2, 3]
    assert bundle.history["val_accuracy"][0] == pytest.approx(
        resumed_run["interrupted"]["history"]["val_accuracy"][0])
    assert not resumed_run["work"].exists()
    run = bundle.run_info
    assert run["synthetic"] is True and run["epochs_run"] == 3 and run["resumed"] is True
    assert run["split_sizes"] == {"train": 192, "val": 24, "test": 24}
    assert run["best_epoch"] == int(np.argmax(bundle.history["val_accuracy"])) + 1
    assert bundle.best_epoch == run["best_epoch"] and "best_epoch" not in bundle.metrics  # stored once
    assert run["wall_time_s"] > 0 and run["train_images_per_s"] > 0 and "created" in run


@pytest.mark.slow
def test_bundle_has_explanations_of_the_test_errors(resumed_run):
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.explain import load_explanations

    bundle = load_bundle(resumed_run["path"])
    stored = load_explanations(bundle.explanations_path)
    n_errors = int((bundle.predictions["probs"].argmax(1) != bundle.predictions["labels"]).sum())
    assert len(stored.rows["row"]) == min(n_errors, 4) + min(2, 24 - n_errors)
    assert set(stored.methods) == {"saliency", "smoothgrad", "gradcam", "gradcam_plus_plus"}


def test_bad_runs_are_refused_before_any_work(tmp_path):
    from galaxy_core.errors import BundleError

    data = write_quadrants(tmp_path / "q.h5", n=40)
    with pytest.raises(BundleError, match="must be non-empty and not start with"):
        train_run(CFG, data, tmp_path / "runs" / ".hidden")
    assert not (tmp_path / "runs").exists()  # no work folder, no cache, nothing trained
    with pytest.raises(TrainingError, match="Nothing to resume"):  # multiworker resumes like the others
        train_run(CFG.replace(strategy="multiworker"), data, tmp_path / "runs" / "mw", resume=True)


@pytest.mark.slow
def test_small_model_learns_held_out_quadrants(resumed_run):
    from galaxy_core.bundle.read import load_bundle

    metrics = load_bundle(resumed_run["path"]).metrics
    assert metrics["test"]["n"] == 24
    assert metrics["test"]["accuracy"] >= 0.6  # chance is 0.25


# --------------------------------------------------------------------------------------------
# Issue 13: the sky split, calibration, sky columns, features and their 2-D map in the bundle
# --------------------------------------------------------------------------------------------
N_TWIN_PAIRS = 30


def write_quadrants_with_twins(path, n=240, seed=0):
    """`write_quadrants` data (SYNTHETIC) where rows 8k and 8k+4 (k < 30) are the same galaxy.

    Each twin has the same label and image as its partner and sits 0.3 arcsec from it; all other
    positions are random (no other pair is within 1 arcsec). Returns (path, pairs).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = quadrant_images(labels)
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-20, 60, n)
    pairs = [(8 * k, 8 * k + 4) for k in range(N_TWIN_PAIRS)]
    for a, b in pairs:
        images[b] = images[a]
        ra[b], dec[b] = ra[a] + 0.3 / 3600 / np.cos(np.radians(dec[a])), dec[a]
    path = write_galaxy10_like(path, n=n, size=32, labels=labels, images=images, ra=ra, dec=dec)
    return path, pairs


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("twins")
    data, pairs = write_quadrants_with_twins(tmp / "twins.h5")
    cfg = CFG.replace(epochs=1, explain_errors=0, explain_correct=0)
    assert cfg.split_by == "sky"  # the default
    logged = []
    path = train_run(cfg, data, tmp / "runs" / "twins", cache_dir=tmp / "cache", progress=False,
                     on_log=logged.append)
    return dict(path=path, data=data, pairs=pairs, log=logged, cfg=cfg)


@pytest.mark.slow
def test_sky_split_run_keeps_every_twin_out_of_the_test_set_and_records_it(twin_run):
    from galaxy_core.bundle.read import load_bundle

    bundle = load_bundle(twin_run["path"])
    assert bundle.split_info == {"split_by": "sky", "twin_radius_arcsec": 1.0,
                                 "groups_merged": N_TWIN_PAIRS, "images_in_merged_groups": 2 * N_TWIN_PAIRS,
                                 "largest_group": 2}
    assert bundle.split_by == "sky"
    test = set(bundle.predictions["indices"].tolist())
    twins_in_test = [(a, b) for a, b in twin_run["pairs"] if a in test or b in test]
    assert twins_in_test, "the seed should put some twin pair into the test set"
    assert all(a in test and b in test for a, b in twins_in_test)  # never one of them in training
    assert any(f"{N_TWIN_PAIRS} group(s) of twins" in line for line in twin_run["log"])


@pytest.mark.slow
def test_training_writes_calibration_sky_columns_features_and_map(twin_run):
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.evaluation.calibration import calibration_scores
    from galaxy_core.data.galaxy10 import open_dataset
    from galaxy_core.evaluation.embedding import penultimate_features

    bundle = load_bundle(twin_run["path"])
    n_test, indices = bundle.num_test, bundle.predictions["indices"]
    calib = bundle.calibration
    assert calib["fitted_on"] == "val" and bundle.temperature > 0
    assert calib["val"]["n"] == bundle.split_sizes["val"] and calib["test"]["n"] == n_test
    # The test part is the stored test probabilities scored with the fitted temperature.
    again = calibration_scores(bundle.predictions["labels"], bundle.predictions["probs"],
                               bundle.temperature, calib["n_bins"])
    assert calib["test"] == pytest.approx(again, abs=1e-6)

    with open_dataset(twin_run["data"]) as ds:
        meta = ds.metadata()
    for key in ("ra", "dec", "redshift", "pxscale"):
        assert bundle.sky[key].dtype == np.float32 and bundle.sky[key].shape == (n_test,)
        np.testing.assert_allclose(bundle.sky[key], meta[key][indices], rtol=1e-6)

    dim = twin_run["cfg"].dense_units
    assert bundle.features.shape == (n_test, dim) and bundle.embedding_2d.shape == (n_test, 2)
    expected = penultimate_features(bundle.load_model(), bundle.read_test_images(range(n_test)))
    np.testing.assert_allclose(bundle.features, expected, rtol=1e-4, atol=1e-5)
    assert bundle.embedding_method == "tsne" and np.isfinite(bundle.embedding_2d).all()
    info = bundle.run_info["embedding"]
    assert (info["method"], info["n"], info["dim"]) == ("tsne", n_test, dim)
    assert info["features_s"] >= 0 and info["map_s"] >= 0


def test_split_by_flag_reaches_the_config_and_refuses_unknown_modes(capsys):
    import train as cli

    from galaxy_core.config import ConfigError, config_from_args

    parser = cli.build_parser()
    assert config_from_args(parser.parse_args([])).split_by == "sky"
    assert config_from_args(parser.parse_args(["--split-by", "random"])).split_by == "random"
    with pytest.raises(SystemExit):
        parser.parse_args(["--split-by", "galactic"])
    assert "invalid choice: 'galactic'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="split_by"):
        Config(split_by="galactic")


# --------------------------------------------------------------------------------------------
# MirroredStrategy on two logical CPU devices (must be configured before TF starts: subprocess)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_mirrored_strategy_two_logical_cpus(tmp_path):
    data = write_quadrants(tmp_path / "quadrants.h5", n=120)
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, {str(ROOT)!r})
        from galaxy_core.config import Config
        from galaxy_core.training.train import train_run
        cfg = Config.from_json({CFG.replace(epochs=1, strategy="mirrored").to_json()!r})
        path = train_run(cfg, {str(data)!r}, {str(tmp_path / "runs" / "mirrored")!r},
                         cache_dir={str(tmp_path / "cache")!r})
        print("RUN", json.dumps(json.load(open(path / "run.json"))))
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout.split("RUN ", 1)[1])
    assert run["replicas"] == 2 and run["strategy"] == "mirrored" and run["epochs_run"] == 1
    assert run["workers"] == 1  # one machine, whatever TF_CONFIG says
    board = tmp_path / "runs" / "mirrored" / "tensorboard"  # recall measured by predict under the strategy
    assert any((board / "validation").iterdir()) and any((board / "train").iterdir())


# --------------------------------------------------------------------------------------------
# train.py command line
# --------------------------------------------------------------------------------------------
def _cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)


def test_cli_help_lists_required_flags():
    proc = _cli("--help")
    assert proc.returncode == 0
    for flag in ("--preset", "--backbone", "--weights", "--image-size", "--epochs", "--batch-size",
                 "--patience", "--no-class-weights", "--freeze-backbone", "--resume", "--strategy",
                 "--data", "--out", "--cache-dir", "--evaluate", "--demo"):
        assert flag in proc.stdout, flag


def test_cli_errors_exit_2_without_traceback(tmp_path):
    proc = _cli("--data", str(tmp_path / "missing.h5"))
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli(env={"GALAXY10_DATA_DIR": str(tmp_path)})  # no --data, no default file
    assert proc.returncode == 2 and "python -m galaxy_core.data download" in proc.stderr
    proc = _cli("--data", str(tmp_path / "x.h5"), "--image-size", "8")
    assert proc.returncode == 2 and "image_size" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "runs" / "done").mkdir(parents=True)
    proc = _cli("--demo", "--out", str(tmp_path / "runs" / "done"))
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--overwrite" in proc.stderr
    proc = _cli("--demo", "--demo-images", "0")
    assert proc.returncode == 2 and "--demo-images must be at least 10" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("--demo", "--demo-render-size", "8")
    assert proc.returncode == 2 and "--demo-render-size must be 0 (the image size) or at least 16" in proc.stderr
    proc = _cli("--demo", "--crop-scale", "-1")
    assert proc.returncode == 2 and "crop_scale" in proc.stderr and "Traceback" not in proc.stderr


def test_interrupt_hint_names_the_flags_to_resume_with(tmp_path):
    import train as cli

    args = cli.build_parser().parse_args(["--demo", "--out", str(tmp_path / "demo"),
                                          "--cache-dir", str(tmp_path / "c")])
    assert "nothing to resume" in cli.resume_hint(args)
    work = work_dir_for(tmp_path / "demo")
    work.mkdir()
    (work / "state.json").write_text("{}")
    hint = cli.resume_hint(args)
    assert f"python train.py --demo --out {tmp_path / 'demo'} --cache-dir {tmp_path / 'c'} --resume" in hint


def assert_onnx_of_this_model(path):
    from galaxy_core.models.fingerprint import check, file_sha256

    assert (path / "model.onnx").is_file()
    assert check(path / "model.onnx", file_sha256(path / "model.keras"), (32, 32, 3)) is None


@pytest.mark.slow
def test_training_writes_a_fingerprinted_model_onnx_into_the_bundle(resumed_run):
    """Issue 25 item 1: no user waits on an export at the first classify."""
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.inference.probabilities import predict_probs
    from galaxy_core.models.predictor import OnnxPredictor

    path = resumed_run["path"]
    assert_onnx_of_this_model(path)
    bundle = load_bundle(path)
    images = bundle.read_test_images(list(range(8)))
    np.testing.assert_allclose(predict_probs(OnnxPredictor(path / "model.onnx"), images),
                               predict_probs(bundle.load_model(), images), atol=1e-4)


@pytest.mark.slow
def test_cli_evaluate_rewrites_bundle_metrics(resumed_run):
    path = resumed_run["path"]
    before = json.loads((path / "metrics.json").read_text())
    for exported in path.glob("model.onnx*"):  # --evaluate makes it again
        exported.unlink()
    proc = _cli("--evaluate", str(path), env={"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SYNTHETIC" in proc.stdout
    best = json.loads((path / "run.json").read_text())["best_epoch"]
    assert f"best epoch: {best}\n" in proc.stdout  # read from run.json, printed as before
    for noise in ("failed call to cuInit", "cudart_stub", "absl::InitializeLog", "oneDNN"):
        assert noise not in proc.stderr, proc.stderr  # TensorFlow's native start-up lines (issue 10 #11)
    after = json.loads((path / "metrics.json").read_text())
    assert "reevaluated_at" in after and "reevaluated_at" not in before
    assert_onnx_of_this_model(path)
    assert after["test"]["accuracy"] == pytest.approx(before["test"]["accuracy"])
    # Same model, no validation split in the bundle: the fitted temperature is kept.
    assert after["calibration"]["temperature"] == before["calibration"]["temperature"]
    assert after["calibration"]["val"] == before["calibration"]["val"]
    assert after["calibration"]["test"]["ece_before"] == pytest.approx(
        before["calibration"]["test"]["ece_before"], abs=1e-4)


def test_interrupt_hint_is_shell_quoted(tmp_path):
    import shlex

    import train as cli

    out = tmp_path / "my runs" / "demo 1"
    args = cli.build_parser().parse_args(["--demo", "--out", str(out)])
    work = work_dir_for(out)
    work.mkdir(parents=True)
    (work / "state.json").write_text("{}")
    command = cli.resume_hint(args).split("`")[1]
    assert shlex.split(command) == ["python", "train.py", "--demo", "--out", str(out), "--resume"]


def test_cli_resume_with_unchanged_flags_prints_no_ignored_changes(tmp_path, capsys):
    import train as cli

    data = write_quadrants(tmp_path / "q.h5", n=120)
    out = tmp_path / "runs" / "r"
    cfg = CFG.replace(epochs=2, explain_errors=0, explain_correct=0)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, data, out, cache_dir=tmp_path / "c", callbacks=[InterruptAfterEpoch(1)])
    capsys.readouterr()
    rc = cli.main(["--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                   "--resume", "--no-progress"])  # the command the hint prints: no config flags
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "ignoring changes" not in printed.out + printed.err
    assert "resuming after epoch 1" in printed.out and (out / "run.json").exists()


def test_cli_default_out_honours_galaxy_runs_dir(tmp_path, monkeypatch):
    import galaxy_core.training.train
    import train as cli

    data = write_quadrants(tmp_path / "q.h5", n=40)
    seen = {}
    monkeypatch.setattr(galaxy_core.training.train, "train_run", lambda cfg, data_path, out, **kw: seen.update(out=out))
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert cli.main(["--data", str(data), "--preset", "vgg19-frozen"]) == 0
    assert seen["out"].parent == tmp_path / "elsewhere" and seen["out"].name.startswith("vgg19-frozen-")


@pytest.mark.parametrize("change, expected", [(dict(backbone="DenseNet2O1"), "Unknown backbone"),
                                              (dict(weights="imagenett"), "imagenett")])
def test_model_name_typos_are_reported_before_the_cache_is_built(tmp_path, change, expected):
    from galaxy_core.errors import ModelError

    data = write_quadrants(tmp_path / "q.h5", n=40)
    with pytest.raises(ModelError, match=expected):
        train_run(CFG.replace(**change), data, tmp_path / "runs" / "typo", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_tensorflow_startup_noise_is_filtered_but_other_lines_kept(capfd):
    from galaxy_core.tf_quiet import filtered_native_stderr

    with filtered_native_stderr():
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see...\n")
        os.write(2, b"a real error line\n")
    err = capfd.readouterr().err
    assert err == "a real error line\n"


def test_checksum_bar_only_for_big_files_and_never_without_progress(tmp_path, capsys):
    from galaxy_core.training.phases import _sha256_or_none

    big = tmp_path / "big.h5"
    with open(big, "wb") as f:  # sparse: 300 MiB without writing them
        f.truncate(300 * 2**20)
    digest = _sha256_or_none(big, progress=False)
    assert len(digest) == 64 and "sha256" not in capsys.readouterr().err
    assert _sha256_or_none(big, progress=True) == digest and "sha256 big.h5" in capsys.readouterr().err
    assert _sha256_or_none(tmp_path / "missing.h5") is None


@pytest.mark.slow
def test_no_progress_draws_no_bar_for_cache_epochs_or_explanations(tmp_path, capfd):
    data = write_quadrants(tmp_path / "quadrants.h5", n=120)
    cfg = CFG.replace(epochs=1, explain_errors=2, explain_correct=1, faithfulness_steps=0)
    logged = []
    train_run(cfg, data, tmp_path / "runs" / "quiet", cache_dir=tmp_path / "cache", progress=False,
              on_log=logged.append)
    err = capfd.readouterr().err
    assert any(line.startswith("explanations: Saliency, SmoothGrad") for line in logged)  # the work did run
    assert "preprocess cache" not in err and "explanations:" not in err and "%|" not in err, err[-2000:]


@pytest.mark.slow
def test_weight_averaging_survives_an_interruption_and_ends_in_the_bundle(tmp_path):
    from galaxy_core.bundle.read import load_bundle
    from galaxy_core.training.checkpoint import load_average

    data = write_quadrants(tmp_path / "quadrants.h5", n=160)
    cfg = CFG.replace(epochs=3, average_from_epoch=1, explain_errors=0, explain_correct=0)
    out = tmp_path / "runs" / "averaged"
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, data, out, cache_dir=tmp_path / "cache", progress=False,
                  callbacks=[InterruptAfterEpoch(2)], on_log=lambda line: None)
    mean, count = load_average(work_dir_for(out))
    assert count == 2 and mean is not None  # epochs 1 and 2, saved with the epoch-2 checkpoint
    logged = []
    train_run(cfg, data, out, resume=True, cache_dir=tmp_path / "cache", progress=False,
              on_log=logged.append)
    assert any(line.startswith("weights: mean of 3 epoch(s) from epoch 1 on") for line in logged), logged
    bundle = load_bundle(out)
    assert bundle.config.average_from_epoch == 1
    assert not work_dir_for(out).exists()


def test_average_from_epoch_beyond_the_epochs_is_refused():
    from galaxy_core.config import ConfigError

    with pytest.raises(ConfigError, match="average_from_epoch=9 must be in 0..epochs"):
        CFG.replace(epochs=8, average_from_epoch=9)
