"""A real local Kubernetes control plane, built from the Go module proxy and run as processes.

``config`` (versions, folders, ports) → ``build`` (binaries, cached by version) → ``pki`` and
``kubeconfig`` (credentials) → ``components`` (command lines) → ``processes`` (pid-tracked
process groups) → ``cluster`` (up/down/status) → ``cli`` (``retailctl cluster``). Tests use it
through the fixtures in ``tests/support/cluster.py``.
"""
