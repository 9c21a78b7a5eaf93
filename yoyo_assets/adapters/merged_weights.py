"""An adapter version's LoRA weights merged into a copy of its base model (peft
`merge_and_unload`), for serving where LoRA overlays are slow.

vLLM's CPU LoRA kernels (`lora/ops/torch_ops`) gather every token's LoRA weights into a dense
tensor and multiply with `einsum`, so on a CPU server an overlay costs several times the base
model's time per document, while the merged copy costs the base's (docs/benchmarks.md,
"Extraction throughput"). On a GPU, vLLM's punica kernels make overlays cheap and a merged copy
of a 32B model would take 64 GB per version: there the overlay stays.

A copy is made once per version, under `<cache>/<served name>/<base folder name>/` (the folder
keeps the base's name, so the extractor's name is still `<base> + <served name>`), staged and
renamed into place under a file lock, so a crash leaves nothing half-written.
"""

import shutil
from pathlib import Path

from filelock import FileLock

from ..shared.atomic import staged_folder
from .registry import AdapterVersion

#: Files of a Hugging Face model folder that hold weights; `save_pretrained` writes the merged ones.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def merged_model(version: AdapterVersion, base_dir: Path, cache: Path) -> Path:
    """The folder of `base_dir` with `version`'s LoRA merged in, made on first use (seconds for
    the embedded 135M model; minutes and the base's size on disk for a large one).

    Raises whatever transformers or peft raise for an unreadable base or adapter.
    """
    target = cache / version.manifest.served_name / base_dir.name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / ".lock"):
        if (target / "config.json").is_file():
            return target
        with staged_folder(target) as staging:
            merge_into(version.path, base_dir, staging)
    return target


def merge_into(adapter_dir: Path, base_dir: Path, folder: Path) -> None:
    """Write `base_dir`'s model with the LoRA adapter in `adapter_dir` merged in (peft
    `merge_and_unload`) into `folder`, with the base's other files (tokenizer, chat template,
    generation config) beside it: a model folder vLLM serves as it would the base.

    Raises whatever transformers or peft raise for an unreadable base or adapter.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().save_pretrained(folder)
    for source in base_dir.iterdir():
        if source.is_file() and not source.name.endswith(_WEIGHT_SUFFIXES) and not (
                folder / source.name).exists():
            shutil.copy2(source, folder / source.name)
