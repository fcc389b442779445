"""A real local Kubernetes control plane, built from the Go module proxy and run as processes.

``config`` (versions, folders, ports) → ``build`` (binaries, cached by version) → ``pki`` and
``kubeconfig`` (credentials) → ``components`` (command lines) → ``cluster`` (up/down/status,
each component a pid-tracked process group of ``retail_tools.processes``) → ``cli``
(``retailctl cluster``). Tests use it through the fixtures in ``tests/support/cluster.py``.
"""
