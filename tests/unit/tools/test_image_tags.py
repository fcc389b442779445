"""Image tag naming: the branch rules, sanitising, and the inputs it must refuse."""

from __future__ import annotations

from datetime import date

import pytest

from retail_tools.ecr.tags import MAX_TAG_LENGTH, TAG_PATTERN, TagNameError, image_tag

SHA = "3f9c2b7e1d4a5b6c7d8e9f00112233445566778899"[:40]
DAY = date(2026, 11, 29)


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", "v20261129-3f9c2b7"),
        ("refs/heads/main", "v20261129-3f9c2b7"),
        ("develop", "dev-3f9c2b7"),
        ("feature/x", "feature-x-3f9c2b7"),
        ("feature/Price Elasticity", "feature-price-elasticity-3f9c2b7"),
        ("feature/JIRA-42_fix..it", "feature-jira-42_fix..it-3f9c2b7"),
        ("bugfix//weird~~name", "bugfix-weird-name-3f9c2b7"),
    ],
)
def test_branch_rules(branch: str, expected: str) -> None:
    assert image_tag(branch, SHA, DAY) == expected


def test_release_tags_carry_the_build_date() -> None:
    assert image_tag("main", SHA, date(2027, 1, 2)).startswith("v20270102-")


def test_upper_case_sha_is_normalised() -> None:
    assert image_tag("develop", SHA.upper(), DAY) == "dev-3f9c2b7"


def test_long_branch_is_shortened_but_keeps_the_sha() -> None:
    tag = image_tag("feature/" + "a" * 300, SHA, DAY)
    assert len(tag) == MAX_TAG_LENGTH
    assert tag.endswith("-3f9c2b7")
    assert TAG_PATTERN.fullmatch(tag)


@pytest.mark.parametrize("sha", ["", "abc", "not-a-sha!", "g" * 40])
def test_bad_sha_is_refused(sha: str) -> None:
    with pytest.raises(TagNameError, match="SHA"):
        image_tag("main", sha, DAY)


@pytest.mark.parametrize("branch", ["", "   ", "refs/heads/", "///", "~~~"])
def test_branch_without_usable_characters_is_refused(branch: str) -> None:
    with pytest.raises(TagNameError):
        image_tag(branch, SHA, DAY)
