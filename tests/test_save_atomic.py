"""Output folders are written whole: SelectionResult.save (and the command line, through atomic_folder) leave
only the new run's files, and a failed, interrupted or killed run leaves the earlier folder or none."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
from peft import LoraConfig

from peft_ntk_select import NTKSelector, SelectionResult
from peft_ntk_select.errors import InvalidConfigError
from peft_ntk_select.output import atomic_folder
from tests.helpers import make_batch, make_model

SAVED = {"result.json", "adapter_config.json"}


@pytest.fixture(scope="module")
def result():
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    return NTKSelector(make_model("bert"), config, budget=1, show_progress=False).select(make_batch(n=4))


def earlier_run(folder):
    """A folder as an earlier command-line run left it: every file name peft_ntk_select writes."""
    folder.mkdir(parents=True)
    for name in ("result.json", "adapter_config.json", "report.png", "stability.json", "linearity.json"):
        (folder / name).write_text(f"earlier {name}")
    return {name: (folder / name).read_text() for name in sorted(os.listdir(folder))}


def contents(folder):
    return {name: (folder / name).read_text() for name in sorted(os.listdir(folder))}


def siblings(folder):
    """Hidden folders beside ``folder`` (temporary or set aside)."""
    return sorted(entry.name for entry in folder.parent.iterdir() if entry.name.startswith(f".{folder.name}."))


def test_save_into_an_earlier_run_leaves_only_the_new_files(result, tmp_path):
    out = tmp_path / "out"
    earlier_run(out)
    result.save(out)
    assert set(os.listdir(out)) == SAVED
    assert SelectionResult.load(out).ranking == result.ranking
    assert siblings(out) == []


def test_save_creates_missing_parent_folders_with_the_usual_permissions(result, tmp_path):
    out = tmp_path / "a" / "b" / "out"
    assert result.save(out) == out
    assert set(os.listdir(out)) == SAVED
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask


def test_save_into_an_empty_folder_works(result, tmp_path):
    result.save(tmp_path)
    assert set(os.listdir(tmp_path)) == SAVED


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_failure_mid_write_leaves_the_earlier_folder_and_no_temporary_one(result, tmp_path, monkeypatch, failure):
    out = tmp_path / "out"
    before = earlier_run(out)

    def fail(self, folder, **kwargs):
        assert set(os.listdir(folder)) == {"result.json"}  # half written, in the temporary folder
        raise failure

    monkeypatch.setattr(LoraConfig, "save_pretrained", fail)
    with pytest.raises(type(failure)):
        result.save(out)
    assert contents(out) == before
    assert siblings(out) == []


def test_a_failure_mid_write_of_a_new_folder_leaves_nothing(result, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(LoraConfig, "save_pretrained", lambda self, folder, **kw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        result.save(out)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("foreign", ["notes.txt", "adapter_model.safetensors"])
def test_save_refuses_a_folder_holding_files_it_did_not_write(result, tmp_path, foreign):
    out = tmp_path / "out"
    before = earlier_run(out)
    (out / foreign).write_text("the user's")
    with pytest.raises(InvalidConfigError, match=f"did not write \\({foreign}\\)"):
        result.save(out)
    assert contents(out) == {**before, foreign: "the user's"}


def test_save_refuses_a_file(result, tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(InvalidConfigError, match="is a file, not a folder"):
        result.save(tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file"


def test_save_refuses_the_current_folder(result, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidConfigError, match="current folder"):
        result.save(".")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="permissions do not bind root")
def test_save_refuses_an_unwritable_parent_before_writing(result, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InvalidConfigError, match="is not writable"):
            result.save(locked / "out")
    finally:
        locked.chmod(0o700)


def test_atomic_folder_yields_an_empty_hidden_sibling(tmp_path):
    out = tmp_path / "out"
    earlier_run(out)
    with atomic_folder(out) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(".out.tmp-") and os.listdir(folder) == []
        (folder / "linearity.json").write_text("new")
    assert contents(out) == {"linearity.json": "new"}


def test_stale_temporary_folders_of_ended_processes_are_removed_and_live_ones_kept(result, tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    out = tmp_path / "out"
    stale = [tmp_path / f".out.tmp-{ended.pid}-0000", tmp_path / f".out.old-{ended.pid}-0000"]
    live = tmp_path / f".out.tmp-{os.getppid()}-0000"
    for folder in (*stale, live):
        folder.mkdir()
        (folder / "result.json").write_text("partial")
    result.save(out)
    assert siblings(out) == [live.name]


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from peft import LoraConfig
    from peft_ntk_select import SelectionResult

    def slow(self, folder, **kwargs):
        print("writing", flush=True)
        time.sleep(120)

    result = SelectionResult.load(sys.argv[1])
    LoraConfig.save_pretrained = slow
    result.save(sys.argv[2])
    """
)


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
@pytest.mark.parametrize("has_earlier", [True, False], ids=["earlier-folder", "no-folder"])
def test_a_run_killed_mid_write_leaves_the_earlier_folder_or_nothing(result, tmp_path, has_earlier):
    source, out = tmp_path / "source", tmp_path / "out"
    result.save(source)
    before = earlier_run(out) if has_earlier else None
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(source), str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    if has_earlier:
        assert contents(out) == before
    else:
        assert not out.exists()
    assert [name.split("-")[0] for name in siblings(out)] == [".out.tmp"]  # the killed run's, documented
    result.save(out)  # the next save cleans it up
    assert set(os.listdir(out)) == SAVED and siblings(out) == []
