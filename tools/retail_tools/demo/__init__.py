"""``retailctl demo``: the whole story on this machine, step by step, then a clean shutdown.

Every step runs the same commands a team would run (``retailctl …``, ``kubectl …``) against
the real local control plane and moto's server standing in for ECR and S3. Pods are played by
kwok, so the demo also runs one predictor process locally to show predictions and a hot
reload. Whatever the demo starts, it stops, even when a step fails.

``context`` holds what the steps share (the ``Demo`` object: environment, processes started,
values one step leaves for the next, how commands are run and shown); ``steps`` holds one small
function per step and ``STORY``, the list ``run_demo`` walks. To run the story elsewhere (say,
on a real node), swap or replace entries of that list; each step reads and writes only the
context.
"""

from retail_tools.demo.steps import STORY, TEARDOWN, Step, run_demo

__all__ = ["STORY", "TEARDOWN", "Step", "run_demo"]
