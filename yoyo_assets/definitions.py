"""The one `Definitions` object of the yoyo-assets code location (`defs`): Phase 1
(`datagraph/`) and Phase 2 (`adapters/`) merged, with the resources and sensor both share.
Built from the environment (`shared/settings.py`); `build_definitions` builds it for another
data root, other settings or other resources (tests)."""

from pathlib import Path

from dagster import Definitions

from .adapters.definitions import adapters_definitions, adapters_resources
from .datagraph.definitions import datagraph_definitions, datagraph_resources
from .shared.inference_server import InferenceServer, ServerLaunch, VllmOptions
from .shared.run_health import dead_run_reaper
from .shared.settings import Settings


def configured_server(settings: Settings) -> InferenceServer:
    """The inference server resource as `settings` configure it."""
    inference = settings.inference
    vllm = VllmOptions(reasoning_parser=inference.reasoning_parser,
                       memory_share=inference.vllm_memory_share, cpu_bind=inference.vllm_cpu_bind,
                       enforce_eager=inference.vllm_enforce_eager,
                       dtype=inference.vllm_dtype, cpu_executor=inference.vllm_cpu_executor)
    return InferenceServer(
        mode=inference.inference_mode, url=inference.inference_url[0],
        replica_urls=list(inference.inference_url[1:]),
        model_dir=inference.extraction_model_dir, tokenizer_path=inference.extraction_tokenizer,
        adapter=inference.extraction_adapter, models_dir=str(settings.models_dir),
        launch=ServerLaunch(python=inference.vllm_python, log_dir=str(settings.log_dir),
                            vllm=vllm))


def build_definitions(root: Path | None = None, inference_server: InferenceServer | None = None,
                      *, resources: dict | None = None, **settings) -> Definitions:
    """Definitions for the environment's settings, with the data root `root` and the
    `Settings` fields in `settings` if given; `inference_server` and `resources` (by resource
    key) replace the configured ones. `settings` are flat names (`graph_sink="service"`).

    Raises:
        SettingsError: a setting that does not parse, naming its variable.
    """
    configured = Settings.from_env(data_root=root, **settings)
    given = {"inference_server": inference_server, **(resources or {})}
    bound = {**datagraph_resources(configured), **adapters_resources(configured),
             "inference_server": configured_server(configured),
             **{key: value for key, value in given.items() if value is not None}}
    return Definitions.merge(datagraph_definitions(configured), adapters_definitions(configured),
                             Definitions(sensors=[dead_run_reaper], resources=bound))


defs = build_definitions()
