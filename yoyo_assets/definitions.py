"""The one `Definitions` object of the yoyo-assets code location (`defs`): Phase 1
(`datagraph/`) and Phase 2 (`adapters/`) merged, with the resources and sensor both share.
Built from the environment (`shared/settings.py`); `build_definitions` builds it for another
data root or with other resources (tests)."""

from pathlib import Path

from dagster import Definitions

from .adapters.definitions import adapters_definitions, configured_store
from .adapters.store import AdapterStore
from .datagraph.definitions import datagraph_definitions, datagraph_resources
from .datagraph.resources import GraphStore, LabelledSet
from .shared.inference_server import InferenceServer
from .shared.run_health import dead_run_reaper
from .shared.settings import Settings


def configured_server(settings: Settings) -> InferenceServer:
    """The inference server resource as `settings` configure it."""
    return InferenceServer(
        mode=settings.inference_mode, url=settings.inference_url,
        model_dir=settings.extraction_model_dir, tokenizer_path=settings.extraction_tokenizer,
        reasoning_parser=settings.reasoning_parser, adapter=settings.extraction_adapter,
        memory_share=settings.vllm_memory_share, server_python=settings.vllm_python,
        cpu_bind=settings.vllm_cpu_bind, enforce_eager=settings.vllm_enforce_eager,
        models_dir=str(settings.models_dir), log_dir=str(settings.log_dir))


def build_definitions(root: Path | None = None, inference_server: InferenceServer | None = None,
                      adapter_store: AdapterStore | None = None,
                      labelled_set: LabelledSet | None = None,
                      graph_store: GraphStore | None = None) -> Definitions:
    """Definitions for the environment's settings, with the data root `root` if given; the
    resources given replace the configured ones."""
    settings = Settings.from_env(data_root=root)
    given = {"inference_server": inference_server, "adapter_store": adapter_store,
             "labelled_set": labelled_set, "graph_store": graph_store}
    resources = {**datagraph_resources(settings), "adapter_store": configured_store(settings),
                 "inference_server": configured_server(settings),
                 **{key: value for key, value in given.items() if value is not None}}
    return Definitions.merge(datagraph_definitions(settings), adapters_definitions(settings),
                             Definitions(sensors=[dead_run_reaper], resources=resources))


defs = build_definitions()
