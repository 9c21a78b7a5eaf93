"""ROUGE-L and exact match of served answers against references (answer_scores.py)."""

import pytest

from yoyo_assets.adapters.answer_scores import score_answers


def test_a_closer_answer_scores_higher_and_exact_matches_count():
    references = ["Fix the parser on empty lines", "Add --verbose flag"]
    base = ["Update code", "Add --verbose flag"]
    adapter = ["Fix parser for empty lines", "add  --verbose FLAG"]
    scores = score_answers(references, base, adapter)
    assert scores.prompts == 2
    assert scores.per_prompt[0][0] == 0.0 < scores.per_prompt[0][1] < 1.0
    assert scores.per_prompt[1] == (1.0, 1.0)  # case and spacing do not count (stemmed tokens)
    assert scores.adapter_rouge_l > scores.base_rouge_l
    assert scores.base_exact_match == scores.adapter_exact_match == 0.5


def test_misaligned_lists_are_refused():
    with pytest.raises(ValueError, match="aligned"):
        score_answers(["a"], ["a", "b"], ["a"])
