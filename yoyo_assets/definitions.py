"""The one `Definitions` object of the yoyo-assets code location."""

import os

from dagster import Definitions

from .automation import datagraph_nightly_schedule
from .datagraph.assets import documents, extracted_entities, graph_mutations
from .jobs import datagraph_nightly
from .resources.document_streams import DocumentStreams
from .resources.graph_store import GraphStore
from .resources.inference_server import InferenceServer
from .settings import data_root

_root = data_root()

defs = Definitions(
    assets=[documents, extracted_entities, graph_mutations],
    jobs=[datagraph_nightly],
    schedules=[datagraph_nightly_schedule],
    resources={
        "document_streams": DocumentStreams(root=str(_root)),
        "graph_store": GraphStore(path=str(_root / "graph" / "datagraph.lbug")),
        "inference_server": InferenceServer(
            mode=os.environ.get("YOYO_INFERENCE_MODE", "managed"),
            url=os.environ.get("YOYO_INFERENCE_URL", "http://127.0.0.1:9080"),
            model_dir=os.environ.get("YOYO_EXTRACTION_MODEL_DIR", ""),
            tokenizer_path=os.environ.get("YOYO_EXTRACTION_TOKENIZER", ""),
            reasoning_parser=os.environ.get("YOYO_REASONING_PARSER", ""),
            models_dir=str(_root / "models"),
            log_dir=str(_root / "logs"),
        ),
    },
)
