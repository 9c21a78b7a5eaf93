"""Gemma 3 270M, the documented alternative to the embedded model: assembled from its chunk
packages (SHA-256 checked by the package), converted with Gemma's turn format, and named by its
public name in what an adapter on it publishes."""

import json

from transformers import AutoTokenizer

from yoyo_assets.__main__ import main
from yoyo_assets.adapters.resources import AdapterVersions
from yoyo_assets.shared.embedded_model import GEMMA_GGUF_NAME, ensure_gemma_model

from .helpers import TEST_CACHE, timeout

CONVERSATION = [{"role": "system", "content": "Name the entities."},
                {"role": "user", "content": "Ada met Grace in Paris."},
                {"role": "assistant", "content": '{"entities": []}'}]


def test_gemma_is_converted_with_its_turn_format_and_stops_at_the_turns_end(
        gemma_conversion, monkeypatch, capsys):
    if gemma_conversion is not None:  # the command, started with the session (conftest)
        process, log = gemma_conversion
        assert process.wait(timeout=timeout(900)) == 0, log.read_text()[-3000:]
        assert "YOYO_EXTRACTION_MODEL_DIR=" in log.read_text()
    monkeypatch.setenv("YOYO_DATA_ROOT", str(TEST_CACHE))  # its models/ is the suite's cache
    assert main(["gemma-model"]) == 0
    folder = TEST_CACHE / "models" / "gemma-3-270m"
    assert f"YOYO_EXTRACTION_MODEL_DIR={folder} " in capsys.readouterr().out
    assert ensure_gemma_model(TEST_CACHE / "models") == folder  # made once, then reused
    assert not (folder.parent / GEMMA_GGUF_NAME).exists()

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == (
        "<bos><start_of_turn>user\nName the entities.\n\nAda met Grace in Paris.<end_of_turn>\n"
        '<start_of_turn>model\n{"entities": []}<end_of_turn>\n')
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<end_of_turn>\n<start_of_turn>model\n")
    stops = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") in stops

    versions = AdapterVersions(adapters_root=str(TEST_CACHE / "adapters"),
                               models_dir=str(TEST_CACHE / "models"))
    assert versions.public_base_name("extraction", folder) == "google/gemma-3-270m"
