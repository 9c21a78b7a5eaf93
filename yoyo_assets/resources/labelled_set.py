"""The labelled set resource: documents with gold entities that the extraction quality check
scores the serving extractor on."""

from importlib import resources
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from ..datagraph.quality import LabelledDocument, load_labelled_set


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
