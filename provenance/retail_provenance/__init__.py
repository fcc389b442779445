"""Provenance: who built an image or a model, checked with signatures. Shared by the operator
(before a rollout), the predictor (before a model is swapped in) and ``retailctl`` (which
signs), so the three can never disagree about a signature.

- ``keys``: trusted public keys (ECDSA P-256, PEM), each known by its fingerprint;
- ``verdict``: what a check concludes (Verified, Unsigned, SignatureInvalid, UntrustedKey);
- ``modelsig``: model signatures in the OpenSSF model-signing format (a Sigstore bundle
  holding a DSSE envelope over an in-toto statement), stored beside the S3 object, made and
  checked by the ``model-signing`` library itself.

Both runtime images install it with its dependencies (``cryptography``, ``model-signing``).
"""
