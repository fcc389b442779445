"""What a registry stores and what that costs: image count, size and monthly storage estimate.

ECR bills storage per GB-month (AWS's GB being 2^30 bytes); the estimate multiplies the summed
compressed image sizes ECR reports by :data:`PRICE_PER_GB_MONTH`. Layers shared between images
are stored once, so the sum is an upper bound, which is the safe side for a budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

PRICE_PER_GB_MONTH = Decimal("0.10")
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
        count = 0
        size = 0
        pages = client.get_paginator("describe_images").paginate(repositoryName=name)
        try:
            for page in pages:
                for image in page["imageDetails"]:
                    count += 1
                    size += image.get("imageSizeInBytes", 0)
        except client.exceptions.RepositoryNotFoundException as error:
            raise RepositoryNotFoundError(f"no repository {name} in ECR") from error
        usages.append(RepositoryUsage(name, count, size))
    return usages


def _all_repositories(client: ECRClient) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("describe_repositories").paginate():
        names.extend(repository["repositoryName"] for repository in page["repositories"])
    return sorted(names)
