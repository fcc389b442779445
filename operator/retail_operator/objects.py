"""Everything this replica holds about each RetailModel and its children, in one place.

``Registry`` is fed by the watch streams: the latest body of every RetailModel (a ``Tracked``,
from its informer, ``retailmodelwatch``), and the latest body of every child the operator labels as
its own (from its own lists and watches, ``childwatch``), indexed by namespace, kind and name.
A child counts as a RetailModel's only if its controller owner reference names that
RetailModel's uid (``Tracked.owned``): a same-named object someone else made is never
mistaken for one.

A ``Tracked`` also holds what this replica did: the status it wrote last (``written``), what
it applied to the children last (``applied``, which the cheap child-event path puts back when
a child drifts), the canary analysis under way (``window``) and the drift windows
(``drift``). None of it is read from the status, and all of it is dropped when this replica
starts leading again (``reset``): a new leader cannot know what happened meanwhile, and finds
out from the live objects.

What is held for every RetailModel and read only now and then is kept packed, each read
decoding a copy of its own: the children's bodies, the documents applied, the status written
and the status seen. As Python dicts these were most of the operator's memory at 10,000
RetailModels (about 30 KB per RetailModel for the documents and the status written alone,
9 KB as JSON: bench/notes.md). Packed is compact JSON compressed with zlib against a preset
dictionary: the children one RetailModel renders and a status, so what every RetailModel's
documents share (the keys, the labels, the probes, the security context) costs nothing, and a
Deployment of 3 KB as JSON is about 200 bytes. Packing one costs about 15 µs more than the
JSON alone, unpacking about 5 µs (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import functools
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from retail_operator.canary.machine import Window
from retail_operator.drift.watch import DriftWatch
from retail_operator.policy import Policy
from retail_operator.rendering import KIND, Manifest, Owner, Target, render_children
from retail_operator.spec import RetailModelSpec
from retail_operator.status import RetailModelStatus

Key = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str, str]  # (namespace, kind, name)


class Wants(Protocol):
    """What a watch event can ask of the scheduler for a RetailModel."""

    def hurry(self, key: Key) -> None: ...

    def schedule(self, key: Key, delay: float) -> None: ...

    def forget(self, key: Key) -> None: ...


class Due(Enum):
    """Why a watch event makes a RetailModel due."""

    CHANGED = "changed"  # its spec is ahead of its status (or it has none yet): hurry
    UNSEEN = "unseen"  # new to this replica, its status current (a restart's look): no hurry


def _controller(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for reference in body.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("kind") == KIND and reference.get("controller"):
            return dict(reference)
    return None


def controller_uid(body: Mapping[str, Any]) -> str:
    """The uid of the RetailModel that controls ``body``, or "" if none does."""
    owner = _controller(body)
    return str(owner.get("uid", "")) if owner else ""


def _trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """A child's body without its managedFields: the bulk of it, and never read here."""
    metadata = {k: v for k, v in body.get("metadata", {}).items() if k != "managedFields"}
    return {**body, "metadata": metadata}


@dataclass(frozen=True)
class _Packed:
    """A child's body packed (``_pack``), decoded on each read: a few hundred bytes where the
    same body as Python dicts and strings took a hundred times as much, held for every child
    of every RetailModel (bench/RESULTS.md, operator memory). A read gets a body of its own."""

    uid: str | None
    resource_version: int
    document: bytes

    @classmethod
    def pack(cls, body: Mapping[str, Any]) -> _Packed:
        trimmed = _trimmed(body)
        uid = trimmed["metadata"].get("uid")
        return cls(uid, _resource_version(trimmed), _pack(trimmed))

    def body(self) -> dict[str, Any]:
        found: dict[str, Any] = _unpack(self.document)
        return found


# A status as the operator writes one, for the dictionary (its values do not matter).
_STATUS_SAMPLE: dict[str, Any] = {
    "observedGeneration": 1,
    "phase": "Ready",
    "image": {
        "tag": "v1",
        "digest": "sha256:" + "0" * 64,
        "scanStatus": "COMPLETE",
        "findingCounts": {"CRITICAL": 0, "HIGH": 0},
        "scanCompletedAt": "2026-01-01T00:00:00Z",
    },
    "model": {"s3Uri": "s3://models/prices/model.ubj", "etag": '"0"', "versionId": ""},
    "conditions": [
        {
            "type": kind,
            "status": "True",
            "reason": "",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
        for kind in ("ImageScanPassed", "ModelAvailable", "Available", "Ready")
    ],
}


@functools.cache
def _dictionary() -> bytes:
    """zlib's preset dictionary: the documents one RetailModel renders and a status, as JSON.
    The same for the whole process, which is all it needs to be."""
    spec = RetailModelSpec.from_body(
        {
            "image": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x", "tag": "v1"},
            "model": {"s3Uri": "s3://models/prices/model.ubj"},
        }
    )
    owner = Owner("prices", "shop", "00000000-0000-0000-0000-000000000000")
    target = Target(spec.image.pinned("sha256:" + "0" * 64), spec.model)
    documents = [*render_children(spec, owner, target), _STATUS_SAMPLE]
    return b"".join(json.dumps(d, separators=(",", ":")).encode() for d in documents)


def _pack(document: Mapping[str, Any]) -> bytes:
    packer = zlib.compressobj(1, zdict=_dictionary())
    return packer.compress(json.dumps(document, separators=(",", ":")).encode()) + packer.flush()


def _unpack(packed: bytes) -> Any:
    return json.loads(zlib.decompressobj(zdict=_dictionary()).decompress(packed))


@dataclass(frozen=True)
class Applied:
    """What this replica applied to a RetailModel's stable children last. The documents are
    kept packed (``Applied.of``, ``_pack``), a small part of their size as Python dicts:
    held for every RetailModel, as dicts they were the largest part of the operator's memory
    at 10,000 RetailModels. ``manifest`` decodes a copy of its own."""

    target: Target
    documents: Mapping[tuple[str, str], bytes]  # (kind, name) → the document applied, packed
    # The Deployment's generation when this replica last changed it (a scale by the
    # autoscaler bumps the generation too, and is no new template to wait for).
    deployment_generation: int = 0

    @classmethod
    def of(
        cls,
        target: Target,
        manifests: Mapping[tuple[str, str], Manifest],
        deployment_generation: int = 0,
    ) -> Applied:
        packed = {key: _pack(manifest) for key, manifest in manifests.items()}
        return cls(target, packed, deployment_generation)

    def manifest(self, kind: str, name: str) -> Manifest | None:
        document = self.documents.get((kind, name))
        if document is None:
            return None
        decoded: Manifest = _unpack(document)
        return decoded


@dataclass
class Tracked:
    key: Key
    body: dict[str, Any]
    registry: Registry
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _status: bytes = b""  # the status as the watch last showed it, packed (``status``)
    _written: bytes | None = None  # the status written last, packed (``written``)
    applied: Applied | None = None
    window: Window | None = None
    drift: DriftWatch | None = None  # the drift windows under way (spec.monitoring.drift)
    model_seen: str = ""  # the model object's version the last reconcile saw (ModelWatch)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"].get("uid", ""))

    @property
    def leaving(self) -> bool:
        """Deleted, and held by a finalizer (someone's, or the garbage collector's foreground
        deletion removing its children first) until it is gone."""
        return bool(self.body["metadata"].get("deletionTimestamp"))

    @property
    def status(self) -> dict[str, Any]:
        """The status as the watch last showed it (a copy of its own), kept apart from
        ``body`` (metadata and spec), packed: read only by a replica that has written none."""
        if not self._status:
            return {}
        status: dict[str, Any] = _unpack(self._status)
        return status

    @status.setter
    def status(self, status: Mapping[str, Any]) -> None:
        self._status = _pack(status)

    @property
    def written(self) -> RetailModelStatus | None:
        """The status this replica wrote last (a copy of its own), or None. Kept packed, like
        ``Applied``'s documents: held for every RetailModel."""
        if self._written is None:
            return None
        status: RetailModelStatus = _unpack(self._written)
        return status

    @written.setter
    def written(self, status: RetailModelStatus | None) -> None:
        self._written = None if status is None else _pack(status)

    def owned(self, kind: str, name: str) -> dict[str, Any] | None:
        """The live child ``kind``/``name`` as last seen, only if this RetailModel owns it."""
        child = self.registry.child(self.key[0], kind, name)
        if child is None or not self.uid or controller_uid(child) != self.uid:
            return None
        return child

    def reset(self) -> None:
        self.written = None
        self.applied = None
        self.window = None
        self.drift = None
        self.model_seen = ""


class Registry:
    def __init__(self) -> None:
        self._objects: dict[Key, Tracked] = {}
        self._children: dict[ChildKey, _Packed] = {}
        self.policies: dict[str, Policy] = {}
        self.namespaces: dict[str, dict[str, str]] = {}  # namespace → its labels
        # policy name → the RetailModels outside it at their last reconcile
        self.violating: dict[str, set[Key]] = {}

    def in_namespace(self, namespace: str) -> list[Tracked]:
        return [t for t in self._objects.values() if t.key[0] == namespace]

    def record_violations(self, key: Key, policies: set[str]) -> None:
        for name, keys in self.violating.items():
            if name not in policies:
                keys.discard(key)
        for name in policies:
            self.violating.setdefault(name, set()).add(key)

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Any:
        return iter(list(self._objects.values()))

    def get(self, key: Key) -> Tracked | None:
        return self._objects.get(key)

    def observe(self, body: Mapping[str, Any]) -> tuple[Tracked, Due | None]:
        """A RetailModel's watch event: remember its body. ``Due.CHANGED`` when its spec moved past
        the generation its status speaks for (a new RetailModel's has none), ``Due.UNSEEN`` when it
        is new to this replica but its status is current, else None."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        known = self._objects.get(key)
        copy = {
            "metadata": {k: v for k, v in meta.items() if k != "managedFields"},  # never read
            "spec": dict(body.get("spec") or {}),
        }
        if known is not None and _resource_version(known.body) > _resource_version(copy) > 0:
            return known, None  # an older event than what we already hold
        status = body.get("status") or {}
        changed = status.get("observedGeneration") != meta.get("generation", 0)
        if known is None or known.uid != copy["metadata"].get("uid"):
            if known is not None:  # deleted and made again since: its violations were the old's
                self.record_violations(key, set())
            tracked = Tracked(key, copy, self)  # new, or deleted and re-created since
            tracked.status = status
            self._objects[key] = tracked
            return tracked, Due.CHANGED if changed else Due.UNSEEN
        known.body = copy
        known.status = status
        return known, Due.CHANGED if changed else None

    def keys(self, namespace: str | None) -> set[Key]:
        """The RetailModels held, in ``namespace`` (None: in every namespace)."""
        return {key for key in self._objects if namespace is None or key[0] == namespace}

    def vanished(self, key: Key, version: str) -> bool:
        """A list of ``version`` did not show this RetailModel: forgotten unless what is held
        is newer than the list (an event since). Whether it was."""
        known = self._objects.get(key)
        if known is None or _resource_version(known.body) > _version_number(version):
            return False
        self.forget(key)
        return True

    def forget(self, key: Key) -> Tracked | None:
        self.record_violations(key, set())
        return self._objects.pop(key, None)

    def reset(self) -> None:
        for tracked in self._objects.values():
            tracked.reset()

    def child(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """The child as its watch last showed it (without managedFields): a copy of its own."""
        packed = self._children.get((namespace, kind, name))
        return packed.body() if packed is not None else None

    def newest(self, namespace: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (an apply's answer), or the copy held of that same object when its watch
        has shown a newer one since (without managedFields)."""
        packed = self._children.get((namespace, kind, body["metadata"]["name"]))
        if (
            packed is None
            or packed.uid != body["metadata"].get("uid")
            or packed.resource_version <= _resource_version(body)
        ):
            return body
        return packed.body()

    def child_applied(self, namespace: str, kind: str, body: Mapping[str, Any]) -> None:
        """An apply's answer: the child as it is now, before its watch event comes. Filed so
        that a reconcile meanwhile neither reads it again nor applies it again (at 2,000
        RetailModels, 1,450 Services were read and applied a second time that way)."""
        self._remember((namespace, kind, body["metadata"]["name"]), body)

    def _remember(self, key: ChildKey, body: Mapping[str, Any]) -> None:
        """Keep ``body`` unless a newer copy of the same object is held already (an apply's
        answer is often ahead of the watch)."""
        known, packed = self._children.get(key), _Packed.pack(body)
        if (
            known is not None
            and known.uid == packed.uid
            and known.resource_version > packed.resource_version
        ):
            return
        self._children[key] = packed

    def child_listed(self, kind: str, body: Mapping[str, Any]) -> bool:
        """A child from a list page (``childwatch``): filed unless a newer copy of that name
        is held, whatever its uid (an apply's answer, or one re-created since the page was
        read). Whether the registry changed."""
        meta = body["metadata"]
        key, packed = (meta["namespace"], kind, meta["name"]), _Packed.pack(body)
        known = self._children.get(key)
        if known is not None and known.resource_version >= packed.resource_version:
            return False
        self._children[key] = packed
        return True

    def child_keys(self, kind: str, namespace: str | None) -> set[ChildKey]:
        """The children of ``kind`` held, in ``namespace`` (None: in every namespace)."""
        return {
            key
            for key in self._children
            if key[1] == kind and (namespace is None or key[0] == namespace)
        }

    def child_vanished(self, key: ChildKey, version: str) -> dict[str, Any] | None:
        """A list of ``version`` did not show this child: forgotten (and its last body
        returned) unless what is held is newer than the list (an apply's answer since)."""
        known = self._children.get(key)
        if known is None or known.resource_version > _version_number(version):
            return None
        del self._children[key]
        return known.body()

    def child_event(self, kind: str, deleted: bool, body: Mapping[str, Any]) -> None:
        """File a child's watch event."""
        meta = body["metadata"]
        key = (meta["namespace"], kind, meta["name"])
        if deleted:
            known = self._children.get(key)
            if known is not None and known.uid == meta.get("uid"):
                del self._children[key]
        else:
            self._remember(key, body)

    def owner(self, child: Mapping[str, Any]) -> Tracked | None:
        """The RetailModel known here whose uid the child's controller reference names."""
        meta, reference = child["metadata"], _controller(child)
        if reference is None:
            return None
        tracked = self._objects.get((meta["namespace"], str(reference.get("name", ""))))
        return tracked if tracked is not None and tracked.uid == reference.get("uid") else None


def _resource_version(body: Mapping[str, Any]) -> int:
    return _version_number(body.get("metadata", {}).get("resourceVersion", 0))


def _version_number(version: Any) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        return 0
