"""A run's image tags go when the run ends (``podman.remove_tags``), and nobody else's."""

from __future__ import annotations

import uuid

import pytest

from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import image_exists, podman, remove_tags

pytestmark = pytest.mark.images


def test_a_runs_tags_and_its_releases_are_removed_and_no_other(
    images_config: ImagesConfig, images: dict[str, str]
) -> None:
    source = images["operator"]
    repository = source.rpartition(":")[0]
    run = f"tags-{uuid.uuid4().hex[:6]}"
    ours = [f"{repository}:{run}", f"{repository}:{run}-next"]
    other = f"{repository}:other-{run}"
    for reference in (*ours, other):
        podman(images_config, "tag", source, reference)
    try:
        assert sorted(remove_tags(images_config, run)) == sorted(ours)
        assert not any(image_exists(images_config, reference) for reference in ours)
        assert image_exists(images_config, other) and image_exists(images_config, source)
    finally:
        podman(images_config, "rmi", other, *ours, check=False)
