"""Start TensorFlow without its native start-up noise on the terminal (CUDA probing, oneDNN, CPU flags).

TensorFlow's C++ core prints lines such as `failed call to cuInit`, `Could not find cuda drivers`
and `oneDNN custom operations are on` while it is imported and its devices are first listed. Some
come before its logging is configured, so `TF_CPP_MIN_LOG_LEVEL` cannot hide them. The CLIs call
`import_tensorflow_quietly()` once, first: native stderr is captured while TensorFlow starts, and
every captured line that is not a known start-up message is written back, so real errors still show.
`TF_CPP_MIN_LOG_LEVEL=0` (set by the user) shows everything.

The default of `TF_CPP_MIN_LOG_LEVEL` is set here and nowhere else: `quiet_tf_logs()` for this
process (before TensorFlow is imported), `quiet_env()` for a child process; both keep a value the
user set.

Example:
    >>> tf = import_tensorflow_quietly()      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, Mapping

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "2"  # warnings and errors of TensorFlow's C++ core hidden; "0" shows everything


def quiet_tf_logs() -> None:
    """Default `TF_CPP_MIN_LOG_LEVEL` to 2 in this process (call before TensorFlow is imported)."""
    os.environ.setdefault(LOG_LEVEL_VARIABLE, DEFAULT_LOG_LEVEL)


def quiet_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child process's environment: `env` (default `os.environ`) with `TF_CPP_MIN_LOG_LEVEL`
    defaulted to 2 (a value already there is kept)."""
    env = dict(os.environ if env is None else env)
    env.setdefault(LOG_LEVEL_VARIABLE, DEFAULT_LOG_LEVEL)
    return env


# Start-up messages of TensorFlow 2.x on a machine without (or with) a GPU; nothing else is dropped.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|failed call to cuInit"
    r"|cpu_feature_guard\.cc"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT")


@contextlib.contextmanager
def filtered_native_stderr(noise: re.Pattern = STARTUP_NOISE) -> Iterator[None]:
    """Capture file descriptor 2 (C++ code writes there) and replay the lines `noise` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not noise.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow_quietly():
    """`import tensorflow` and list its devices with the start-up noise removed; returns the module."""
    quiet_tf_logs()
    if os.environ[LOG_LEVEL_VARIABLE] == "0":
        import tensorflow as tf
        return tf
    with filtered_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe (cuInit) happens here
    return tf
