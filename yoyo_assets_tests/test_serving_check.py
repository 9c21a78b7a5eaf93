"""The overlay check with a real vLLM server, started for the check or loading the adapter into
the running session server: an adapter that changes nothing, and one whose weights are broken,
both fail it (so neither is published)."""

import logging
from pathlib import Path

import pytest

from yoyo_assets.adapters.serving_check import check_overlay
from yoyo_assets.shared.inference_server import (InferenceServer, ServerLaunch, VllmOptions,
                                                  vllm_lora_rank)
from yoyo_assets.shared.openai_client import served_models

from .helpers import free_port

pytestmark = pytest.mark.slow

PROMPTS = [[{"role": "user", "content": "Name the capital of France."}],
           [{"role": "user", "content": "Write one word about the sea."}]]


@pytest.fixture(scope="module")
def untrained_adapter(model_dir, tmp_path_factory) -> Path:
    """A PEFT LoRA adapter straight from initialisation: B = 0, so it answers as the base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("untrained-adapter")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(folder)
    return folder


def test_lora_rank_is_one_vllm_accepts():
    assert [vllm_lora_rank(r) for r in (1, 4, 16, 17, 64)] == [1, 8, 16, 32, 64]


def test_overlay_check_fails_an_adapter_that_changes_nothing_or_cannot_load(
        model_dir, untrained_adapter, tmp_path, external_server):
    # An external server that cannot be asked (a gateway down, say): the check starts its own.
    unreachable = InferenceServer(
        mode="external", url=f"http://127.0.0.1:{free_port()}", launch=ServerLaunch(
            log_dir=str(tmp_path / "logs"), health_timeout_s=600,
            vllm=VllmOptions(memory_share=0.25)))
    log = logging.getLogger("overlay")

    same = check_overlay(unreachable, model_dir, untrained_adapter, PROMPTS, log,
                         references=["Paris."], max_tokens=16)
    assert same.served and same.prompts == 2, same.error
    assert same.served_by == "a managed overlay server"
    assert same.differing == 0 and not same.passed
    assert same.samples[0]["base"] == same.samples[0]["adapter"] != ""
    # The first prompt's answers scored against its reference: the same answer, the same score.
    assert same.answers.prompts == 1
    assert same.answers.base_rouge_l == same.answers.adapter_rouge_l
    assert same.samples[0]["reference"] == "Paris."
    assert same.samples[0]["base_rouge_l"] == same.samples[0]["adapter_rouge_l"]

    # The session server serves the same base and loads adapters at runtime: the same verdict
    # without a server of its own.
    loaded = check_overlay(external_server, model_dir, untrained_adapter, PROMPTS, log,
                           max_tokens=16)
    assert loaded.served_by == f"loaded into {external_server.url} at runtime", loaded.error
    assert loaded.served and loaded.differing == 0 and not loaded.passed

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in untrained_adapter.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    # Weights that cannot be read: refused, naming the file, before a server is started for
    # them; loaded at runtime, refused by the server.
    started = sorted((tmp_path / "logs").glob("inference-server-*.log"))
    failed = check_overlay(unreachable, model_dir, broken, PROMPTS, log, max_tokens=16)
    assert not failed.served and not failed.passed
    assert f"{broken / 'adapter_model.safetensors'} cannot be read" in failed.error  # metadata
    assert sorted((tmp_path / "logs").glob("inference-server-*.log")) == started
    failed = check_overlay(external_server, model_dir, broken, PROMPTS, log,
                           max_tokens=16)
    assert not failed.served and not failed.passed
    assert "refused adapter" in failed.error
    # Nothing stays loaded, and the server answers on.
    assert [m["id"] for m in served_models(external_server.url)] == [external_server.model]
