"""The child objects of a RetailModel, rendered as server-side-apply documents. Pure.

Every document carries only the fields the operator owns, so applying it with one field
manager and ``force`` reverts hand edits to those fields and leaves everything else (other
controllers' fields, Argo CD's annotations) alone. Children are labelled with
``mlops.retail.io/retailmodel`` and never with ``app.kubernetes.io/instance``, which Argo CD
uses for its own tracking.

A change of model changes only the ConfigMap, which the pods read as a mounted file on every
poll: the pod template does not change, so no pod restarts; the predictor hot-reloads. The
kubelet refreshes a mounted ConfigMap only when it syncs the pod, which it does on its own
about once a minute (21–87 s was seen); a change of the pod's annotations makes it sync at
once, so the operator sets ``SOURCE_ANNOTATION`` on the running pods (``source_annotation``).

With a canary rollout (``spec.rollout.strategy: Canary``) a second Deployment,
``<name>-canary``, runs the same image with its own ConfigMap, ``<name>-model-canary``,
pinned to the candidate model version. Its pods carry the labels the Service selects, so
traffic splits between the groups in proportion to their pods; ``TRACK_LABEL`` tells them
apart (``stable`` pods get it only under the Canary strategy, so an Immediate RetailModel's
pod template stays what it always was). The canary's pod template carries
``SOURCE_ANNOTATION`` itself: a new candidate is a new template, so new pods serve it, and no
pod of the last candidate is ever counted for this one. The stable ConfigMap carries the
canary's memory (``MEMORY_ANNOTATION``, written by ``canary.machine``), so that it survives a
lost status.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from retail_contract import env, metrics
from retail_contract.source import MODEL_SOURCE_DIR, MODEL_SOURCE_FILENAME, MODEL_SOURCE_PATH
from retail_operator.spec import ModelSpec, RetailModelSpec, Spread

GROUP = "mlops.retail.io"
VERSION = "v1alpha1"
PLURAL = "retailmodels"
KIND = "RetailModel"
POLICY_PLURAL = "retailmodelpolicies"
OWNER_LABEL = f"{GROUP}/retailmodel"
TRACK_LABEL = f"{GROUP}/track"
MANAGED_BY = "retail-operator"
SOURCE_ANNOTATION = f"{GROUP}/model-source"  # on running pods: a digest of their ConfigMap's
MEMORY_ANNOTATION = f"{GROUP}/rollout"  # on the stable ConfigMap: what the canary remembers
APPLIED_ANNOTATION = f"{GROUP}/applied"  # on every child: a digest of the document applied
PREDICTOR_PORT = 8080
# Graceful shutdown, so a rolling update fails no request: on deletion the pod leaves the
# Service's endpoints while the preStop sleep holds SIGTERM back (kube-proxy needs a moment to
# stop sending it connections); then uvicorn finishes in-flight requests (up to 10 s,
# retail_serving.server) and exits, well inside the grace period.
PRESTOP_SLEEP_SECONDS = 5
TERMINATION_GRACE_SECONDS = 30

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The RetailModel a set of children belongs to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Target:
    """What the children should run: an image pinned by digest and a model source (and the
    largest model the pods may load, when a RetailModelPolicy sets one)."""

    image: str
    model: ModelSpec
    max_model_bytes: int | None = None


@dataclass(frozen=True)
class Track:
    """One group of predictor pods: the stable Deployment or the canary beside it."""

    name: str  # "" for the stable group under the Immediate strategy (no track label)
    suffix: str  # of the Deployment's and the ConfigMap's names

    def deployment_name(self, owner: Owner) -> str:
        return owner.name + self.suffix

    def config_map_name(self, owner: Owner) -> str:
        return f"{owner.name}-model{self.suffix}"

    def pod_labels(self, owner: Owner) -> dict[str, str]:
        return {**labels(owner), TRACK_LABEL: self.name} if self.name else labels(owner)

    def selector(self, owner: Owner) -> dict[str, str]:
        # The stable Deployment's selector predates tracks and is immutable: it stays as it was.
        return {**selector(owner), TRACK_LABEL: self.name} if self.suffix else selector(owner)


UNTRACKED = Track("", "")
STABLE_TRACK = Track("stable", "")
CANARY_TRACK = Track("canary", "-canary")


def labels(owner: Owner) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "retail-predictor",
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABEL: owner.name,
    }


def selector(owner: Owner) -> dict[str, str]:
    return {OWNER_LABEL: owner.name}


def pod_selector(owner: Owner, *, canary_pods: bool) -> str:
    """A label selector for the canary pods, or for all the others (the stable ones)."""
    operator = "=" if canary_pods else "!="
    return f"{OWNER_LABEL}={owner.name},{TRACK_LABEL}{operator}{CANARY_TRACK.name}"


def config_map_name(owner: Owner) -> str:
    return UNTRACKED.config_map_name(owner)


def source_annotation(target: Target) -> dict[str, str]:
    """The annotation that tells the stable pods' kubelet their ConfigMap now names
    ``target``'s model: a digest of the document, so it changes exactly when the document
    does."""
    document = target.model.source().to_json()
    return {SOURCE_ANNOTATION: hashlib.sha256(document.encode()).hexdigest()[:16]}


def stable_track(spec: RetailModelSpec) -> Track:
    return STABLE_TRACK if spec.rollout.canary_enabled else UNTRACKED


def _metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner),
        "ownerReferences": [owner.reference()],
    }


def render_config_map(
    owner: Owner, target: Target, track: Track = UNTRACKED, memory: str | None = None
) -> Manifest:
    metadata = _metadata(owner, track.config_map_name(owner))
    if memory is not None:
        metadata["annotations"] = {MEMORY_ANNOTATION: memory}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {MODEL_SOURCE_FILENAME: target.model.source().to_json()},
    }


def _container(spec: RetailModelSpec, owner: Owner, target: Target) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "predictor",
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [
            {"name": "http", "containerPort": PREDICTOR_PORT, "protocol": "TCP"},
            # /metrics and /model/info: read by pod IP (the canary, Prometheus), never through
            # the Service, which targets "http" only.
            {"name": "metrics", "containerPort": metrics.METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": env.MODEL_SOURCE_FILE, "value": MODEL_SOURCE_PATH},
            {"name": env.MODEL_NAME, "value": owner.name},
            {"name": env.RELOAD_INTERVAL_SECONDS, "value": str(spec.reload_interval_seconds)},
            {"name": "TMPDIR", "value": "/tmp"},
            *(
                [{"name": env.MAX_MODEL_BYTES, "value": str(target.max_model_bytes)}]
                if target.max_model_bytes
                else []
            ),
            # Told once keys are trusted, so a model-source document written without keys
            # cannot turn the check off: the pods then refuse every model.
            *(
                [{"name": env.REQUIRE_MODEL_SIGNATURE, "value": "true"}]
                if target.model.trusted_keys
                else []
            ),
        ],
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "model-source", "mountPath": MODEL_SOURCE_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if spec.env_from:
        container["envFrom"] = [source.manifest() for source in spec.env_from]
    if spec.resources:
        container["resources"] = {
            kind: {name: str(quantity) for name, quantity in values.items()}
            for kind, values in spec.resources.items()
        }
    return container


_TOPOLOGY_KEYS = (("zone", "topology.kubernetes.io/zone"), ("node", "kubernetes.io/hostname"))


def _spread(spec: RetailModelSpec, track: Track, owner: Owner) -> list[dict[str, Any]]:
    """Replicas spread across zones and nodes (soft by default): a zone or a node lost takes
    as few of them as the cluster allows. Counted per ReplicaSet (the pod-template hash), so a
    rolling update's new pods spread among themselves."""
    constraints = []
    for field, key in _TOPOLOGY_KEYS:
        how: Spread = getattr(spec.topology_spread, field)
        if how is Spread.OFF:
            continue
        constraints.append(
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "DoNotSchedule" if how is Spread.HARD else "ScheduleAnyway",
                "labelSelector": {"matchLabels": track.pod_labels(owner)},
                "matchLabelKeys": ["pod-template-hash"],
            }
        )
    return constraints


def render_deployment(
    spec: RetailModelSpec,
    owner: Owner,
    target: Target,
    track: Track | None = None,
    *,
    replicas: int | None = -1,
) -> Manifest:
    """The stable Deployment (``track`` None: as the spec's strategy implies) or the canary.

    ``replicas`` None leaves the count out of the document (an autoscaler owns it); -1 takes
    it from the spec."""
    track = track or stable_track(spec)
    if replicas == -1:
        replicas = spec.rollout.canary.replicas if track is CANARY_TRACK else spec.replicas
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, owner, target)],
        "volumes": [
            {"name": "model-source", "configMap": {"name": track.config_map_name(owner)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [t.manifest() for t in spec.tolerations]
    if spread := _spread(spec, track, owner):
        pod_spec["topologySpreadConstraints"] = spread
    deployment_spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, track.deployment_name(owner)),
        "spec": {
            **deployment_spec,
            "selector": {"matchLabels": track.selector(owner)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": track.pod_labels(owner),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(metrics.METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                        # The canary's pods are the candidate's: a new candidate, new pods.
                        **(source_annotation(target) if track is CANARY_TRACK else {}),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def render_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, owner.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_disruption_budget(spec: RetailModelSpec, owner: Owner, track: Track) -> Manifest | None:
    """The group's PodDisruptionBudget, when it has two pods or more and budgets are on: a
    node drain (an EKS node group upgrade) evicts at most ``maxUnavailable`` of them at once.
    Pods that are not ready may always be evicted, so a crash-looping pod never blocks a drain."""
    if track is CANARY_TRACK:
        fewest = spec.rollout.canary.replicas
    else:
        fewest = spec.minimum_replicas
    if not spec.disruption.enabled or fewest < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, track.deployment_name(owner)),
        "spec": {
            "maxUnavailable": spec.disruption.max_unavailable,
            "selector": {"matchLabels": track.pod_labels(owner)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def render_autoscaler(spec: RetailModelSpec, owner: Owner) -> Manifest | None:
    """The stable Deployment's HorizontalPodAutoscaler (autoscaling/v2, CPU utilisation)."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner, owner.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                }
            },
        },
    }


# Children a RetailModel has only with some specs: removed (if it owns them) when not rendered.
OPTIONAL_KINDS = ("PodDisruptionBudget", "HorizontalPodAutoscaler")


def render_children(
    spec: RetailModelSpec,
    owner: Owner,
    target: Target,
    memory: str | None = None,
    *,
    replicas: int | None = -1,
) -> list[Manifest]:
    """Every child, in the order to apply them (the ConfigMap before the pods that mount it):
    the ConfigMap, the Deployment (``replicas`` as in ``render_deployment``), the Service, and
    the disruption budget and the autoscaler when the spec asks for them."""
    optional = (
        render_disruption_budget(spec, owner, stable_track(spec)),
        render_autoscaler(spec, owner),
    )
    return [
        render_config_map(owner, target, stable_track(spec), memory),
        render_deployment(spec, owner, target, replicas=replicas),
        render_service(owner),
        *(manifest for manifest in optional if manifest is not None),
    ]


def render_canary(spec: RetailModelSpec, owner: Owner, target: Target) -> list[Manifest]:
    """The canary's ConfigMap (pinned to the candidate), Deployment and, with two pods or more,
    disruption budget, in the order to apply."""
    budget = render_disruption_budget(spec, owner, CANARY_TRACK)
    return [
        render_config_map(owner, target, CANARY_TRACK),
        render_deployment(spec, owner, target, CANARY_TRACK),
        *([budget] if budget else []),
    ]


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field in ``desired`` has the same value in ``live`` (lists compared by
    position). Used to skip an apply when a watched child still matches what we render."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and is_subset(value, live[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def stamped(manifest: Manifest) -> Manifest:
    """``manifest`` carrying ``APPLIED_ANNOTATION``: a digest of the document itself (any
    stamp it had left out), so that a live child tells which document it was applied from."""
    metadata = dict(manifest["metadata"])
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != APPLIED_ANNOTATION
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    bare = {**manifest, "metadata": metadata}
    text = json.dumps(bare, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return {
        **bare,
        "metadata": {**metadata, "annotations": {**annotations, APPLIED_ANNOTATION: digest}},
    }


def unchanged(document: Manifest, live: Any) -> bool:
    """Whether applying ``document`` (``stamped``) over ``live`` would change nothing: the live
    child was applied from this very document (so no field the operator has stopped rendering
    lingers) and every field of it still holds its value (nobody edited one since)."""
    return live is not None and is_subset(document, live)
