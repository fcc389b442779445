"""The nat rule that lets pods reach the loopback registry at the bridge gateway."""

from __future__ import annotations

import pytest

from retail_tools.cluster import network
from retail_tools.cluster.config import NodeLayout


def test_registry_rule_only_takes_the_bridge_to_the_gateway_port() -> None:
    node = NodeLayout()

    (rule,) = network.registry_rules(node, "127.0.0.1:5123")

    assert rule == [
        "-i", "rmnode0", "-d", "10.244.0.1", "-p", "tcp", "--dport", "5123",
        "-j", "DNAT", "--to-destination", "127.0.0.1:5123",
    ]  # fmt: skip
    assert network.registry_url(node, "127.0.0.1:5123") == "http://10.244.0.1:5123"


def test_a_registry_not_on_loopback_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        network.registry_rules(NodeLayout(), "0.0.0.0:5000")


def test_the_chain_is_one_clean_up_removes() -> None:
    assert network.NODE_CHAINS.match(network.REGISTRY_CHAIN)
    assert network.OUR_CHAINS_ONLY.match(network.REGISTRY_CHAIN)
    assert "nat" in network.TABLES
