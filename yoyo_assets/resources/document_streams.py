"""The document streams resource: where the night's documents arrive."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from ..datagraph.documents import DEFAULT_MAX_DOCUMENT_BYTES, StreamScan, scan_streams


class DocumentStreams(ConfigurableResource):
    """The data root holding `transcripts/*.md`, `research/*.yaml|*.yml|*.md`, `contacts/*.json`."""

    root: str = Field(description="Data root folder (absolute, or relative to the working dir).")
    max_document_bytes: int = Field(default=DEFAULT_MAX_DOCUMENT_BYTES,
                                    description="Larger documents are rejected, bytes.")

    def scan(self, arrived_by: float) -> StreamScan:
        """Documents that arrived by `arrived_by` (Unix seconds); see `scan_streams`."""
        return scan_streams(Path(self.root), arrived_by, self.max_document_bytes)
