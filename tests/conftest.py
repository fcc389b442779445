"""Fixtures shared across the suite live in tests/support; this registers them."""

pytest_plugins = [
    "tests.support.aws",
    "tests.support.cluster",
    "tests.support.real_node",
    "tests.support.faults",
]
