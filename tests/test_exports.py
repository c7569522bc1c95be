"""The public surface: ``webtask_frames.__all__`` is exactly what the package exports."""

from __future__ import annotations

import types

import pytest

import webtask_frames


def top_level_public_names() -> set[str]:
    """Names the package itself binds at top level that do not start with ``_``
    (subpackages that happen to be imported are attributes, not exports)."""
    return {
        name
        for name, value in vars(webtask_frames).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_is_sorted_without_duplicates() -> None:
    exported = list(webtask_frames.__all__)
    assert exported == sorted(exported)
    assert len(exported) == len(set(exported))


@pytest.mark.parametrize("name", webtask_frames.__all__)
def test_every_exported_name_resolves_and_is_documented(name: str) -> None:
    value = getattr(webtask_frames, name)
    if name != "__version__":
        assert value.__doc__, f"{name} has no docstring"
        assert getattr(value, "__module__", "").startswith("webtask_frames"), name


def test_all_equals_the_public_top_level_names() -> None:
    exported = set(webtask_frames.__all__)
    public = top_level_public_names()
    assert exported - public == {"__version__"}, "exported but not a public top-level name"
    assert public - exported == set(), "public top-level name missing from __all__"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from webtask_frames import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(webtask_frames.__all__)
