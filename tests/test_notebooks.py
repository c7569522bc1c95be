"""Execute every notebook in notebooks/, twice, so they never rot (they run against the sandbox)
and read like a tutorial: no errors, no stderr noise, no files left in the repository."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: strip outputs before committing"
            assert cell.get("execution_count") is None


def _outputs(notebook: Any, output_type: str) -> list[Any]:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == output_type
    ]


def _untracked_state() -> tuple[str, list[str]]:
    """``git status`` of notebooks/ (when in a git checkout) and every file under it."""
    status = ""
    if shutil.which("git") and (ROOT / ".git").exists():
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--ignored", "notebooks/"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").rglob("*"))
    return status, files


def _execute(path: Path) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        # The kernel starts in notebooks/, as in Jupyter: whatever a notebook writes
        # relative to its working directory would land in the repository.
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_twice_cleanly(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twice, the same story: no error, nothing on stderr (no warning box, no text progress
    bars), something displayed, and no file left in the repository."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = _untracked_state()
    texts = []
    for run in (1, 2):
        notebook = _execute(path)
        assert _outputs(notebook, "error") == [], f"run {run}"
        stderr = [
            o.get("text", "") for o in _outputs(notebook, "stream") if o.get("name") == "stderr"
        ]
        assert stderr == [], f"run {run} wrote to stderr: {stderr[:3]}"
        shown = _outputs(notebook, "execute_result") + _outputs(notebook, "display_data")
        assert shown, "the notebook displayed nothing"
        texts.append([o.get("text", "") for o in _outputs(notebook, "stream")])
        assert _untracked_state() == before, f"run {run} left files under notebooks/"
    # The second run prints what the first did, line for line. Lines, not stream messages:
    # the kernel sends one text in one or several messages, depending on timing.
    lines = ["".join(text).splitlines() for text in texts]
    assert len(lines[0]) == len(lines[1]), lines
