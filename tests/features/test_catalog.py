"""The catalog is complete and consistent, and docs/features.md is generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from features.catalog import (
    FEATURES,
    GROUP_SOURCES,
    UNITS,
    features_for_groups,
    groups_for_tables,
    render_markdown,
)
from features.sources import CONTRACT

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"
WINDOW = re.compile(r"_(\d+)d$")


def test_docs_features_md_is_up_to_date() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/features.md is stale: run `python -m features.catalog > docs/features.md`"
    )


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_every_spec_is_consistent(name: str) -> None:
    spec = FEATURES[name]
    assert spec.name == name
    assert spec.unit in UNITS
    assert spec.group in GROUP_SOURCES
    assert spec.source in CONTRACT
    assert spec.description
    window = WINDOW.search(name)
    if window:  # a name that carries a window says the same window
        assert spec.window_days == int(window.group(1))


def test_groups_and_tables() -> None:
    assert set(GROUP_SOURCES.values()) <= set(CONTRACT)
    assert features_for_groups(["health"]) == [
        "health_score",
        "health_color",
        "health_score_change_30d",
        "health_color_prev_30d",
    ]
    assert groups_for_tables(["accounts", "contracts", "usage_events"]) == ["commercial", "usage"]
    with pytest.raises(ValueError, match="unknown feature group"):
        features_for_groups(["sales"])


def test_catalog_covers_the_issue_groups() -> None:
    by_group = {g: features_for_groups([g]) for g in GROUP_SOURCES}
    assert all(by_group.values())
    assert len(FEATURES) >= 50
