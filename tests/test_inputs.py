"""Every accepted data form becomes the same padded batch of the same drawn samples."""

from __future__ import annotations

import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from peft_ntk_select import InvalidInputError
from peft_ntk_select.inputs import prepare_samples
from tests.helpers import make_batch


def ragged_rows():
    batch = make_batch(n=6, labels=2)
    lengths = batch["attention_mask"].sum(-1).tolist()
    return [
        {"input_ids": batch["input_ids"][i, :length].tolist(), "label": int(batch["labels"][i])}
        for i, length in enumerate(lengths)
    ], batch


def assert_same_batch(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dict_of_padded_tensors_is_kept_with_all_samples_in_order():
    batch = make_batch(n=4)
    prepared, indices = prepare_samples(batch, num_samples=32, seed=0, pad_token_id=1)
    assert indices == [0, 1, 2, 3]
    assert_same_batch(prepared, batch)


def test_ragged_lists_dataset_and_dataloader_give_the_same_batch():
    rows, batch = ragged_rows()
    as_lists = {"input_ids": [r["input_ids"] for r in rows], "label": [r["label"] for r in rows]}
    dataset = datasets.Dataset.from_list(rows)
    loader = DataLoader(dataset.with_format("torch"), batch_size=4, collate_fn=lambda b: {
        "input_ids": [x["input_ids"] for x in b], "labels": torch.stack([x["label"] for x in b])})  # fmt: skip
    for data in (as_lists, dataset, rows, loader):
        prepared, indices = prepare_samples(data, num_samples=6, seed=0, pad_token_id=1)
        assert indices == list(range(6))
        assert_same_batch(prepared, batch)


def test_draw_is_seeded_sorted_and_without_repeats():
    data = make_batch(n=20)
    _, first = prepare_samples(data, num_samples=5, seed=3, pad_token_id=1)
    _, again = prepare_samples(data, num_samples=5, seed=3, pad_token_id=1)
    _, other = prepare_samples(data, num_samples=5, seed=4, pad_token_id=1)
    assert first == again == sorted(set(first)) and len(first) == 5
    assert other != first


def test_dataloader_gives_its_first_examples():
    data = datasets.Dataset.from_dict(make_batch(n=10)).with_format("torch")
    prepared, indices = prepare_samples(DataLoader(data, batch_size=3), num_samples=4, seed=0, pad_token_id=1)
    assert indices == [0, 1, 2, 3]
    assert torch.equal(prepared["labels"], data["labels"][:4])


def test_left_padding_is_moved_right_and_trailing_padding_trimmed():
    batch = {"input_ids": torch.tensor([[1, 1, 5, 6], [7, 8, 9, 1]]),
             "attention_mask": torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])}  # fmt: skip
    prepared, _ = prepare_samples(batch, num_samples=8, seed=0, pad_token_id=0)
    assert prepared["input_ids"].tolist() == [[5, 6, 0], [7, 8, 9]]
    assert prepared["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]


def test_token_labels_follow_their_tokens():
    batch = {"input_ids": torch.tensor([[1, 5, 6]]).repeat(2, 1), "attention_mask": torch.tensor([[0, 1, 1]] * 2),
             "labels": torch.tensor([[-100, 5, 6]] * 2)}  # fmt: skip
    prepared, _ = prepare_samples(batch, num_samples=8, seed=0, pad_token_id=0)
    assert prepared["labels"].tolist() == [[5, 6]] * 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"attention_mask": torch.ones(3, 4)}, "no 'input_ids'"),
        ([{"text": "hello"}, {"text": "world"}], "no 'input_ids'"),
        ({"input_ids": ["a b", "c d"]}, "run the tokenizer first"),
        ({"input_ids": torch.ones(1, 4, dtype=torch.long)}, "at least 2"),
        (42, "cannot read samples from int"),
        ([1, 2, 3], "not a dict"),
        ({"input_ids": torch.ones(3, 4, dtype=torch.long), "labels": torch.ones(2)}, "has 2 rows"),
    ],
)
def test_bad_data_raises_a_typed_error_naming_the_fix(data, message):
    with pytest.raises(InvalidInputError, match=message):
        prepare_samples(data, num_samples=8, seed=0, pad_token_id=0)
