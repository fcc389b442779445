"""The model registry: holds the one model reference requests use, and reloads it safely.

``poll`` runs one step of hot reload: HEAD the object; if ``reload.plan`` says
so, download (an object over the model size limit, ``memory.ModelLimit``, is refused first,
on its HEAD; a JSON one over a quarter of it once its first bytes show it is JSON) → verify
sha256 → check the signature, when the pod requires signed models or the model-source
document names trusted keys (``retail_provenance.modelsig``, before XGBoost parses a byte) →
load (which smoke-tests) → swap the reference. The swap is a
single attribute assignment, so a request sees either the old model or the new one, never a
mix, and a request keeps the model it picked up for as long as it runs. Nothing is unloaded
explicitly: the old model is freed when its last in-flight request lets go of it. Any failure
leaves the current model in place. ``poll`` blocks (network, parsing); the app runs it in a
worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from retail_contract.source import ModelSource
from retail_provenance import modelsig
from retail_provenance.keys import load_keys
from retail_provenance.verdict import Verdict
from retail_serving import artifact, checker, reload
from retail_serving.errors import ModelRejected, ModelTooLarge, ServingError, SignatureRefused
from retail_serving.memory import DEFAULT_LIMIT, ModelLimit
from retail_serving.metrics import ServingMetrics
from retail_serving.model import Model
from retail_serving.modelbytes import ModelBytes
from retail_serving.storage import ObjectStore, open_store, too_large
from retail_serving.versions import ObjectVersion

log = logging.getLogger("retail_serving.reload")


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A model together with where it came from and when it was loaded."""

    model: Model
    source_uri: str
    origin: ObjectVersion
    loaded_at: datetime
    signed_by: str = ""  # the trusted key's fingerprint, when the signature was checked


class ModelRegistry:
    def __init__(
        self,
        locate: Callable[[], ModelSource],
        metrics: ServingMetrics,
        *,
        connect: Callable[[ModelSource], ObjectStore] = open_store,
        require_recorded_sha256: bool = True,
        require_signature: bool = False,
        nthread: int = 1,
        model_limit: ModelLimit = DEFAULT_LIMIT,
    ) -> None:
        self.locate = locate  # asked on every poll: the location may change at run time
        self.connect = connect
        self.metrics = metrics
        self.require_recorded_sha256 = require_recorded_sha256
        self.require_signature = require_signature
        self.nthread = nthread
        self.model_limit = model_limit
        self.current: ServedModel | None = None
        self.state = reload.ReloadState()
        self.last_error: str | None = None  # why the newest object version is not served
        self._poll_lock = threading.Lock()  # one poll at a time, whoever calls it
        self._store: tuple[tuple[str, str | None], ObjectStore] | None = None

    def _store_for(self, location: ModelSource) -> ObjectStore:
        """One store (and S3 client) per URI and version pin, kept across polls."""
        key = (location.uri, location.version_id)
        if self._store is None or self._store[0] != key:
            self._store = (key, self.connect(location))
        return self._store[1]

    def _observe(self) -> ObjectVersion:
        location = self.locate()
        return replace(self._store_for(location).head(), location=location)

    @property
    def ready(self) -> bool:
        return self.current is not None

    def poll(self) -> bool:
        """One reload step; True when a new model was swapped in."""
        with self._poll_lock:
            try:
                observed = self._observe()
            except ServingError as error:
                self.metrics.poll_errors.inc()
                self.state, news = reload.after_head(self.state, ok=False)
                if news:
                    log.warning("cannot check the model object: %s", error)
                return False
            self.state, news = reload.after_head(self.state, ok=True)
            if news:
                log.info("model object reachable again")
            if reload.plan(self.state, observed) is reload.Action.KEEP:
                return False
            return self._load(observed)

    def _load(self, observed: ObjectVersion) -> bool:
        assert observed.location is not None  # set by _observe
        uri = observed.location.uri
        try:
            store = self._store_for(observed.location)
            limit = self.model_limit.bytes
            if observed.size is not None and observed.size > limit:
                raise too_large(uri, observed.size, limit)
            # The bytes are held once, and only until the model is built from them.
            with store.fetch(observed, limit) as data:
                # XGBoost's JSON parse takes about five times the memory of its UBJSON one.
                if data.size > self.model_limit.json_bytes and checker.is_json(data.view):
                    raise too_large(f"{uri} (JSON)", data.size, self.model_limit.json_bytes)
                digest = artifact.sha256_hex(data.view)
                reload.verify(
                    digest,
                    observed,
                    require_recorded=self.require_recorded_sha256 and store.records_sha256,
                )
                signed = self._check_signature(store, observed.location, data, digest)
                model = artifact.load(data, nthread=self.nthread, sha256=digest)
        except Exception as raised:  # whatever goes wrong, the current model keeps serving
            error = (
                raised
                if isinstance(raised, ServingError)
                else ModelRejected(f"unexpected error loading the model: {raised!r}")
            )
            if isinstance(error, ModelTooLarge):  # which rule set the limit
                error = ModelTooLarge(f"{error}, {self.model_limit.rule}")
            self.metrics.reload_failed(error.reason)
            self.last_error = f"{error.reason}: {error}"
            self.state, news = reload.after_failure(self.state, observed, error)
            if news:
                log.error(
                    "not loading %s (etag=%s version=%s): %s; still serving %s",
                    uri,
                    observed.etag,
                    observed.version_id,
                    error,
                    self.current.model.version if self.current else "nothing",
                )
            return False
        signer = signed.key if signed is not None else ""
        served = ServedModel(model, uri, observed, datetime.now(UTC), signer)
        previous = self.current
        self.current = served  # the swap: one reference, atomically replaced
        self.state = reload.after_success(self.state, observed)
        self.last_error = None
        self.metrics.reloads.labels("ok").inc()
        self.metrics.model_swapped(model.version, model.sha256, time.time(), model.reference)
        log.info(
            "serving model %s (sha256 %s%s) from %s, replacing %s",
            model.version,
            model.sha256[:12],
            f", {signed.message}" if signed is not None else "",
            uri,
            previous.model.version if previous else "nothing",
        )
        return True

    def _check_signature(
        self, store: ObjectStore, location: ModelSource, data: ModelBytes, digest: str
    ) -> Verdict | None:
        """The signature's verdict when one is required (``SignatureRefused`` unless a trusted
        key signed exactly these bytes); ``None`` when no signature is asked for."""
        if not (self.require_signature or location.trusted_keys):
            return None
        started = time.perf_counter()
        try:
            keys = load_keys(location.trusted_keys)
        except ValueError as error:
            raise SignatureRefused(f"the trusted keys cannot be read: {error}") from None
        if not keys:
            raise SignatureRefused("signed models are required, but no key is trusted")
        bundle = store.fetch_signature(digest)
        # The library reads the sealed memory file the bytes are in, through its descriptor.
        found = modelsig.verify(Path(f"/proc/self/fd/{data.fd}"), bundle, keys)
        self.metrics.signature_checked(found.outcome, time.perf_counter() - started)
        if not found.verified:
            raise SignatureRefused(f"{found.outcome}: {found.message}")
        return found
