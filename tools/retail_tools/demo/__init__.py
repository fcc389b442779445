"""``retailctl demo``: the whole story on this machine's real pods, step by step, then a clean
shutdown.

Every step runs the same commands a team would run (``retailctl …``, ``podman …``, ``kubectl
…``) against the local cluster's real node and moto's server standing in for ECR and S3: the
images are built and pushed here, the operator runs in-cluster from its image, and the
predictor pods it rolls out serve the load, reloads and rollouts the demo shows. Whatever the
demo starts or applies, it stops or deletes, even when a step fails.

``context`` holds what the steps share (the ``Demo`` object: environment, what was started and
applied, values one step leaves for the next, figures measured, how commands are run and
shown; and ``Step``); ``groundwork`` and ``rollouts`` hold one small function per step;
``canary`` its own steps (a bad model rolled back, a good one promoted); ``scaling`` the
autoscaler under load and a drain held back by the disruption budget; ``drift`` the stable
model watched, then a shifted store mix turning FeatureDrift; ``provenance`` unsigned images
and models refused, signed ones served; ``steps`` holds
``STORY``, the list ``run_demo`` walks, and ``TEARDOWN``.
"""

from retail_tools.demo.context import Step
from retail_tools.demo.steps import STORY, TEARDOWN, run_demo

__all__ = ["STORY", "TEARDOWN", "Step", "run_demo"]
