"""One frozen configuration shared by `train.py`, the core and the app.

Every tunable parameter of the project is a field of `Config`. `train.py` builds its command-line
flags from these fields (`add_config_arguments`), the app reads its defaults from them, and every run
bundle stores the config as `config.json` (`Config.to_json` / `Config.from_json`). No parameter is
written down anywhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from galaxy_core.errors import GalaxyError

# Galaxy10 DECaLS class names, index = label (see the dataset author's documentation).
CLASS_NAMES: tuple[str, ...] = (
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
)

KERNEL_SHAPES = ("ellipse", "rect", "cross")
CHANNEL_MODES = ("luminance", "per_channel")
HEADS = ("flatten", "gap")
STRATEGIES = ("default", "mirrored", "multiworker")
# How the images are split (galaxy_core.data.sky.make_split): "sky" keeps images of the same galaxy (twins
# within 1 arcsec) in one split; "random" is the plain stratified split.
SPLIT_BY = ("sky", "random")

# The preprocessing chain's parameters, in the order the chain applies them (galaxy crop, then
# CLAHE, then opening): the preprocessed cache key, the preprocessing lab and `preprocess_image`
# all use this one list.
PREPROCESS_FIELDS: tuple[str, ...] = (
    "crop_scale",
    "crop_min_fraction",
    "clahe_clip_limit",
    "clahe_tile_grid",
    "channel_mode",
    "opening_kernel_shape",
    "opening_kernel_size",
    "opening_iterations",
)

class ConfigError(GalaxyError, ValueError):
    """A configuration value is invalid; the message says which field and how to fix it."""


@dataclass(frozen=True)
class Config:
    """All parameters of preprocessing, data split, model and training.

    Field metadata `help` becomes the `train.py --help` text.
    """

    # --- images -------------------------------------------------------------------------------
    image_size: int = field(default=256, metadata={"help": "model input side in pixels"})
    class_names: tuple[str, ...] = field(
        default=CLASS_NAMES, metadata={"help": "class names, index = label (training takes them from the "
                                               "data when it names its classes: a labelled folder or "
                                               "table, galaxy_core.preprocessing.labelled)", "cli": False}
    )
    # --- preprocessing (galaxy crop -> resize -> CLAHE -> morphological opening) ---------------
    # Metadata read by the preprocessing lab (`pages/lib/lab.py`), which builds one widget per field:
    # `label`, `group` (the lab's heading), `range` (inclusive; `validate_config` enforces it, see
    # FIELD_RANGES), `step`, `choices`, `widget` ("radio" instead of a select box; "odd" = the odd
    # values of `range`) and `off_unless` (the widget is disabled while that field is 0).
    crop_scale: float = field(
        default=0.0,
        metadata={"help": "galaxy-centred crop before the resize: square side = this many radii of "
                          "the central object (0 = off, the whole image)",
                  "label": "Crop side (radii of the central object)", "group": "Galaxy crop",
                  "range": (0.0, 20.0), "step": 0.5},
    )
    crop_min_fraction: float = field(
        default=0.25, metadata={"help": "smallest galaxy crop, as a fraction of the image side",
                                "label": "Smallest crop (fraction of the side)", "group": "Galaxy crop",
                                "range": (0.05, 1.0), "step": 0.05, "off_unless": "crop_scale"}
    )
    clahe_clip_limit: float = field(
        default=2.0, metadata={"help": "CLAHE clip limit: contrast limit per tile (higher brings out faint "
                                       "structure and noise)",
                               "label": "Clip limit", "group": "CLAHE", "range": (0.1, 40.0), "step": 0.1}
    )
    clahe_tile_grid: int = field(
        default=8, metadata={"help": "CLAHE tiles per side", "label": "Tiles per side", "group": "CLAHE",
                             "range": (1, 64), "step": 1}
    )
    channel_mode: str = field(
        default="luminance",
        metadata={"help": "CLAHE on luminance (keeps hue) or per RGB channel", "choices": CHANNEL_MODES,
                  "label": "Channels", "group": "CLAHE", "widget": "radio"},
    )
    opening_kernel_shape: str = field(
        default="ellipse", metadata={"help": "opening structuring element", "choices": KERNEL_SHAPES,
                                     "label": "Kernel shape", "group": "Morphological opening"}
    )
    opening_kernel_size: int = field(
        default=3, metadata={"help": "opening kernel side (odd, 1 = off)", "label": "Kernel size",
                             "group": "Morphological opening", "range": (1, 31), "widget": "odd"}
    )
    opening_iterations: int = field(
        default=1, metadata={"help": "opening iterations (0 = off)", "label": "Iterations",
                             "group": "Morphological opening", "range": (0, 10), "step": 1}
    )
    # --- data split ---------------------------------------------------------------------------
    val_fraction: float = field(default=0.1, metadata={"help": "validation fraction"})
    test_fraction: float = field(default=0.1, metadata={"help": "test fraction"})
    seed: int = field(default=42, metadata={"help": "seed for split, shuffling and init"})
    split_by: str = field(
        default="sky",
        metadata={"help": "sky: images of one galaxy (twins within 1 arcsec) stay in one split; "
                          "random: plain stratified split", "choices": SPLIT_BY},
    )
    # --- model --------------------------------------------------------------------------------
    backbone: str = field(default="DenseNet201", metadata={"help": "keras.applications model name"})
    weights: str = field(
        default="imagenet", metadata={"help": "'imagenet', 'none' or a path to a local weights file"}
    )
    head: str = field(
        default="flatten", metadata={"help": "flatten (paper) or gap (global average pooling)", "choices": HEADS}
    )
    dense_units: int = field(default=1024, metadata={"help": "units of the hidden dense layer"})
    dropout: float = field(default=0.3, metadata={"help": "dropout rate before the classifier"})
    freeze_backbone: bool = field(default=False, metadata={"help": "freeze the backbone's weights"})
    unfreeze_last: int = field(
        default=0, metadata={"help": "with --freeze-backbone: keep the last N backbone layers that have "
                                     "weights trainable (fine-tune the top of the backbone; 0 = all frozen)"}
    )
    init_from: str = field(
        default="", metadata={"help": "start from a trained run bundle (runs/NAME): its backbone, image size, "
                                      "head and preprocessing, and its weights except the classifier layer, "
                                      "which is new for this data's classes ('' = off)"}
    )
    morphology_weight: float = field(
        default=0.0, metadata={"help": "also fit a boosting classifier on morphology statistics "
                                       "(galaxy_core.morphology.classifier) and give its probabilities this "
                                       "weight against the CNN's (0 = off, the CNN alone)"}
    )
    # --- augmentation (training only, inside the graph) -----------------------------------------
    rotation_factor: float = field(
        default=0.5, metadata={"help": "RandomRotation factor (0.5 = full circle, 0 = off)"}
    )
    zoom_factor: float = field(default=0.2, metadata={"help": "RandomZoom factor (0 = off)"})
    contrast_factor: float = field(default=0.2, metadata={"help": "RandomContrast factor (0 = off)"})
    flips: bool = field(default=False, metadata={"help": "random horizontal and vertical flips"})
    # --- training -------------------------------------------------------------------------------
    epochs: int = field(default=50, metadata={"help": "maximum epochs"})
    batch_size: int = field(default=32, metadata={"help": "batch size (global, over all replicas)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    patience: int = field(default=20, metadata={"help": "early-stopping patience on val accuracy"})
    average_from_epoch: int = field(
        default=0, metadata={"help": "stochastic weight averaging: the final weights are the mean of "
                                     "the weights after this epoch and every later one, with the "
                                     "BatchNorm statistics refreshed (0 = off: the best epoch's weights)"}
    )
    class_weights: bool = field(default=True, metadata={"help": "balanced class weights (scikit-learn)"})
    mixed_precision: bool = field(default=True, metadata={"help": "mixed float16 on GPUs (ignored on CPU)"})
    strategy: str = field(
        default="default", metadata={"help": "distribution strategy", "choices": STRATEGIES}
    )
    checkpoint_every: int = field(
        default=1, metadata={"help": "write the resumable checkpoint every N epochs and at the last one "
                                     "(an interruption loses at most N-1 epochs)"}
    )
    # Bounds for rehearsals and smoke runs (0 = no bound, the recipe).
    steps_per_epoch: int = field(
        default=0, metadata={"help": "training batches per epoch (0 = the whole training split)"}
    )
    max_eval_images: int = field(
        default=0, metadata={"help": "validate and test on at most N images of each split (0 = all)"}
    )
    # --- explanations written into the bundle (galaxy_core.explain) ------------------------------
    explain_errors: int = field(
        default=300, metadata={"help": "explain the N most confident test errors (0 = none)"}
    )
    explain_correct: int = field(
        default=30, metadata={"help": "also explain a seeded sample of N correct test images"}
    )
    smooth_samples: int = field(default=20, metadata={"help": "SmoothGrad noise samples"})
    faithfulness_steps: int = field(
        default=20, metadata={"help": "deletion/insertion steps per map (0 = no scores)"}
    )
    export_onnx: bool = field(
        default=True,
        metadata={"help": "export model.onnx (fingerprinted) into the bundle when training ends, so no one "
                          "waits on an export at the first classify (--no-export-onnx: exported then)"}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        validate_config(self)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def blended(self) -> bool:
        """Whether the run blends a morphology classifier into the CNN's probabilities
        (`morphology_weight > 0`; `galaxy_core.morphology.classifier`). The one test of it."""
        return self.morphology_weight > 0

    @property
    def preprocess_key(self) -> dict[str, Any]:
        """The fields that change preprocessed pixels (the preprocessed cache is keyed by these).

        With the galaxy crop off (`crop_scale == 0`) the crop fields change no pixel and are left
        out, so caches built before the crop existed keep their key.
        """
        names = ("image_size", *PREPROCESS_FIELDS)
        if self.crop_scale == 0:
            names = tuple(name for name in names if not name.startswith("crop_"))
        return {name: getattr(self, name) for name in names}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - set(field_names())
        if unknown:
            raise ConfigError(f"Unknown config field(s) {sorted(unknown)}; known: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Build from a dict; unknown keys are an error, missing keys take defaults."""
        unknown = set(data) - set(field_names())
        if unknown:
            raise ConfigError(f"Unknown config field(s) {sorted(unknown)}; known: {field_names()}")
        for name, value in data.items():
            check_field_type(name, value)
        return cls(**dict(data))

    def to_json(self, path: str | Path | None = None) -> str:
        """Return the config as JSON text, and write it to `path` if given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            from galaxy_core.io import write_text  # atomic, umask mode

            write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "Config":
        """Read a config from JSON text or from a path to a JSON file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as err:
                raise ConfigError(f"Cannot read config file {path}: {err}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"Config is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError("Config JSON must be an object of field names to values")
        return cls.from_dict(data)


# Each field's type (`int`, `float`, `bool`, `str` or `tuple[str, ...]`), for `check_field_type`.
_FIELD_TYPES: dict[str, Any] = {name: (hint if hint in (int, float, bool, str) else tuple)
                                for name, hint in typing.get_type_hints(Config).items()}

# Inclusive ranges of the numeric fields, from their `range` metadata: `validate_config` enforces
# them and the preprocessing lab's sliders span them, so the two can never disagree.
FIELD_RANGES: dict[str, tuple[float, float]] = {
    f.name: f.metadata["range"] for f in dataclasses.fields(Config) if "range" in f.metadata}


def _kind(value: Any) -> str:
    """How a JSON value reads in an error message: `the string '64'`, `a list`, ..."""
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return "null" if value is None else f"a {type(value).__name__}"


def check_field_type(name: str, value: Any) -> None:
    """Raise ConfigError when `value` (as read from JSON) is not of field `name`'s type.

    int fields take integers (not booleans, not strings), float fields integers or floats, bool
    fields true/false, str fields strings, and `class_names` a list of at least 2 non-empty strings
    (a single string such as "Disturbed,Merging" is refused, not read as one name per character).
    """
    hint = _FIELD_TYPES[name]
    if hint is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif hint is str:
        ok, expected = isinstance(value, str), "a string"
    else:  # tuple[str, ...]
        ok = (isinstance(value, (list, tuple)) and len(value) >= 2
              and all(isinstance(v, str) and v.strip() for v in value))
        expected = "a list of at least 2 non-empty strings"
    if not ok:
        raise ConfigError(f"field {name!r} must be {expected}, got {_kind(value)}")


def validate_config(cfg: Config) -> None:
    """Raise ConfigError naming the first invalid field and the valid range."""
    checks = [
        (cfg.image_size >= 32, "image_size", "must be >= 32"),
        (len(cfg.class_names) >= 2, "class_names", "needs at least 2 classes"),
        *(_in_range(cfg, name) for name in FIELD_RANGES),
        (cfg.channel_mode in CHANNEL_MODES, "channel_mode", f"must be one of {CHANNEL_MODES}"),
        (cfg.opening_kernel_shape in KERNEL_SHAPES, "opening_kernel_shape", f"must be one of {KERNEL_SHAPES}"),
        (cfg.opening_kernel_size % 2 == 1, "opening_kernel_size", "must be an odd number"),
        (0 < cfg.val_fraction < 1, "val_fraction", "must be in (0, 1)"),
        (0 < cfg.test_fraction < 1, "test_fraction", "must be in (0, 1)"),
        (cfg.val_fraction + cfg.test_fraction < 1, "val_fraction", "val + test fractions must be < 1"),
        (cfg.split_by in SPLIT_BY, "split_by", f"must be one of {SPLIT_BY}"),
        (cfg.head in HEADS, "head", f"must be one of {HEADS}"),
        (cfg.dense_units >= 1, "dense_units", "must be >= 1"),
        (cfg.unfreeze_last >= 0, "unfreeze_last", "must be >= 0 (0 = the whole backbone frozen)"),
        (cfg.unfreeze_last == 0 or cfg.freeze_backbone, "unfreeze_last",
         "needs --freeze-backbone (without it the whole backbone is trainable anyway)"),
        (cfg.steps_per_epoch >= 0, "steps_per_epoch", "must be >= 0 (0 = whole training split)"),
        (cfg.checkpoint_every >= 1, "checkpoint_every", "must be >= 1 (1 = after every epoch)"),
        (cfg.max_eval_images >= 0, "max_eval_images", "must be >= 0 (0 = all images)"),
        (0 <= cfg.dropout < 1, "dropout", "must be in [0, 1)"),
        (0 <= cfg.morphology_weight <= 1, "morphology_weight", "must be in [0, 1] (0 = off)"),
        (0 <= cfg.rotation_factor <= 0.5, "rotation_factor", "must be in [0, 0.5]"),
        (0 <= cfg.zoom_factor < 1, "zoom_factor", "must be in [0, 1)"),
        (0 <= cfg.contrast_factor < 1, "contrast_factor", "must be in [0, 1)"),
        (cfg.epochs >= 1, "epochs", "must be >= 1"),
        (cfg.batch_size >= 1, "batch_size", "must be >= 1"),
        (cfg.learning_rate > 0, "learning_rate", "must be > 0"),
        (cfg.patience >= 0, "patience", "must be >= 0"),
        (0 <= cfg.average_from_epoch <= cfg.epochs, "average_from_epoch",
         f"must be in 0..epochs ({cfg.epochs}); 0 = off"),
        (cfg.strategy in STRATEGIES, "strategy", f"must be one of {STRATEGIES}"),
        (cfg.explain_errors >= 0, "explain_errors", "must be >= 0"),
        (cfg.explain_correct >= 0, "explain_correct", "must be >= 0"),
        (cfg.smooth_samples >= 1, "smooth_samples", "must be >= 1"),
        (cfg.faithfulness_steps >= 0, "faithfulness_steps", "must be >= 0 (0 = no scores)"),
    ]
    for ok, name, rule in checks:
        if not ok:
            raise ConfigError(f"Invalid config: {name}={getattr(cfg, name)!r} {rule}.")


def _in_range(cfg: Config, name: str) -> tuple[bool, str, str]:
    lo, hi = FIELD_RANGES[name]
    return lo <= getattr(cfg, name) <= hi, name, f"must be in {lo:g}..{hi:g}"


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


# The three published experiments (README.md, "Training"). A preset is a set of overrides of the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "densenet201-finetune": {"backbone": "DenseNet201", "freeze_backbone": False, "class_weights": True},
    "densenet201-frozen": {"backbone": "DenseNet201", "freeze_backbone": True, "class_weights": False},
    "vgg19-frozen": {"backbone": "VGG19", "freeze_backbone": True, "class_weights": True},
}
DEFAULT_PRESET = "densenet201-finetune"


def preset_config(name: str = DEFAULT_PRESET, **overrides: Any) -> Config:
    """The config of a named preset, with optional field overrides."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return Config().replace(**{**PRESETS[name], **overrides})


def _cli_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if f.metadata.get("cli", True)]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--field-name` flag per config field (booleans get `--x/--no-x`).

    Defaults are left as None so that `config_from_args` can tell a flag given on the command line
    from a preset's value.
    """
    group = parser.add_argument_group("config (defaults from galaxy_core.config.Config)")
    hints = typing.get_type_hints(Config)
    for f in _cli_fields():
        flag = cli_flag(f.name)
        kind = hints[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=None, choices=f.metadata.get("choices"),
                               help=help_text)


def cli_flag(name: str) -> str:
    """The command-line flag of a config field: `clahe_clip_limit` -> `--clahe-clip-limit`."""
    return "--" + name.replace("_", "-")


def cli_args(params: Mapping[str, Any]) -> list[str]:
    """`{field: value}` as the flags `add_config_arguments` parses back to the same values.

    Booleans become `--x` / `--no-x`, other values `--x value`. Example:
        >>> cli_args({"clahe_clip_limit": 3.5, "flips": False})
        ['--clahe-clip-limit', '3.5', '--no-flips']

    Raises:
        ConfigError: a name that is not a command-line field of Config.
    """
    known = {f.name for f in _cli_fields()}
    unknown = [name for name in params if name not in known]
    if unknown:
        raise ConfigError(f"No command-line flag for {unknown}; the flags are the Config fields {sorted(known)}.")
    args: list[str] = []
    for name, value in params.items():
        if isinstance(value, bool):
            args.append(cli_flag(name) if value else "--no-" + cli_flag(name)[2:])
        else:
            args += [cli_flag(name), str(value)]
    return args


def config_from_args(args: argparse.Namespace, preset: str | None = DEFAULT_PRESET) -> Config:
    """The preset's config with every flag that was given on the command line applied on top."""
    given = {f.name: getattr(args, f.name) for f in _cli_fields() if getattr(args, f.name, None) is not None}
    return preset_config(preset or DEFAULT_PRESET, **given)
