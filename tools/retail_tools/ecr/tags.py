"""Image tag naming from git branches: one tag per build, sortable and lifecycle-friendly.

``main`` builds are releases (``vYYYYMMDD-<sha7>``), ``develop`` builds are ``dev-<sha7>``,
``feature/x`` builds are ``feature-x-<sha7>``; any other branch becomes its sanitised name plus
the short SHA. The prefixes ``v``, ``dev`` and ``feature`` are the ones the ECR lifecycle rules in
deploy/ecr/repositories.yaml keep, so naming and retention stay in step.
"""

from __future__ import annotations

import re
from datetime import date

# A tag that both Docker and ECR accept: a word character first, then word characters, dots
# and dashes, at most 128 characters in all.
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_TAG_LENGTH = 128
SHORT_SHA_LENGTH = 7

_SHA_PATTERN = re.compile(r"[0-9a-f]{7,64}")
_NOT_TAG_CHARACTERS = re.compile(r"[^a-z0-9_.-]+")
_BRANCH_PREFIX = "refs/heads/"


class TagNameError(ValueError):
    """A branch or commit SHA from which no valid image tag can be made."""


def image_tag(branch: str, sha: str, today: date) -> str:
    """The image tag for a build of ``sha`` on ``branch``; ``today`` dates release tags."""
    short_sha = _short_sha(sha)
    name = branch.strip().removeprefix(_BRANCH_PREFIX)
    if not name:
        raise TagNameError("branch name is empty")
    if name == "main":
        return f"v{today:%Y%m%d}-{short_sha}"
    if name == "develop":
        return f"dev-{short_sha}"
    slug = _slug(name)
    if not slug:
        raise TagNameError(f"branch {branch!r} has no characters usable in an image tag")
    # Keep the SHA whole and shorten the branch part if the tag would be too long.
    room = MAX_TAG_LENGTH - len(short_sha) - 1
    tag = f"{slug[:room].rstrip('.-')}-{short_sha}"
    if not TAG_PATTERN.fullmatch(tag):
        raise TagNameError(f"branch {branch!r} gives an invalid image tag {tag!r}")
    return tag


def _short_sha(sha: str) -> str:
    normalised = sha.strip().lower()
    if not _SHA_PATTERN.fullmatch(normalised):
        raise TagNameError(f"commit SHA {sha!r} is not 7 to 64 hexadecimal characters")
    return normalised[:SHORT_SHA_LENGTH]


def _slug(branch: str) -> str:
    """``feature/Add Thing`` → ``feature-add-thing``: lower case, other characters → ``-``."""
    slug = _NOT_TAG_CHARACTERS.sub("-", branch.lower().replace("/", "-"))
    slug = re.sub(r"-{2,}", "-", slug)
    return slug.strip(".-_")
