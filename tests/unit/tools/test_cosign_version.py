"""The Makefile and retailctl build the same cosign (one cache folder per version)."""

from __future__ import annotations

import re
from pathlib import Path

from retail_tools.images.signing import COSIGN_MODULE, COSIGN_VERSION

MAKEFILE = Path(__file__).resolve().parents[3] / "Makefile"


def test_the_makefile_builds_the_cosign_the_tests_use() -> None:
    text = MAKEFILE.read_text()
    assert re.search(rf"^COSIGN_VERSION := {re.escape(COSIGN_VERSION)}$", text, flags=re.M)
    assert f"go install {COSIGN_MODULE}@$(COSIGN_VERSION)" in text
