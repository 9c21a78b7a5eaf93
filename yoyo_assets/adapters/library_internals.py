"""The two undocumented parts of the training libraries this project relies on, checked against
the installed versions before a training starts, so that an upgrade that drops one fails with
its name instead of training wrongly (docs/architecture.md, "Third-party internals"):

- bitsandbytes' `Linear4bit.support_avx512bf16_for_cpu` (an attribute its own code sets and
  reads): turned off, because on a CPU with AVX512-BF16 the first no-grad forward repacks the
  4-bit weights into an inference layout and training then gets zero gradients through the
  base layers (training.disable_bf16_repacking);
- transformers' `Trainer.save_model(output_dir, _internal_call)`: the flag tells a checkpoint's
  save from the caller's own, which places crash point `training.during_checkpoint_save`.
"""

from __future__ import annotations

import inspect
from typing import Any


class UnsupportedLibrary(RuntimeError):
    """An installed training library lacks an internal this project relies on."""


def check_training_internals(linear4bit: Any = None, trainer: Any = None) -> None:
    """Check both internals on bitsandbytes' `Linear4bit` and transformers' `Trainer` (or the
    classes given, for tests).

    Raises:
        UnsupportedLibrary: naming the library, its version and what is missing.
    """
    if linear4bit is None:
        import bitsandbytes
        import transformers

        linear4bit, trainer = bitsandbytes.nn.Linear4bit, transformers.Trainer
    if "support_avx512bf16_for_cpu" not in inspect.getsource(linear4bit):
        raise UnsupportedLibrary(
            f"{_named(linear4bit)} no longer has `support_avx512bf16_for_cpu`: the switch that "
            "keeps 4-bit training on a CPU from silently getting zero gradients "
            "(docs/architecture.md, \"Third-party internals\")")
    if "_internal_call" not in inspect.signature(trainer.save_model).parameters:
        raise UnsupportedLibrary(
            f"{_named(trainer)}.save_model no longer takes `_internal_call`, which tells a "
            "checkpoint's save from the caller's (docs/architecture.md, \"Third-party "
            "internals\")")


def _named(cls: Any) -> str:
    package = cls.__module__.split(".")[0]
    version = getattr(__import__(package), "__version__", "?")
    return f"{package} {version}: {cls.__qualname__}"
