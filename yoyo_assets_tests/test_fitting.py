"""Fitting tuples into max_length (fitting.py) with the shipped tokenizer on real commit tuples:
the answer survives, the prompt is cut where it is marked, nothing is dropped for length."""

import json

import pytest
from transformers import AutoTokenizer

from yoyo_assets.adapters.fitting import MARKER, fit_example, fit_examples
from yoyo_assets.adapters.training import dpo_example, sft_example

MAX_LENGTH = 512


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


def template_ids(tokenizer, messages, generation_prompt=False) -> list[int]:
    """Token ids as trl builds them for a conversational example."""
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                         add_generation_prompt=generation_prompt)["input_ids"]


@pytest.fixture(scope="module")
def long_commits(corpora, tokenizer) -> list[dict]:
    """50 click commits whose diff + message is over 512 tokens (the engineering bucket's
    real shape: the deployment's limit is fixed, real diffs are long)."""
    lines = (corpora / "engineering" / "click-commits.sft.jsonl").read_text().splitlines()
    examples = [sft_example(json.loads(line)) for line in lines]
    long = [e for e in examples
            if len(template_ids(tokenizer, e["prompt"] + e["completion"])) > MAX_LENGTH]
    assert len(long) >= 50
    return long[:50]


def test_a_prompt_heavy_tuple_keeps_its_answer_tokens(tokenizer, long_commits):
    example = long_commits[0]
    original = template_ids(tokenizer, example["prompt"] + example["completion"])
    answer_start = len(template_ids(tokenizer, example["prompt"], generation_prompt=True))
    assert answer_start >= MAX_LENGTH  # trl's end truncation would have left no answer token

    fitted, outcome = fit_example(tokenizer, example, MAX_LENGTH)
    assert outcome == "prompt shortened"
    ids = template_ids(tokenizer, fitted["prompt"] + fitted["completion"])
    start = len(template_ids(tokenizer, fitted["prompt"], generation_prompt=True))
    assert len(ids) <= MAX_LENGTH
    assert ids[start:] == original[answer_start:]  # every answer token, unchanged
    assert fitted["completion"] == example["completion"]
    user = fitted["prompt"][-1]["content"]
    assert MARKER.split("{")[0] in user and "tokens cut" in user
    assert user.startswith(example["prompt"][-1]["content"][:200])  # the diff's head is kept
    assert user.endswith(example["prompt"][-1]["content"][-40:])  # and its tail
    assert fitted["prompt"][0] == example["prompt"][0]  # the instruction is untouched


def test_fifty_long_commits_fit_and_none_is_dropped(tokenizer, long_commits):
    fitted, report = fit_examples(tokenizer, long_commits, MAX_LENGTH)
    assert report.dropped == {} and report.unchanged == 0
    assert report.prompts_shortened + report.answers_cut == 50
    for example in fitted:
        assert len(template_ids(tokenizer, example["prompt"] + example["completion"])) \
            <= MAX_LENGTH


def test_an_answer_longer_than_the_window_is_cut_and_counted(tokenizer):
    example = dpo_example({"prompt": "Say something long.",
                           "chosen": "word " * 400, "rejected": "no"})
    fitted, outcome = fit_example(tokenizer, example, 128)
    assert outcome == "answer cut"
    assert fitted["rejected"] == example["rejected"]
    assert fitted["chosen"][0]["content"].startswith("word word")
    assert len(template_ids(tokenizer, fitted["prompt"] + fitted["chosen"])) <= 128


def test_empty_answers_are_dropped_with_the_reason(tokenizer):
    fitted, report = fit_examples(tokenizer, [sft_example({"prompt": "x", "completion": " "})],
                                  64)
    assert fitted == [None] and report.dropped == {"empty answer": 1}
