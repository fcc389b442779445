"""``retailctl operator``: run the kopf operator in this process, as it runs in a pod."""

from __future__ import annotations

import asyncio
import logging

import kopf

from retail_operator.settings import OperatorSettings


def run_operator(namespace: str | None, *, verbose: bool = False) -> None:
    """Run until interrupted; all namespaces unless ``namespace`` is given."""
    import retail_operator.handlers  # noqa: F401  (registers the handlers)

    settings = OperatorSettings()
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not verbose:  # kopf says "Handler … succeeded" for every watch event; keep warnings only
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    liveness = (
        f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
    )
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=namespace is None,
            namespaces=[namespace] if namespace else (),
            liveness_endpoint=liveness,
        )
    )
