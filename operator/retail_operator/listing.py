"""The children's first lists: no look starts before every child kind is in the registry.

A restarted replica that looked at its RetailModels before the child watches had listed found
no children and sent a GET for each (4,599 in 26 s at 2,000 RetailModels); controller-runtime
waits for its caches to sync for the same reason. kopf's indexes would wait too, but kopf lists
every object of an indexed kind, labelled or not, and holds a toggle for each until its worker
has indexed it; every toggle dropped wakes every worker waiting for the rest, so a start costs
the square of the objects. With 30,000 Deployments, Services and ConfigMaps in the cluster
(10,000 RetailModels' worth), the operator spent ten minutes of CPU waking workers, made no
Deployment and lost its Lease.

So the operator lists for itself: one paginated LIST per child kind and namespace, asking the
API server for the operator's label only, files every page in the registry, and then opens
``listed``, one event every waiting look wakes from once. kopf's watches keep the registry
current as before; a page read before a delete the watch reported meanwhile files no ghost
(``Registry.child_listed``), and a child only a page has shown is applied by the next look
rather than trusted, until a watch event or an apply shows it exists: an object deleted
between the page and kopf's own first list is never reported deleted. A list that fails, for
any reason, is tried again from the start until it succeeds: until then the operator looks at
nothing. A kind the API server does not serve (404) lists as empty, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

from retail_operator.errors import OperatorError
from retail_operator.kube import KubeApi
from retail_operator.objects import Registry

logger = logging.getLogger(__name__)

PAGE = 500  # objects per page: the API server's own default for its clients' relists
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


async def list_children(
    kube: KubeApi,
    registry: Registry,
    kinds: Iterable[tuple[str, str]],
    namespaces: Sequence[str],
    selector: str,
    listed: asyncio.Event,
) -> None:
    """File every labelled child of ``kinds`` ((apiVersion, kind) pairs) in ``namespaces``
    (none: every namespace) in ``registry``, then set ``listed``."""
    started = time.monotonic()
    scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
    registry.begin_listing()
    try:
        count = 0
        for api_version, kind in kinds:
            for namespace in scopes:
                count += await _list_one(kube, registry, api_version, kind, namespace, selector)
    finally:
        registry.end_listing()
    listed.set()
    logger.info("children listed: %d in %.1fs", count, time.monotonic() - started)


async def _list_one(
    kube: KubeApi,
    registry: Registry,
    api_version: str,
    kind: str,
    namespace: str | None,
    selector: str,
) -> int:
    attempt = 0
    while True:
        count = 0
        try:
            async for page in kube.list_pages(api_version, kind, namespace, selector, limit=PAGE):
                for body in page:
                    registry.child_listed(kind, body)
                count += len(page)
            return count
        except Exception as error:  # any failure: a task that ended would gate forever
            delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            attempt += 1
            where = f"in {namespace}" if namespace else "in every namespace"
            logger.warning(
                "listing %ss %s failed (%s); no look starts before it is in, trying again in %.0fs",
                kind,
                where,
                error if isinstance(error, OperatorError) else repr(error),
                delay,
            )
            await asyncio.sleep(delay)
