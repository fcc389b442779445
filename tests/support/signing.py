"""Key pairs and model signatures for tests: real keys, real signatures (model-signing)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from retail_provenance import keys, modelsig


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes

    @classmethod
    def new(cls) -> KeyPair:
        return cls(*keys.generate())

    @property
    def public(self) -> str:
        return self.public_pem.decode()

    @property
    def fingerprint(self) -> str:
        return keys.load_key(self.public_pem).fingerprint

    def sign(self, data: bytes) -> bytes:
        """The model-signing bundle of a model file holding ``data``."""
        with tempfile.TemporaryDirectory() as scratch:
            model, private = Path(scratch) / "model.ubj", Path(scratch) / "key.pem"
            model.write_bytes(data)
            private.write_bytes(self.private_pem)
            return modelsig.sign(model, private)
