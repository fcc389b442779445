"""RetailModel's Kubernetes operator.

The kopf handlers (``handlers``) drive the reconcile logic (``reconcile``), which relies on pure
decisions and rendering (``scanpolicy``, ``conditions``, ``rendering``) and on thin adapters for
AWS and Kubernetes (``aws``, ``kube``). ``localcluster`` builds and runs a real local control plane
for the demo and the tests; ``cli`` is the ``retailctl`` command that fronts everything.
"""
