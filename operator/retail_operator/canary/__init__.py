"""Canary rollouts of model objects: a new object earns its traffic, or is rolled back.

One role per module, layered like the operator around it:

* ``analysis``: the pure judge. Two groups' evidence (what the stable and the canary pods did
  over the analysis window) and the policy in, a ``Verdict`` out.
* ``statistics``: the tests the judge uses, with false-alarm rates that hold however often it
  looks. Pure arithmetic.
* ``evidence``: reading a pod's ``/metrics`` text and adding up what each pod did, scrape by
  scrape, into a group's evidence. Pure.
* ``machine``: the state machine. What the stable pods serve, whether a candidate runs beside
  them, and what to do next (apply or remove the canary, announce a verdict), as a plan the
  reconcile carries out. Pure.
* ``scraping``: the adapter that finds the pods a group really consists of (owned by the
  Deployment's current ReplicaSet) and reads their ``/metrics``.
"""
