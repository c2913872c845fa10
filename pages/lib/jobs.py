"""The demo build job: its command line, the subprocess whose output the Start view streams, and
the parser of that output's progress bars.

The CLIs print progress in one format, tqdm bars with `galaxy_core.io.BAR_FORMAT`:
`desc:  42%|####      | 420/1000 [00:03<00:04, 130it/s]`, redrawn with carriage returns; training's
bar has the desc `Epoch k/N`. Plain Python (no streamlit).
"""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
from pathlib import Path

from galaxy_core.tf_quiet import quiet_env

# `{l_bar}` of BAR_FORMAT is `{desc}: {percentage:3.0f}%|` (just the percentage without a desc).
_BAR = re.compile(r"(?:^|\s)(?:(?P<desc>\S[^\r\n]*?): )?\s*(?P<percent>\d{1,3})%\|")
_EPOCH = re.compile(r"Epoch (\d+)/(\d+)")
OUTPUT_KEPT = 20_000  # characters of output kept (the tail is all that is shown)


def demo_command(out_dir: str | Path) -> list[str]:
    """The command line that builds the offline demo run into `out_dir` (synthetic data, CPU)."""
    return [sys.executable, "-u", "train.py", "--demo", "--out", str(out_dir)]


def parse_progress(text: str) -> tuple[float | None, str]:
    """The progress fraction of the last bar and the last non-empty line of a CLI's output.

    A bar whose desc is `Epoch k/N` counts as the whole training: `(k - 1 + its fraction) / N`.
    The output is split on both `\\r` and `\\n` (tqdm redraws with carriage returns).

    Returns:
        `(fraction in [0, 1] or None if no bar was drawn yet, last line)`.

    Example:
        >>> parse_progress("Epoch 2/4:  50%|#####     | 5/10 [00:01<00:01, 5.0it/s]")[0]
        0.375
    """
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    fraction = None
    for line in reversed(lines):
        match = _BAR.search(line)
        if match is None:
            continue
        fraction = min(int(match.group("percent")), 100) / 100.0
        epoch = _EPOCH.fullmatch((match.group("desc") or "").strip())
        if epoch and int(epoch.group(2)) > 0:
            done, total = int(epoch.group(1)) - 1, int(epoch.group(2))
            fraction = min((done + fraction) / total, 1.0)
        break
    return fraction, (lines[-1] if lines else "")


def tail_lines(text: str, n: int = 25) -> str:
    """The last `n` lines of a CLI's output, with carriage-return redraws collapsed to their last state."""
    lines = []
    for raw in text.split("\n"):
        parts = [p for p in raw.split("\r") if p.strip()]
        if parts:
            lines.append(parts[-1].rstrip())
    return "\n".join(lines[-n:])


class Job:
    """A CLI run in a subprocess whose combined stdout + stderr is read as it comes.

    Use as a context manager: leaving it (also by an exception, e.g. Streamlit stopping the script
    run when the page is left) terminates a process still running, so no orphan trainer is left.

    Example:
        >>> with Job([sys.executable, "-c", "print('hi')"], cwd=".") as job:
        ...     while job.read():
        ...         pass
        ...     job.wait(), job.output.strip()
        (0, 'hi')
    """

    def __init__(self, command: list[str], cwd: str | Path):
        env = quiet_env({**os.environ, "PYTHONUNBUFFERED": "1"})
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.output = ""

    def read(self) -> bool:
        """Append the next chunk of output to `output` (blocks until there is one); False at the end."""
        chunk = os.read(self.proc.stdout.fileno(), 4096)
        if not chunk:
            return False
        self.output = (self.output + self._decoder.decode(chunk))[-OUTPUT_KEPT:]
        return True

    def wait(self) -> int:
        """The exit code (waits for the process to end)."""
        return self.proc.wait()

    def __enter__(self) -> "Job":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.proc.stdout.close()
