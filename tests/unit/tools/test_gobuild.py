"""The one way binaries are built from the Go module proxy: steps staged, then stamped once."""

from __future__ import annotations

from pathlib import Path

import pytest

from retail_tools import gobuild
from retail_tools.gobuild import Build, BuildError, Recipe


def _recipe(folder: Path, steps: list[tuple[str, object]]) -> Recipe:
    return Recipe(
        title="a tool",
        folder=folder,
        steps=steps,  # type: ignore[arg-type]
        stamp={"version": "v1"},
        is_built=lambda: bool(gobuild.stamp_of(folder / "bin")),
    )


def test_every_step_runs_in_order_and_only_a_finished_build_is_stamped(tmp_path: Path) -> None:
    ran: list[str] = []

    def write(build: Build, step: str) -> None:
        ran.append(step)
        (build.staging / step).write_text(step)

    seen: list[tuple[str, bool]] = []
    recipe = _recipe(tmp_path, [("one", write), ("two", write)])
    bin_dir = gobuild.build(recipe, on_step=lambda step, took: seen.append((step, took is None)))

    assert ran == ["one", "two"]
    assert seen == [("one", True), ("one", False), ("two", True), ("two", False)]
    assert sorted(path.name for path in bin_dir.iterdir()) == [".complete.json", "one", "two"]
    assert gobuild.stamp_of(bin_dir)["version"] == "v1"
    assert "==> one\n==> two\n" == recipe.log_path.read_text()

    gobuild.build(recipe)
    assert ran == ["one", "two"]  # built: nothing runs again


def test_a_failed_step_leaves_no_stamp_and_no_bin_folder(tmp_path: Path) -> None:
    def fail(build: Build, step: str) -> None:
        build.output(step, ["no-such-go-command"], tmp_path)

    recipe = _recipe(tmp_path, [("broken", fail)])
    with pytest.raises(BuildError, match=r"^broken: `go no-such-go-command` failed"):
        gobuild.build(recipe)
    assert not recipe.bin_dir.exists()
    assert not recipe.is_built()
