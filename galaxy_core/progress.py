"""A dependency-free text progress bar for long work (downloads, caches, generators)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")


class ProgressBar:
    """A single-line progress bar on stderr: `desc  42% |#####     | 420/1000 [00:03<00:04, 130/s]`.

    Args:
        total: number of units when done (None if unknown).
        desc: label shown before the bar.
        unit: unit name shown in the rate.
        stream: where to draw (stderr by default); redraws at most every `min_interval` seconds.
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "it",
                 stream: TextIO | None = None, min_interval: float = 0.2, enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval, self.enabled = min_interval, enabled
        self.done = 0
        self._drawn_at = -1
        self._start = self._last_draw = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_draw >= self.min_interval or (self.total and self.done >= self.total):
            self._last_draw = now
            self._draw(now)

    def close(self) -> None:
        if self._drawn_at != self.done:
            self._draw(time.monotonic())
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _draw(self, now: float) -> None:
        self._drawn_at = self.done
        if not self.enabled:
            return
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 25)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            text = (f"\r{self.desc} {frac:4.0%} |{bar:<25}| {format_count(self.done)}/{format_count(self.total)}"
                    f" [{format_seconds(elapsed)}<{format_seconds(eta)}, {format_count(rate)} {self.unit}/s]")
        else:
            text = f"\r{self.desc} {format_count(self.done)} [{format_seconds(elapsed)}, {format_count(rate)} {self.unit}/s]"
        self.stream.write(text)
        self.stream.flush()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True) -> Iterator[T]:
    """Yield from `iterable` while drawing a progress bar (one unit per item)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with ProgressBar(total, desc=desc, unit=unit, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def format_count(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 10 else f"{value:.1f}"
