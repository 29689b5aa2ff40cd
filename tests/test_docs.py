"""Documentation that is generated from code stays in step with it."""

from __future__ import annotations

from pathlib import Path

from tamma_sync.settings import settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_operations_doc_lists_every_setting_as_the_model_does() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
    documented = text[text.index(begin) + len(begin) : text.index(end)]
    assert documented == settings_table(), (
        "run `tamma-sync settings` and paste it into docs/operations.md"
    )
