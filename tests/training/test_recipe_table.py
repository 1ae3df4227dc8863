"""The recipe-field table in docs/training.md is generated from the schema and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.training.recipe import TrainConfig, load_recipe
from app.training.recipe_table import (
    BEGIN,
    END,
    SHIPPED_RECIPE,
    SMALL_RECIPE,
    current_table,
    recipe_fields_table,
    with_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _row(table: str, key: str) -> list[str]:
    [line] = [line for line in table.splitlines() if line.startswith(f"| `{key}` |")]
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_the_docs_hold_the_current_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert with_table(text, current_table()) == text, (
        "docs/training.md's recipe table is stale: run `spp recipe fields --write docs/training.md`"
    )


def test_every_field_has_a_row_with_its_default_and_values() -> None:
    shipped, small = load_recipe(SHIPPED_RECIPE), load_recipe(SMALL_RECIPE)
    table = recipe_fields_table(shipped, small)
    assert _row(table, "pretrain.epochs")[:4] == [
        "`pretrain.epochs`", "`10`", f"**`{shipped.pretrain.epochs}`**",
        f"`{small.pretrain.epochs}`",
    ], "bold only where the value differs from the default"  # fmt: skip
    assert _row(table, "pretrain.scene_views")[1:3] == ["`0`", "**`2`**"]
    assert _row(table, "name")[1] == "required"
    assert _row(table, "model.width")[1:3] == ["`1.0`", "**`0.25`**"]
    assert _row(table, "data.knobs")[1] == "`v1`"
    assert "Channel multiplier" in _row(table, "model.width")[4], "meanings come from the schema"
    sections = [
        f"{section}.{field}"
        for section, info in TrainConfig.model_fields.items()
        if hasattr(info.annotation, "model_fields") and section != "data"
        for field in info.annotation.model_fields  # type: ignore[union-attr]
    ]
    assert sections and all(f"| `{key}` |" in table for key in sections)


def test_a_changed_default_makes_the_docs_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOCS.read_text(encoding="utf-8")
    shipped = load_recipe(SHIPPED_RECIPE)
    changed = recipe_fields_table(shipped.model_copy(update={"workers": 7}), shipped)
    assert with_table(text, changed) != text


def test_spp_recipe_fields_writes_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    assert main(["recipe", "fields", "--check", str(doc)]) == 1
    assert main(["recipe", "fields", "--write", str(doc)]) == 0
    assert main(["recipe", "fields", "--check", str(doc)]) == 0
    assert doc.read_text() == f"intro\n{BEGIN}\n\n{current_table()}\n\n{END}\noutro\n"
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="expected the markers"):
        main(["recipe", "fields", "--write", str(tmp_path / "plain.md")])
