"""Pick LoRA target modules with peft_ntk_select, then fine-tune with the Hugging Face Trainer.

Runs offline on CPU: MiniLM (all-MiniLM-L6-v2) with a new 2-label head, on real Rotten Tomatoes reviews
(fresh = 1, rotten = 0). About 1 minute on an idle 2-core CPU with the defaults:

    python examples/train_with_trainer.py                     # NTK-selected placement (3 modules)
    python examples/train_with_trainer.py --compare-default   # ... and PEFT's default query/value placement
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from peft_ntk_select import NTKSelector
from peft_ntk_select.cli.assets import load_reviews, minilm_path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=1024, help="training reviews (default 1024)")
    parser.add_argument("--eval-size", type=int, default=512, help="held-out reviews (default 512)")
    parser.add_argument("--epochs", type=float, default=2.0, help="training epochs (default 2)")
    parser.add_argument("--lr", type=float, default=5e-3, help="learning rate (default 5e-3)")
    parser.add_argument("--budget", type=int, default=3, help="LoRA modules to pick (default 3)")
    parser.add_argument("--num-samples", type=int, default=32, help="reviews the NTK is computed on (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, head, LoRA init and training")
    parser.add_argument(
        "--subset-rank",
        type=int,
        default=0,
        help="which ranked subset to train: 0 = the selector's pick (highest spectral ratio, the default "
        "objective), -1 = the lowest (Algorithm 2 as printed)",
    )
    parser.add_argument("--compare-default", action="store_true", help="also train query+value in every layer")
    parser.add_argument("--output", default=None, help="Trainer output_dir (default: a temporary folder)")
    return parser.parse_args()


def load_model(seed: int):
    """MiniLM with a freshly initialised 2-label head; the same seed gives the same head every time."""
    set_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)


def make_datasets(tokenizer, train_size: int, eval_size: int, seed: int) -> tuple[Dataset, Dataset]:
    """Shuffle the reviews with `seed` (the file is grouped by movie) and cut disjoint train/eval splits."""
    reviews = load_reviews()  # [(text, label)], 4,866 reviews, about half fresh
    if train_size + eval_size > len(reviews):
        raise SystemExit(f"--train-size + --eval-size must be at most {len(reviews)}")
    random.Random(seed).shuffle(reviews)

    def tokenized(rows: list[tuple[str, int]]) -> Dataset:
        data = Dataset.from_dict({"text": [text for text, _ in rows], "label": [label for _, label in rows]})
        # No padding here: DataCollatorWithPadding pads each batch, the selector pads its own samples.
        # The raw text column is dropped; the selector would ignore it, and so would the Trainer.
        return data.map(
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=128),
            batched=True,
            remove_columns=["text"],
        )

    return tokenized(reviews[:train_size]), tokenized(reviews[train_size : train_size + eval_size])


def compute_metrics(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def train_and_evaluate(peft_model, tokenizer, train_data, eval_data, args, output_dir: str) -> float:
    """Fine-tune with Trainer (AdamW, linear schedule, 6% warmup) and return held-out accuracy."""
    training_args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        warmup_steps=0.06,  # a float < 1 is a fraction of the steps (transformers 5 dropped warmup_ratio)
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        save_strategy="no",  # no checkpoints
        logging_steps=32,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=args.seed,
    )
    trainer = Trainer(
        model=peft_model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    return trainer.evaluate()["eval_accuracy"]


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    train_data, eval_data = make_datasets(tokenizer, args.train_size, args.eval_size, args.seed)
    print(f"data: {len(train_data)} train / {len(eval_data)} held-out reviews")

    # 1. Rank every subset of `budget` attention projections (q, k, v of each layer) by the NTK spectrum,
    #    computed on --num-samples (32) training reviews. Set r, lora_alpha and task_type as you will train;
    #    target_modules is what the selector chooses.
    lora_config = LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS")
    model = load_model(args.seed)
    selector = NTKSelector(model, lora_config, budget=args.budget, num_samples=args.num_samples, seed=args.seed)
    result = selector.select(train_data)  # the tokenized datasets.Dataset, as is
    print(f"\n{len(result.ranking)} subsets ranked by {result.objective} ({time.perf_counter() - start:.0f} s):")
    for rank, entry in enumerate(result.ranking[:5]):
        names = ", ".join(name.removeprefix("bert.encoder.layer.") for name in entry.modules)
        print(f"  #{rank}: ratio {entry.ratio:.8f}  kappa {entry.kappa:.3g}  [{names}]")
    # The default objective (max_ratio) was chosen by measuring fine-tuned accuracy (README, "Which
    # objective"); --subset-rank -1 trains the other end of the ranking, Algorithm 2's lowest ratio.
    position = args.subset_rank % len(result.ranking)
    chosen = result.ranking[position]
    print(f"training subset #{position}: {list(chosen.modules)}")

    # 2. Build the PEFT model from the picked config and start LoRA at the A the kernel was measured with.
    config = result.lora_config if position == 0 else result.config_for(chosen.modules)
    peft_model = get_peft_model(model, config)
    result.apply_init(peft_model)
    peft_model.print_trainable_parameters()

    # 3. Fine-tune and evaluate on the held-out reviews.
    with tempfile.TemporaryDirectory() as tmp:
        accuracy = train_and_evaluate(peft_model, tokenizer, train_data, eval_data, args, args.output or tmp)
        accuracies = {f"NTK subset #{position}": accuracy}
        if args.compare_default:
            # Same head init, data, seed and settings; PEFT's usual placement: query and value in every layer.
            default_config = LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS", target_modules=["query", "value"])
            default_model = get_peft_model(load_model(args.seed), default_config)
            default_model.print_trainable_parameters()
            accuracies["default query+value"] = train_and_evaluate(
                default_model, tokenizer, train_data, eval_data, args, args.output or tmp
            )

    print(f"\ntotal time {time.perf_counter() - start:.0f} s")
    for name, value in accuracies.items():
        print(f"eval accuracy ({name}): {value:.4f}")


if __name__ == "__main__":
    main()
