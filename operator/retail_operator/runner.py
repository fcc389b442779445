"""Run the kopf operator in this process: ``python -m retail_operator`` in the image,
``retailctl operator`` for people. The operator's only entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence

import kopf

from retail_operator import metrics
from retail_operator.leadership import identity
from retail_operator.settings import Settings


def served_namespaces(option: str | None, settings: Settings) -> list[str]:
    """The namespaces to serve: the command line's, else ``RETAIL_OPERATOR_NAMESPACES``, each
    comma-separated; none means every namespace."""
    text = option if option else settings.namespaces
    return [name.strip() for name in text.split(",") if name.strip()]


def run_operator(namespace: str | None, *, verbose: bool = False) -> None:
    """Run until interrupted; all namespaces unless ``namespace`` names some (comma-separated).

    Serving named namespaces is the namespaced install (deploy/overlays/namespaced): the
    operator needs write rights only there, and reads just the cluster-scoped
    RetailModelPolicies and namespace labels besides."""
    import retail_operator.handlers  # noqa: F401  (registers the handlers)

    settings = Settings()
    namespaces = served_namespaces(namespace, settings)
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not verbose:  # kopf says "Handler … succeeded" for every watch event; keep warnings only
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    liveness = (
        f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
    )
    metrics.serve(settings.metrics_port)

    # kopf's default identity asks the OS for a user name, which the image's numeric UID does
    # not have; it takes POD_ID instead when set: the Lease's identity (POD_NAME and a suffix).
    os.environ.setdefault("POD_ID", identity())

    async def operate() -> None:
        await kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            memo=kopf.Memo(namespaced=bool(namespaces), namespaces=namespaces),
        )

    asyncio.run(operate())


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m retail_operator [--namespace NS] [--verbose]``."""
    parser = argparse.ArgumentParser(prog="python -m retail_operator", description=__doc__)
    parser.add_argument(
        "--namespace", "-n", help="serve these namespaces, comma-separated (default: all)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every handler call")
    arguments = parser.parse_args(argv)
    run_operator(arguments.namespace, verbose=arguments.verbose)
