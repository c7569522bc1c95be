"""The sweep's progress bar, chosen for where the code runs.

* a terminal (or any plain Python process): tqdm's text bar on stderr;
* a Jupyter notebook with ipywidgets: the widget bar;
* a Jupyter notebook without ipywidgets: no bar at all. tqdm would warn
  (``TqdmWarning: IProgress not found``) and then print text bars to stderr, which
  notebooks show as red boxes; the sweep's summary is enough there;
* ``progress=False``: no bar anywhere.

Every choice returns an object with tqdm's interface (``update``, ``set_postfix``,
``close``); "no bar" is a disabled tqdm, so callers never branch.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Literal

from tqdm.std import tqdm as text_tqdm

__all__ = ["Environment", "detect_environment", "progress_bar"]

Environment = Literal["terminal", "notebook-widgets", "notebook-plain"]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell); never imports IPython itself."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _has_widgets() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def detect_environment() -> Environment:
    """Where we run, as far as the progress bar is concerned.

    Example:
        >>> detect_environment()  # a doctest runs in a plain process
        'terminal'
    """
    if not _in_notebook():
        return "terminal"
    return "notebook-widgets" if _has_widgets() else "notebook-plain"


def progress_bar(
    *, total: int, initial: int = 0, enabled: bool = True, desc: str = "web tasks"
) -> Any:
    """A tqdm-like bar for ``total`` items (``initial`` already done), or a disabled one
    where a bar would only be noise (see the module docstring).

    Example:
        >>> bar = progress_bar(total=3, enabled=False)
        >>> bar.update(1); bar.close()
    """
    options: dict[str, Any] = {
        "total": total,
        "initial": initial,
        "desc": desc,
        "unit": "task",
        "leave": True,
    }
    where = detect_environment() if enabled else None
    if where == "terminal":
        return text_tqdm(**options)
    if where == "notebook-widgets":
        from tqdm.notebook import tqdm as widget_tqdm  # needs ipywidgets: imported only here

        return widget_tqdm(**options)
    return text_tqdm(disable=True, **options)
