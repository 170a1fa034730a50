"""Output folders written whole: files go into a hidden temporary folder beside the target, which is moved
into place at the end, so that no file of an earlier run survives and an interrupted run leaves the
earlier folder (or, where there was none, no folder) at the target.

with atomic_folder("out") as folder:  # folder: out's hidden sibling, empty
    (folder / "result.json").write_text(text)
# out now holds exactly the files written above
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import InvalidConfigError

# Every file peft_ntk_select writes into an output folder (SelectionResult.save, the command line): a folder
# holding only these (or nothing) is an earlier run's and may be replaced; any other file makes it the user's.
OUTPUT_FILES = frozenset(
    {"result.json", "adapter_config.json", "report.png", "stability.json", "linearity.json", "linearity.png"}
)
_TEMP, _OLD = "tmp", "old"


def _sibling(target: Path, kind: str) -> str:
    """Name of a hidden sibling of ``target`` for this process: ``.<name>.<kind>-<pid>-<token>``."""
    return f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _absolute(target: str | Path) -> Path:
    """``target`` made absolute ('.' and '..' resolved); a symbolic link is followed, so that the folder it
    points to is the one replaced, not the link."""
    path = Path(os.path.abspath(target))
    return path.resolve() if path.is_symlink() else path


def check_output_folder(target: str | Path) -> Path:
    """Raise ``InvalidConfigError`` unless ``atomic_folder(target)`` may write there; return it absolute.

    Refused: a file at ``target``; a folder holding a file peft_ntk_select does not write (see ``OUTPUT_FILES``);
    the current folder or one holding it; a ``target`` whose nearest existing parent is a file or not writable.
    """
    path = _absolute(target)
    if path.exists() and not path.is_dir():
        raise InvalidConfigError(
            f"output {str(target)!r} is a file, not a folder: pass a folder (new, or an earlier output)"
        )
    here = Path.cwd().resolve()
    if path.is_dir() and path.resolve() in (here, *here.parents):
        raise InvalidConfigError(
            f"output {str(target)!r} is the current folder (or holds it), and the folder is replaced whole: "
            "pass a subfolder"
        )
    if path.is_dir():
        foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in OUTPUT_FILES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise InvalidConfigError(
                f"output folder {str(target)!r} holds files peft_ntk_select did not write ({shown}), and the "
                "folder is replaced whole: pass a new or empty folder, or move those files out"
            )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidConfigError(f"output {str(target)!r} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidConfigError(f"output {str(target)!r} cannot be written: {parent} is not writable; pass another")
    return path


def _alive(pid: int) -> bool:
    """True unless process ``pid`` is known to have ended (always True where that cannot be told)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale(target: Path) -> list[Path]:
    """Remove the hidden siblings of ``target`` left by runs killed while writing it (their process has ended);
    return them. Those of runs still going are left alone."""
    removed = []
    for prefix in (f".{target.name}.{_TEMP}-", f".{target.name}.{_OLD}-"):
        for entry in target.parent.glob(f"{prefix}*"):
            pid = entry.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _new_folder(parent: Path, target: Path, kind: str) -> Path:
    while True:
        path = parent / _sibling(target, kind)
        try:
            path.mkdir()  # the usual mode (umask), unlike tempfile.mkdtemp's 0o700
        except FileExistsError:
            continue
        return path


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target``; when the block ends without an error, it replaces
    ``target``: the earlier folder is renamed aside, the new one renamed in, the earlier one deleted.

    So ``target`` ends up holding exactly the files written in the block (none of an earlier run's), and a run
    that fails or is interrupted in the block leaves the earlier folder as it was (the temporary folder is
    deleted). A run killed outright (SIGKILL, power loss) can leave a hidden ``.<name>.tmp-<pid>-*`` (or, between
    the two renames, ``.<name>.old-<pid>-*``, the earlier folder) beside ``target``, never a partial ``target``;
    the next ``atomic_folder`` on ``target`` deletes those of processes that have ended.

    Only a folder peft_ntk_select could have written is replaced: ``InvalidConfigError`` (before anything is
    written) when ``target`` is a file, or a folder holding any file not in ``OUTPUT_FILES`` (the user's).
    Missing parent folders are created.
    """
    path = check_output_folder(target)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    temp = _new_folder(parent, path, _TEMP)
    try:
        yield temp
        check_output_folder(path)  # nothing of the user's arrived there meanwhile
        if not path.exists():
            os.rename(temp, path)
            return
        old = parent / _sibling(path, _OLD)
        os.rename(path, old)
        try:
            os.rename(temp, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
