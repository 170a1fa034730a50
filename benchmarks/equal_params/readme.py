"""Write the equal-parameter results into README.md: generated blocks between markers.

    .venv/bin/python -m benchmarks.equal_params.readme benchmarks/results/equal_params_minilm_*

Three blocks: the results (``decide --markdown`` on every folder given), the agreement of the kernel's score
with fine-tuning (``agreement --markdown`` on the folders holding ``placement_scores.json``) and the headroom
(``headroom --markdown`` on every folder given). Each start marker
names its folders, so that ``tests/docs/test_readme.py`` recomputes each block from the same committed files
and compares it verbatim.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import agreement, headroom
from .decide import decide, load_cells, markdown


@dataclass(frozen=True)
class Block:
    """A generated README block: ``start`` + folders + `` -->``, the Markdown ``render(folders)``, ``end``."""

    start: str
    end: str
    render: Callable[[Sequence[str]], str]

    def text(self, folders: Sequence[str]) -> str:
        """The markers and, between them, ``render(folders)`` (paths as given)."""
        return f"{self.start}{' '.join(folders)} -->\n{self.render(folders).strip()}\n{self.end}"

    def folders_in(self, text: str) -> list[str]:
        """The folders the start marker in ``text`` names."""
        start = text.index(self.start) + len(self.start)
        return text[start : text.index("-->", start)].split()

    def current(self, text: str) -> str:
        """The block as it stands in ``text``, markers included."""
        return text[text.index(self.start) : text.index(self.end) + len(self.end)]


RESULTS = Block("<!-- equal-params results: python -m benchmarks.equal_params.decide --markdown ",
                "<!-- end of equal-params results -->",
                lambda folders: markdown(*decide([Path(f) for f in folders])))  # fmt: skip
AGREEMENT = Block("<!-- equal-params agreement: python -m benchmarks.equal_params.agreement --markdown ",
                  "<!-- end of equal-params agreement -->",
                  lambda folders: agreement.render(agreement.agreement(folders), markdown=True))  # fmt: skip


HEADROOM = Block("<!-- equal-params headroom: python -m benchmarks.equal_params.headroom --markdown ",
                 "<!-- end of equal-params headroom -->",
                 lambda folders: headroom.render(headroom.headroom(load_cells(folders)), markdown=True))  # fmt: skip


def update_readme(readme: Path, folders: Sequence[str]) -> None:
    """Replace the blocks of ``readme`` (which must hold their markers): the results and the headroom of
    ``folders``, the agreement of those among them that hold ``placement_scores.json``."""
    text = readme.read_text()
    scored = [folder for folder in folders if (Path(folder) / agreement.SCORES_FILE).is_file()]
    for block, chosen in ((RESULTS, folders), (AGREEMENT, scored), (HEADROOM, folders)):
        if block.start not in text or block.end not in text:
            raise SystemExit(f"{readme} has no markers {block.start}... -->{block.end}: add them first")
        head, rest = text.split(block.start, 1)
        text = head + block.text(chosen) + rest.split(block.end, 1)[1]
    readme.write_text(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_params.readme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("folders", nargs="+", help="equal_params output folders, relative to the repository root")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="file to update (README.md)")
    args = parser.parse_args(argv)
    update_readme(args.readme, args.folders)


if __name__ == "__main__":
    main()
