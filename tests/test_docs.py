"""docs/config.md is the generated config reference, current; every schema field is explained."""

from __future__ import annotations

from pathlib import Path

from lstmjax import cli
from lstmjax.experiment import reference, schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_docs_config_md_is_the_current_reference(capsys):
    assert cli.main(["config", "--reference"]) == 0
    printed = capsys.readouterr().out
    assert printed == reference.reference()
    assert DOC.read_text() == printed, (
        "docs/config.md is stale: regenerate it with "
        "`lstmjax config --reference > docs/config.md`")


def test_every_schema_field_has_a_meaning_in_the_annotated_yaml():
    assert reference.undocumented() == []


def test_the_reference_lists_every_section_key_task_and_cell():
    import lstmjax as lj

    text = reference.reference()
    for name in schema.ExperimentConfig.model_fields:
        assert f"| `{name}` |" in text, name
    for section, model in schema.SECTIONS.items():
        assert f"### `{section}`" in text
        for key in model.model_fields:
            assert f"| `{key}` |" in text, f"{section}.{key}"
    for task in lj.tasks.names():
        assert f"| `{task}` |" in text
    for cell in lj.cells.names():
        assert f"| `{cell}` |" in text
    # every table row has as many cells as its header
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    for ln in rows:
        assert ln.replace("\\|", "").count("|") in (4, 5), ln
