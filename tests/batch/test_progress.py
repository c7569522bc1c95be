"""The progress bar's choice of display: widget, text on stderr, or none."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import tqdm.notebook

from webtask_frames._batch import progress
from webtask_frames._batch.progress import detect_environment, progress_bar


def _place(monkeypatch: pytest.MonkeyPatch, *, notebook: bool, widgets: bool) -> None:
    monkeypatch.setattr(progress, "_in_notebook", lambda: notebook)
    monkeypatch.setattr(progress, "_has_widgets", lambda: widgets)


def test_a_terminal_gets_a_text_bar_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _place(monkeypatch, notebook=False, widgets=True)
    assert detect_environment() == "terminal"
    bar = progress_bar(total=4, initial=1)
    assert not bar.disable
    bar.update(1)
    bar.close()
    out = capsys.readouterr()
    assert "web tasks" in out.err and "2/4" in out.err and out.out == ""


def test_a_notebook_with_ipywidgets_gets_the_widget_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Widget:
        def __init__(self, **options: Any) -> None:
            made.append(options)

    monkeypatch.setattr(tqdm.notebook, "tqdm", Widget)
    _place(monkeypatch, notebook=True, widgets=True)
    assert detect_environment() == "notebook-widgets"
    assert isinstance(progress_bar(total=3), Widget)
    assert made == [{"total": 3, "initial": 0, "desc": "web tasks", "unit": "task", "leave": True}]


def test_a_notebook_without_ipywidgets_gets_no_bar_and_no_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _place(monkeypatch, notebook=True, widgets=False)
    assert detect_environment() == "notebook-plain"
    bar = progress_bar(total=3)  # warnings are errors in this suite: none is emitted
    bar.update(3)
    bar.set_postfix(failed=0)
    bar.close()
    assert bar.disable
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("notebook", [True, False])
def test_progress_false_shows_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], notebook: bool
) -> None:
    _place(monkeypatch, notebook=notebook, widgets=True)
    bar = progress_bar(total=3, enabled=False)
    bar.update(3)
    bar.close()
    assert bar.disable and capsys.readouterr().err == ""


def test_notebook_detection_reads_the_running_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    class ZMQInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = ZMQInteractiveShell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert progress._in_notebook()
    fake.get_ipython = lambda: None  # type: ignore[attr-defined]
    assert not progress._in_notebook()
    monkeypatch.delitem(sys.modules, "IPython")
    assert not progress._in_notebook()
