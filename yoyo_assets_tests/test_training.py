"""QLoRA training over the real corpora (small subsets, short max length so CPU time stays low):
eval loss, reload with PeftModel, resume after the budget, the 4-bit gradient guard, and a clear
error for a bad base model. Budget/resume and DPO's loss are mechanics, trained on the shipped
model cut to 4 decoder layers (`shallow_model_dir`); early stopping needs the whole model, whose
first epoch already fits these tuples (a shallow copy is still learning the language at epoch 3)."""

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import yoyo_assets
from yoyo_assets.adapters.corpus import CorpusTuple, scan_bucket
from yoyo_assets.adapters.preference_pass import train_with_preference_pass
from yoyo_assets.adapters.training import (BaseModelError, BudgetSpent, TrainingConfig,
                                           checkpoints_activations, load_base_model,
                                           quantizes_base, split_tuples, train_adapter)


def shortest(folder: Path, kind: str, count: int):
    """The `count` shortest valid tuples of a corpus folder (short = fast on a CPU)."""
    scan = scan_bucket(folder, kind, time.time())
    return sorted(scan.tuples, key=lambda t: (len(str(t.record)), t.sha256))[:count]


def sequence_logprob(model, tokenizer, text: str) -> float:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, :-1]
    return float(torch.log_softmax(logits.float(), -1).gather(1, ids[0, 1:, None]).sum())


def reloaded_logprob_change(model_dir: Path, adapter_dir: Path, text: str) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    before = sequence_logprob(base, tokenizer, text)
    tuned = PeftModel.from_pretrained(base, adapter_dir)
    assert tuned.active_adapter == "default"
    return sequence_logprob(tuned, tokenizer, text) - before


@pytest.mark.slow
def test_sft_stops_at_budget_resumes_and_lowers_eval_loss(corpora, shallow_model_dir, tmp_path):
    tuples = shortest(corpora / "engineering", "sft", 20)
    train, held_out = split_tuples(tuples, 0.2)
    # The QLoRA path a GPU trains (NF4 base), which a CPU skips by default (quantizes_base).
    config = TrainingConfig(max_length=128, num_train_epochs=1, per_device_train_batch_size=4,
                            load_in_4bit=True)
    work = tmp_path / "work"
    with pytest.raises(BudgetSpent, match="checkpoint saved"):
        # A budget spent at once: training stops after the first step.
        train_adapter("sft", train, held_out, config, shallow_model_dir, work,
                      tmp_path / "first", deadline=time.time())
    assert (work / "checkpoint-1" / "trainer_state.json").is_file()

    result = train_adapter("sft", train, held_out, config, shallow_model_dir, work,
                           tmp_path / "out")
    assert result.resumed_from == "checkpoint-1"
    assert result.eval_loss < result.base_eval_loss
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    steps = [r["step"] for r in result.loss_history if "train_loss" in r]
    assert steps == list(range(1, result.steps + 1))  # the checkpoint's history carried on
    assert result.train_tokens > 0 and result.tokens_per_s > 0 and result.peak_memory_bytes > 0
    change = reloaded_logprob_change(shallow_model_dir, tmp_path / "out",
                                     held_out[0].record["messages"][-1]["content"])
    assert abs(change) > 1e-3


@pytest.mark.slow
def test_dpo_lowers_loss_on_its_pairs_and_reloads(corpora, shallow_model_dir, tmp_path):
    # 16 short hh-rlhf pairs: a 135M model does not generalise a preference from 12 pairs (the
    # held-out loss is reported, not asserted); what DPO must do is separate the pairs it saw.
    tuples = shortest(corpora / "apprenticeship", "dpo", 16)
    train, held_out = split_tuples(tuples, 0.25)
    config = TrainingConfig(max_length=64, num_train_epochs=2, per_device_train_batch_size=4, dpo_learning_rate=5e-4)
    result = train_adapter("dpo", train, held_out, config, shallow_model_dir, tmp_path / "work",
                           tmp_path / "out")
    assert result.base_eval_loss == pytest.approx(0.6931, abs=1e-3)  # ln 2: policy == reference
    train_losses = [r["train_loss"] for r in result.loss_history if "train_loss" in r]
    first_epoch = len(train_losses) // 2
    assert sum(train_losses[first_epoch:]) / (len(train_losses) - first_epoch) < \
        sum(train_losses[:first_epoch]) / first_epoch
    record = train[0].record
    change = reloaded_logprob_change(shallow_model_dir, tmp_path / "out",
                                     record["prompt"] + " " + record["chosen"])
    assert abs(change) > 1e-3


@pytest.mark.slow
def test_lora_gradients_survive_an_evaluation_forward(model_dir):
    """The bitsandbytes AVX512-BF16 bug (../shared/STACK.md): after a no-grad eval forward, a
    4-bit model trained zero gradients through its base layers. Guard: every target module of
    every layer still gets non-zero LoRA-B gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    config = TrainingConfig(load_in_4bit=True)
    model = load_base_model(model_dir, config)
    assert any("Linear4bit" in type(m).__name__ for m in model.modules())
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=config.lora_target_modules,
                                             task_type="CAUSAL_LM"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(["The harbour sync moved to Thursday at noon."], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        model(**batch)
    model.train()
    model(**batch, labels=batch.input_ids).loss.backward()
    grads = {name: param.grad for name, param in model.named_parameters() if "lora_B" in name}
    assert len(grads) == 30 * len(config.lora_target_modules)  # SmolLM2-135M: 30 layers
    zero = [name for name, grad in grads.items() if grad is None or not grad.abs().sum() > 0]
    assert zero == []


def test_the_base_is_quantized_on_a_gpu_by_default_and_as_asked_otherwise():
    assert quantizes_base(TrainingConfig()) is torch.cuda.is_available()
    assert quantizes_base(TrainingConfig(load_in_4bit=True)) is True
    assert quantizes_base(TrainingConfig(load_in_4bit=False)) is False


def test_activations_are_recomputed_on_a_gpu_by_default_and_as_asked_otherwise():
    assert checkpoints_activations(TrainingConfig()) is torch.cuda.is_available()
    assert checkpoints_activations(TrainingConfig(gradient_checkpointing=True)) is True
    assert checkpoints_activations(TrainingConfig(gradient_checkpointing=False)) is False


def test_bad_base_model_fails_before_loading(tmp_path, corpora):
    tuples = shortest(corpora / "engineering", "sft", 4)
    train, held_out = split_tuples(tuples, 0.5)
    with pytest.raises(BaseModelError, match="does not exist"):
        train_adapter("sft", train, held_out, TrainingConfig(), tmp_path / "missing",
                      tmp_path / "work", tmp_path / "out")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(BaseModelError, match="lacks tokenizer_config.json, weights"):
        train_adapter("sft", train, held_out, TrainingConfig(), tmp_path / "half",
                      tmp_path / "work", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_holds_out_at_least_eight_deterministically(corpora):
    tuples = shortest(corpora / "engineering", "sft", 120)
    train, held_out = split_tuples(tuples[:40], 0.1)
    again = split_tuples(list(reversed(tuples[:40])), 0.1)[1]
    assert {t.sha256 for t in again} == {t.sha256 for t in held_out}
    assert len(held_out) == 8 and len(train) == 32  # max(8, 0.1 * 40)
    assert len(split_tuples(tuples, 0.1)[1]) == 12  # max(8, ceil(0.1 * 120))
    assert [len(side) for side in split_tuples(tuples[:10], 0.1)] == [5, 5]  # never over half
    with pytest.raises(ValueError, match="at least 2"):
        split_tuples(tuples[:1], 0.1)


def test_tuples_that_cannot_fit_max_length_are_a_clear_failure(corpora, model_dir, tmp_path):
    # A 16-token window holds less than the chat template's own tokens: nothing can fit.
    tuples = shortest(corpora / "engineering", "sft", 6)
    train, held_out = split_tuples(tuples, 0.3)
    config = TrainingConfig(max_length=16, num_train_epochs=1, gradient_checkpointing=False)
    with pytest.raises(ValueError, match="no training tuple fits max_length 16 tokens "
                       r"\(\{'prompt does not fit': 3\}\)"):
        train_adapter("sft", train, held_out, config, model_dir, tmp_path / "work",
                      tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_best_checkpoint_is_kept_and_training_stops_early(corpora, model_dir, tmp_path):
    # A learning rate this high overfits 12 short tuples after one epoch: held-out loss rises
    # in the second, patience 1 stops there, and the first epoch's adapter is the one kept.
    tuples = shortest(corpora / "engineering", "sft", 20)
    train, held_out = split_tuples(tuples, 0.1)
    config = TrainingConfig(max_length=128, num_train_epochs=3, sft_learning_rate=3e-3,
                            early_stopping_patience=1)
    result = train_adapter("sft", train, held_out, config, model_dir, tmp_path / "work",
                           tmp_path / "out")
    evals = [(r["step"], r["eval_loss"]) for r in result.loss_history if "eval_loss" in r]
    assert len(evals) == 2 and evals[1][1] > evals[0][1]  # the later epoch is worse
    assert result.stopped_early and result.steps == evals[1][0] < 9
    assert result.kept_step == evals[0][0]
    # The saved adapter is the first epoch's: its per-tuple held-out loss is that evaluation's.
    assert result.eval_loss == pytest.approx(evals[0][1], rel=1e-3)
    assert len(result.held_out.adapter_losses) == len(held_out) == 8


def test_the_internals_training_relies_on_are_checked_against_the_installed_libraries():
    """The installed bitsandbytes and transformers hold both internals; a version without one
    is refused by name before training starts."""
    import bitsandbytes
    import transformers

    from yoyo_assets.adapters.library_internals import (UnsupportedLibrary,
                                                        check_training_internals)

    check_training_internals()  # the installed versions

    class Linear4bit:  # a bitsandbytes that no longer has the switch
        pass

    class Trainer:  # a transformers whose save_model lost the flag
        def save_model(self, output_dir=None):
            pass

    with pytest.raises(UnsupportedLibrary, match="support_avx512bf16_for_cpu"):
        check_training_internals(Linear4bit, transformers.Trainer)
    with pytest.raises(UnsupportedLibrary, match="_internal_call"):
        check_training_internals(bitsandbytes.nn.Linear4bit, Trainer)


@pytest.mark.slow
def test_the_extraction_roles_dpo_pass_goes_on_from_its_sft_adapter(shallow_model_dir, tmp_path):
    """An extraction bucket with correction pairs: SFT, then DPO starting from that adapter and
    measured against it (the first DPO loss is ln 2 only if the reference is the SFT adapter,
    not the base), one adapter saved, the held-out SFT tuples scored with the finished one."""
    bucket = Path(yoyo_assets.__file__).parent / "demo_data" / "corpus" / "extraction-pointsav"
    sft = shortest(bucket, "sft+dpo", 24)
    # Pairs as corrections make them: the confirmed answer chosen over an extractor's that
    # missed every name.
    pairs = [CorpusTuple(f"pair-{t.sha256}", {
        "prompt": t.record["messages"][:-1], "chosen": t.record["messages"][-1]["content"],
        "rejected": '{"entities": []}'}, t.path, t.line) for t in sft[:12]]
    # DPO alone (no RPO term), so that the first loss is the reference's test.
    config = TrainingConfig(max_length=160, num_train_epochs=1, per_device_train_batch_size=4,
                            dpo_learning_rate=5e-4, min_held_out_tuples=4,
                            preference_pass_rpo_alpha=0)
    result = train_with_preference_pass(split_tuples(sft, 0.2, 4), split_tuples(pairs, 0.25, 4),
                                        config, shallow_model_dir, tmp_path / "work",
                                        tmp_path / "out")
    second = result.preference_pass
    assert second is not None and second.held_out_examples == 4
    first_dpo_loss = next(r["train_loss"] for r in second.loss_history if "train_loss" in r)
    assert first_dpo_loss == pytest.approx(0.6931, abs=1e-3)
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "adapter_model.safetensors" in saved and "ref" not in saved  # trl's copy not saved
    sft_only = load_file(tmp_path / "work" / "sft-adapter" / "adapter_model.safetensors")
    finished = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert sft_only.keys() == finished.keys()
    assert any(not torch.equal(sft_only[k], finished[k]) for k in finished)  # DPO moved it
    assert len(result.held_out.adapter_losses) == len(result.split.held_out)
    assert result.eval_loss == pytest.approx(sum(result.held_out.adapter_losses)
                                             / len(result.held_out.adapter_losses))
