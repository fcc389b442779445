"""The registry's child store: what a reader gets back from the packed bodies it keeps."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from retail_operator.objects import Registry
from retail_operator.rendering import Owner, Target, render_children
from retail_operator.spec import RetailModelSpec

OWNER_UID = "0b5e7c1e-0000-4000-8000-000000000001"


def deployment(uid: str = "d-1", image: str = "repo@sha256:aa") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "prices",
            "namespace": "shop",
            "uid": uid,
            "generation": 3,
            "annotations": {"mlops.retail.io/applied": "digest"},
            "labels": {"app.kubernetes.io/managed-by": "retail-operator"},
            "ownerReferences": [
                {"kind": "RetailModel", "name": "prices", "uid": OWNER_UID, "controller": True}
            ],
            "managedFields": [{"manager": "retail-operator", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {"observedGeneration": 3, "availableReplicas": 2, "conditions": []},
    }


def test_a_child_reads_back_as_its_body_without_managed_fields() -> None:
    registry = Registry()
    body = deployment()
    registry.child_event("Deployment", False, body)

    found = registry.child("shop", "Deployment", "prices")

    expected = copy.deepcopy(body)
    del expected["metadata"]["managedFields"]
    assert found == expected
    with pytest.raises(KeyError):  # the one field the store drops: a reader of it fails
        found["metadata"]["managedFields"]  # noqa: B018


def test_each_read_is_a_body_of_its_own() -> None:
    registry = Registry()
    registry.child_event("Deployment", False, deployment())

    first = registry.child("shop", "Deployment", "prices")
    assert first is not None
    first["spec"]["replicas"] = 9
    first["metadata"]["labels"].clear()

    again = registry.child("shop", "Deployment", "prices")
    assert again is not None
    assert again["spec"]["replicas"] == 2
    assert again["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "retail-operator"}


def test_a_deletion_removes_only_the_object_of_that_uid() -> None:
    registry = Registry()
    registry.child_event("Deployment", False, deployment(uid="d-2", image="repo@sha256:bb"))

    registry.child_event("Deployment", True, deployment(uid="d-1"))  # an older one, gone late
    kept = registry.child("shop", "Deployment", "prices")
    assert kept is not None and kept["metadata"]["uid"] == "d-2"

    registry.child_event("Deployment", True, deployment(uid="d-2"))
    assert registry.child("shop", "Deployment", "prices") is None


def test_a_retail_model_is_held_without_its_managed_fields() -> None:
    registry = Registry()
    body = {
        "metadata": {
            "name": "prices",
            "namespace": "shop",
            "uid": OWNER_UID,
            "generation": 2,
            "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1},
    }

    tracked, _ = registry.observe(body)

    assert "managedFields" not in tracked.body["metadata"]
    assert tracked.body["metadata"]["generation"] == 2
    assert tracked.uid == OWNER_UID


def with_version(body: dict[str, Any], version: int) -> dict[str, Any]:
    body["metadata"]["resourceVersion"] = str(version)
    return body


def watched_then_listed(watched: dict[str, Any], listed: dict[str, Any]) -> Registry:
    """A registry whose watch (or an apply) showed ``watched`` (version 9) before a relist's
    page showed ``listed`` (version 7, of a snapshot taken earlier)."""
    registry = Registry()
    registry.child_event("Deployment", False, with_version(watched, 9))
    assert not registry.child_listed("Deployment", with_version(listed, 7))
    return registry


def test_a_listed_child_never_replaces_a_newer_copy_from_the_watch() -> None:
    registry = watched_then_listed(
        deployment(image="repo@sha256:bb"), deployment(image="repo@sha256:aa")
    )
    kept = registry.child("shop", "Deployment", "prices")
    assert kept is not None
    assert kept["spec"]["template"]["spec"]["containers"][0]["image"] == "repo@sha256:bb"


def test_an_older_page_never_replaces_an_object_re_created_since() -> None:
    """The page shows uid d-1; the watch has shown d-2, made after d-1 was deleted."""
    registry = watched_then_listed(deployment(uid="d-2"), deployment(uid="d-1"))
    kept = registry.child("shop", "Deployment", "prices")
    assert kept is not None and kept["metadata"]["uid"] == "d-2"


def test_a_newer_page_replaces_what_is_held_and_says_so() -> None:
    registry = Registry()
    older, newer = deployment(), deployment()
    older["spec"]["replicas"], newer["spec"]["replicas"] = 1, 3
    registry.child_event("Deployment", False, with_version(older, 7))
    assert registry.child_listed("Deployment", with_version(newer, 9))
    kept = registry.child("shop", "Deployment", "prices")
    assert kept is not None and kept["spec"]["replicas"] == 3


def test_a_child_a_relist_does_not_show_is_forgotten_unless_newer_than_the_list() -> None:
    """A relist (its watch's version expired) is the only news of a delete the watch missed;
    an apply's answer newer than the list's snapshot is kept."""
    registry = Registry()
    registry.child_event("Deployment", False, with_version(deployment(), 7))
    applied = with_version(deployment(), 12)
    applied["metadata"]["name"] = "applied-since"
    registry.child_applied("shop", "Deployment", applied)
    assert registry.child_keys("Deployment", "shop") == {
        ("shop", "Deployment", "prices"),
        ("shop", "Deployment", "applied-since"),
    }
    assert registry.child_keys("Deployment", "elsewhere") == set()
    assert registry.child_keys("Service", None) == set()

    gone = registry.child_vanished(("shop", "Deployment", "prices"), "10")
    assert gone is not None and gone["metadata"]["name"] == "prices"  # its last body
    assert registry.child("shop", "Deployment", "prices") is None
    assert registry.child_vanished(("shop", "Deployment", "applied-since"), "10") is None
    assert registry.child("shop", "Deployment", "applied-since") is not None


def test_a_rendered_child_is_held_at_a_small_part_of_its_json() -> None:
    """What is held for every child of every RetailModel is packed against the documents a
    RetailModel renders: a Deployment as the API server returns it, 3 KB as JSON, is held in
    a few hundred bytes, and reads back whole."""
    spec = RetailModelSpec.from_body(
        {
            "image": {"repository": "111111111111.dkr.ecr.us-east-1.amazonaws.com/y", "tag": "v7"},
            "model": {"s3Uri": "s3://other-bucket/models/discounts/model.ubj"},
            "replicas": 3,
        }
    )
    owner = Owner("discounts", "stores", OWNER_UID)
    target = Target(spec.image.pinned("sha256:" + "e" * 64), spec.model)
    live = next(d for d in render_children(spec, owner, target) if d["kind"] == "Deployment")
    live["metadata"].update(uid="d-9", resourceVersion="918273", generation=2)
    live["status"] = {"observedGeneration": 2, "replicas": 3, "availableReplicas": 3}
    registry = Registry()
    registry.child_event("Deployment", False, live)

    held = registry._children[("stores", "Deployment", live["metadata"]["name"])].document
    as_json = json.dumps(live, separators=(",", ":")).encode()
    assert len(held) * 5 < len(as_json), (len(held), len(as_json))
    assert registry.child("stores", "Deployment", live["metadata"]["name"]) == live
