"""The two images, built on this machine, and a registry standing in for ECR's.

``config`` (folders, the registry's port) → ``podman`` (podman run the way this machine needs,
output condensed into progress) → ``base`` (a Debian + Python base made locally with
debootstrap, where no registry is reachable) → ``build`` (``podman build`` of
Dockerfile.serving / Dockerfile.operator on that base) → ``registry`` (go-containerregistry's
``crane registry serve`` on loopback) → ``push`` (push to it and register the same manifest in
the ECR stand-in); ``retail_tools.cli.image`` mounts it as ``retailctl image``.
"""
