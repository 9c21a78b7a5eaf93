"""The one `Definitions` object of the yoyo-assets code location (`defs`), built from the
environment (see `settings.py`); `build_definitions` builds it for another data root or server."""

import os
from pathlib import Path

from dagster import Definitions

from .automation import datagraph_nightly_schedule
from .datagraph.assets import documents, extracted_entities, graph_mutations
from .jobs import datagraph_nightly
from .resources.document_streams import DocumentStreams
from .resources.graph_store import GraphStore
from .resources.inference_server import InferenceServer
from .settings import data_root


def inference_server_from_env(root: Path) -> InferenceServer:
    """The inference server resource as the YOYO_* variables configure it."""
    return InferenceServer(
        mode=os.environ.get("YOYO_INFERENCE_MODE", "managed"),
        url=os.environ.get("YOYO_INFERENCE_URL", "http://127.0.0.1:9080"),
        model_dir=os.environ.get("YOYO_EXTRACTION_MODEL_DIR", ""),
        tokenizer_path=os.environ.get("YOYO_EXTRACTION_TOKENIZER", ""),
        reasoning_parser=os.environ.get("YOYO_REASONING_PARSER", ""),
        models_dir=str(root / "models"),
        log_dir=str(root / "logs"),
    )


def build_definitions(root: Path, inference_server: InferenceServer | None = None) -> Definitions:
    """Definitions whose documents, graph, models and logs live under the data root `root`."""
    return Definitions(
        assets=[documents, extracted_entities, graph_mutations],
        jobs=[datagraph_nightly],
        schedules=[datagraph_nightly_schedule],
        resources={
            "document_streams": DocumentStreams(root=str(root)),
            "graph_store": GraphStore(
                path=str(root / "graph" / "datagraph.lbug"),
                write_batch_documents=int(os.environ.get("YOYO_GRAPH_WRITE_BATCH", "256"))),
            "inference_server": inference_server or inference_server_from_env(root),
        },
    )


defs = build_definitions(data_root())
