"""RetailModel's Kubernetes operator: the runtime only.

The entry point (``runner``, ``python -m retail_operator``) starts kopf; its handlers
(``handlers``) and scheduling (``scheduler``) drive one reconcile (``reconcile``), which relies
on pure decisions and rendering (``rollout``, ``scanpolicy``, ``conditions``, ``rendering``)
and on thin adapters for AWS and Kubernetes (``aws``, ``kube``). What the pods are told crosses
through ``retail_contract``; nothing here imports the predictor or the tooling.
"""
