"""Progress bars for long reads (decoding a film) that the caller switches on and off.

Decoding happens deep inside callers such as :class:`lc4.LC4Pipeline`, which take a path, not a
progress option; a command line that wants bars wraps its work in :func:`io_progress` and the
readers of :mod:`lc4.io` show a tqdm bar per decode while it is on. Off by default (library use
stays silent). The switch lives in a context variable, so threads do not see each other's.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["io_progress", "ProgressSwitch", "progress_bar", "BAR_DELAY"]

#: Seconds before a bar appears: short reads and writes stay silent.
BAR_DELAY = 1.0


@dataclass
class ProgressSwitch:
    """Whether :mod:`lc4.io` readers show progress bars now; flip ``enabled`` at any time."""

    enabled: bool = True


_SWITCH: ContextVar[ProgressSwitch | None] = ContextVar("lc4_io_progress", default=None)


@contextmanager
def io_progress(enabled: bool = True) -> Iterator[ProgressSwitch]:
    """Show a progress bar for every decode started inside the block (while the switch is on)."""
    switch = ProgressSwitch(enabled)
    token = _SWITCH.set(switch)
    try:
        yield switch
    finally:
        _SWITCH.reset(token)


def progress_bar(total: int | None, desc: str, *, force: bool | None = None) -> Any:
    """A tqdm bar counting frames, or ``None`` when progress is off (``force`` overrides the switch)."""
    switch = _SWITCH.get()
    on = (switch is not None and switch.enabled) if force is None else force
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", leave=False, delay=BAR_DELAY, dynamic_ncols=True)
