"""Progress bars on stderr for long commands (``registry publish``, ``registry simulate``).

A thin policy layer over ``tqdm``: the bar shows records done, rate, and the ETA when the total
is known, plus what the caller puts in its postfix (rejections so far, acknowledged). It is
drawn only when the stream is a terminal, so pipes, files and CI logs stay quiet; it is
cleared when closed, so the command's own final summary line is what remains. Messages
printed while a bar is drawn go through :func:`write` so they do not tear the bar.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

#: Seconds between two redraws of a bar.
REFRESH_S = 0.5


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether a human is probably watching ``stream`` (default stderr)."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(label: str, *, total: int | None = None, unit: str = "rec",
                 enabled: bool | None = None, stream: TextIO | None = None) -> tqdm:
    """A bar labelled ``label`` counting ``unit``; ``total`` (if known) gives the ETA.

    ``enabled`` defaults to :func:`is_terminal` of ``stream`` (default stderr). A disabled bar
    accepts every call and prints nothing. Close it (or use it as a context manager).
    """
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = is_terminal(stream)
    return tqdm(total=total, desc=label, unit=unit, unit_scale=True, file=stream,
                disable=not enabled, mininterval=REFRESH_S, dynamic_ncols=True, leave=False)


def write(bar: tqdm, line: str, stream: TextIO) -> None:
    """Print ``line`` on ``stream`` without tearing ``bar`` (cleared and redrawn if shown)."""
    if bar.disable:
        print(line, file=stream)
    else:
        bar.write(line, file=stream)
