"""The project's exception types. Every message names the file or value at fault and how to fix it."""


class GalaxyError(Exception):
    """Base class of every error this project raises on purpose."""


class DatasetError(GalaxyError):
    """A Galaxy10-format file is missing, unreadable or malformed."""


class DownloadError(GalaxyError):
    """The dataset could not be downloaded or failed its checksum."""


class PreprocessError(GalaxyError, ValueError):
    """An image or a preprocessing parameter is not acceptable."""


class ModelError(GalaxyError):
    """A model cannot be built, loaded or used as asked."""


class BundleError(GalaxyError):
    """A run bundle is missing a member or fails validation."""


class ExplainError(GalaxyError):
    """An explanation method cannot handle this model or input."""


class TrainingError(GalaxyError):
    """A training run cannot start or resume as asked (the message says how to fix it)."""
