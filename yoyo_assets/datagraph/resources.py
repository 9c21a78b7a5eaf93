"""Phase 1's small resources: where the night's documents arrive (`DocumentStreams`) and the
labelled set the extraction is scored on (`LabelledSet`). The graph store is in graph_store.py,
the inference server, which Phase 2 uses too, in shared/."""

from importlib import resources
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from .documents import DEFAULT_MAX_DOCUMENT_BYTES, StreamScan, scan_streams
from .quality import LabelledDocument, load_labelled_set


class DocumentStreams(ConfigurableResource):
    """The data root holding `transcripts/*.md`, `research/*.yaml|*.yml|*.md`, `contacts/*.json`."""

    root: str = Field(description="Data root folder (absolute, or relative to the working dir).")
    max_document_bytes: int = Field(default=DEFAULT_MAX_DOCUMENT_BYTES,
                                    description="Larger documents are rejected, bytes.")

    def scan(self, arrived_by: float) -> StreamScan:
        """Documents that arrived by `arrived_by` (Unix seconds); see `scan_streams`."""
        return scan_streams(Path(self.root), arrived_by, self.max_document_bytes)


def demo_labelled_set() -> Path:
    """The demo documents shipped in the package, with their gold (`demo_data/gold.json`)."""
    return Path(str(resources.files("yoyo_assets") / "demo_data"))


class LabelledSet(ConfigurableResource):
    """A folder of documents plus `gold.json` (format: `datagraph/quality.py`)."""

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
