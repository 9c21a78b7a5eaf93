"""Phase 1's resources: where the night's documents arrive (`DocumentStreams`), the graph they
are written to (`GraphStore`: the LadybugDB file itself, or the service that owns it) and the
labelled set the extraction is scored on (`LabelledSet`). The inference server, which Phase 2
uses too, is in shared/."""

from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol

from dagster import ConfigurableResource
from pydantic import Field

from ..shared.inference_server import InferenceServer
from ..shared.settings import declared_default
from .documents.streams import DEFAULT_MAX_DOCUMENT_BYTES, StreamScan, scan_streams
from .graph.client import GraphServiceClient
from .graph.store import (DEFAULT_BUFFER_POOL_MIB, DEFAULT_CHECKPOINT_MIB, DataGraph,
                          open_graph)
from .extraction.quality import LabelledDocument, load_labelled_set
from .documents.scan_index import ScanIndex


class ExtractionAdapterChoice(Protocol):
    """Which extraction adapter Phase 1 serves. Phase 2 decides (its registry of versions that
    passed their gate: `adapters.resources.ExtractionServing`); the code location binds that
    resource as `extraction_serving`, so Phase 1 does not import Phase 2."""

    tenant: str  # whose `extraction-<tenant>` adapter is served

    def extractor(self, server: InferenceServer, log: Any) -> InferenceServer:
        """`server` set up to serve the chosen adapter (or `server` itself: none)."""


class BucketFolders(Protocol):
    """Where Phase 2's corpus buckets are (`adapters.resources.CorpusBuckets`, bound as
    `corpus_buckets`): the folder of bucket `<role>-<tenant>`, which Phase 1 adds the tuples
    and pairs of operators' corrections to."""

    def bucket_folder(self, role: str, tenant: str) -> Path:
        """The bucket's folder."""


class DocumentStreams(ConfigurableResource):
    """The data root holding `transcripts/*.md`, `research/*.yaml|*.yml|*.md`, `contacts/*.json`,
    and the scan index that spares a night from opening the files it has seen
    (`<root>/index/documents.sqlite`, documents/scan_index.py)."""

    root: str = Field(description="Data root folder (absolute, or relative to the working dir).")
    max_document_bytes: int = Field(default=DEFAULT_MAX_DOCUMENT_BYTES,
                                    description="Larger documents are rejected, bytes.")

    def index_path(self) -> Path:
        """The scan index's file."""
        return Path(self.root) / "index" / "documents.sqlite"

    def scan(self, arrived_by: float) -> StreamScan:
        """Documents that arrived by `arrived_by` (Unix seconds) and that the index cannot
        pass over; see `scan_streams`."""
        index = ScanIndex(self.index_path())
        try:
            return scan_streams(Path(self.root), arrived_by, self.max_document_bytes, index)
        finally:
            index.close()

    def mark_recorded(self, hashes: set[str]) -> None:
        """The ledger holds `hashes`: their unchanged files are not opened again."""
        index = ScanIndex(self.index_path())
        try:
            index.mark_recorded(hashes)
        finally:
            index.close()


def demo_labelled_set() -> Path:
    """The demo documents shipped in the package, with their gold (`demo_data/gold.json`)."""
    return Path(str(resources.files("yoyo_assets") / "demo_data"))


class LabelledSet(ConfigurableResource):
    """A folder of documents plus `gold.json` (format: `datagraph/extraction/quality.py`)."""

    path: str = Field(default="", description="Labelled set folder; empty: the demo documents "
                      "shipped with the package and their gold.")
    f1_tolerance: float = Field(
        default=0.02, description="The check warns when 'any type' F1 falls more than this "
        "below the previous evaluation's (absolute).")

    def folder(self) -> Path:
        """The labelled set's folder, absolute."""
        return Path(self.path).resolve() if self.path else demo_labelled_set()

    def load(self) -> list[LabelledDocument]:
        """The labelled documents; raises `quality.LabelledSetError` naming the bad file."""
        return load_labelled_set(self.folder())


class GraphStore(ConfigurableResource):
    """The DataGraph: `embedded` writes the LadybugDB file at `path` in this process (its one
    read-write handle); `service` writes through the graph service at `service_url`, which owns
    the file (docs/graph-service.md)."""

    path: str = Field(description="embedded sink: LadybugDB database file (folder created).")
    write_batch_documents: int = Field(
        default=declared_default("graph_write_batch"), description="Documents per write transaction (ledger + entities + MENTIONS).")
    sink: Literal["embedded", "service"] = Field(
        default="embedded", description="Write the file here, or through the graph service.")
    service_url: str = Field(default=declared_default("graph_service_url"),
                             description="service sink: the graph service's base URL.")
    service_timeout_s: float = Field(default=declared_default("graph_service_timeout_s"), description="service sink: seconds per request.")
    service_attempts: int = Field(
        default=declared_default("graph_service_attempts"), description="service sink: attempts per request (connection errors, 429, 5xx).")
    service_token: str = Field(default="", description="service sink: bearer token the graph "
                               "service wants; empty: none.")
    buffer_pool_mib: int = Field(default=DEFAULT_BUFFER_POOL_MIB, description="embedded sink: "
                                 "LadybugDB buffer pool, MiB.")
    checkpoint_mib: int = Field(default=DEFAULT_CHECKPOINT_MIB, description="embedded sink: "
                                "write-ahead log size that triggers a checkpoint, MiB.")

    @contextmanager
    def open(self) -> Iterator[DataGraph]:
        """The graph's operations for the configured sink; see `graph.store.open_graph` and
        `graph.client.GraphServiceClient` for the errors each raises."""
        if self.sink == "embedded":
            with open_graph(self.path, self.buffer_pool_mib, self.checkpoint_mib) as graph:
                yield graph
            return
        client = GraphServiceClient(self.service_url, self.service_timeout_s,
                                    self.service_attempts, token=self.service_token)
        try:
            yield client
        finally:
            client.close()

    def location(self) -> str:
        """Where the graph is written: the file's path or the service's URL."""
        return self.path if self.sink == "embedded" else self.service_url
