"""What a registry stores and what that costs: image count, size and monthly storage estimate.

ECR bills storage per GB-month (AWS's GB being 2^30 bytes); the estimate multiplies the summed
compressed image sizes by :data:`PRICE_PER_GB_MONTH`. Layers shared between images are stored
once, so the sum is an upper bound, which is the safe side for a budget.

An image's size is the sum of its manifest's layer sizes: the compressed bytes the registry
stores, which is what ECR reports as ``imageSizeInBytes``. moto's stand-in reports the size of
the config blob there instead, so the manifests are read (one ``batch_get_image`` per 100
images) and the reported size is used only for manifests without layers (image indexes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

PRICE_PER_GB_MONTH = Decimal("0.10")
MANIFESTS_PER_CALL = 100  # batch_get_image's limit
BYTES_PER_GB = 1024**3


class RepositoryNotFoundError(LookupError):
    """A repository asked about does not exist."""


@dataclass(frozen=True)
class RepositoryUsage:
    name: str
    image_count: int
    total_bytes: int

    @property
    def monthly_cost(self) -> Decimal:
        """Estimated US dollars per month, to the cent."""
        cost = Decimal(self.total_bytes) / BYTES_PER_GB * PRICE_PER_GB_MONTH
        return cost.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def measure_usage(client: ECRClient, names: Iterable[str] = ()) -> list[RepositoryUsage]:
    """Usage of the named repositories, or of every repository when none are named."""
    wanted = sorted(set(names)) or _all_repositories(client)
    usages = []
    for name in wanted:
        reported: dict[str, int] = {}
        pages = client.get_paginator("describe_images").paginate(repositoryName=name)
        try:
            for page in pages:
                for image in page["imageDetails"]:
                    reported[image["imageDigest"]] = image.get("imageSizeInBytes", 0)
        except client.exceptions.RepositoryNotFoundException as error:
            raise RepositoryNotFoundError(f"no repository {name} in ECR") from error
        layered = _layer_sizes(client, name, sorted(reported))
        size = sum(layered.get(digest, reported_size) for digest, reported_size in reported.items())
        usages.append(RepositoryUsage(name, len(reported), size))
    return usages


def _layer_sizes(client: ECRClient, repository: str, digests: Sequence[str]) -> dict[str, int]:
    """The summed layer sizes of each image whose manifest lists layers."""
    sizes: dict[str, int] = {}
    for start in range(0, len(digests), MANIFESTS_PER_CALL):
        chunk = digests[start : start + MANIFESTS_PER_CALL]
        response = client.batch_get_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest} for digest in chunk]
        )
        for image in response["images"]:
            manifest = json.loads(image.get("imageManifest", "{}"))
            if "layers" in manifest:
                digest = image["imageId"]["imageDigest"]
                sizes[digest] = sum(int(layer["size"]) for layer in manifest["layers"])
    return sizes


def _all_repositories(client: ECRClient) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("describe_repositories").paginate():
        names.extend(repository["repositoryName"] for repository in page["repositories"])
    return sorted(names)
