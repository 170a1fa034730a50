"""Write the equal-parameter results into README.md: ``decide --markdown`` on the given folders, between markers.

    .venv/bin/python -m benchmarks.equal_params.readme benchmarks/results/equal_params_minilm_*

The start marker names the folders, so that ``tests/docs/test_readme.py`` recomputes the block from the same
committed files and compares it verbatim.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .decide import decide, markdown

START = "<!-- equal-params results: python -m benchmarks.equal_params.decide --markdown "
END = "<!-- end of equal-params results -->"


def results_block(folders: Sequence[str]) -> str:
    """The markers and, between them, the Markdown that ``decide`` prints for ``folders`` (paths as given)."""
    return f"{START}{' '.join(folders)} -->\n{markdown(*decide([Path(f) for f in folders])).strip()}\n{END}"


def update_readme(readme: Path, folders: Sequence[str]) -> None:
    """Replace the block between the markers of ``readme`` (which must hold them) with ``results_block``."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no equal-params results markers: add {START}... -->{END} first")
    head, rest = text.split(START, 1)
    readme.write_text(head + results_block(folders) + rest.split(END, 1)[1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_params.readme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("folders", nargs="+", help="equal_params output folders, relative to the repository root")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="file to update (README.md)")
    args = parser.parse_args(argv)
    update_readme(args.readme, args.folders)


if __name__ == "__main__":
    main()
