"""Where Phase 2 reads corpus buckets and keeps adapter versions, and where it publishes them."""

from pathlib import Path

from dagster import ConfigurableResource
from dagster_gcp import GCSResource
from pydantic import Field

from ..adapters.corpus import DEFAULT_MAX_TUPLE_CHARS, bucket_name
from ..adapters.registry import adapter_folder
from ..embedded_model import ensure_embedded_model


class AdapterStore(ConfigurableResource):
    """Corpus buckets under `corpus_root/<role>-<tenant>/*.jsonl`, versions under
    `adapters_root/<tenant>/<role>/v<N>/`, publication to `gs://<gcs_bucket>/<gcs_prefix>/...`."""

    corpus_root: str = Field(description="Folder of the corpus buckets.")
    adapters_root: str = Field(description="Folder of the adapter versions.")
    models_dir: str = Field(description="Where the embedded model is converted on first use.")
    base_model_dir: str = Field(
        default="", description="Base model folder for training; empty: the embedded model.")
    gcs_bucket: str = Field(default="", description="GCS bucket to publish to; empty: none.")
    gcs_prefix: str = Field(default="adapters", description="Object name prefix in the bucket.")
    # Nested, so that its client (and credentials) is only created when something is published.
    gcs: GCSResource = Field(
        default_factory=GCSResource, description="dagster-gcp GCS client settings; project and "
        "credentials from the environment, STORAGE_EMULATOR_HOST for an emulator.")
    gcs_retry_timeout_s: float = Field(
        default=120.0, description="Seconds the client library retries one request to an "
        "unreachable or failing store before the publication fails (its default policy).")
    max_tuple_chars: int = Field(default=DEFAULT_MAX_TUPLE_CHARS,
                                 description="Longest tuple accepted, characters of JSON.")

    def bucket_folder(self, role: str, tenant: str) -> Path:
        """`corpus_root/<role>-<tenant>`; raises ValueError for unsafe names."""
        return Path(self.corpus_root) / bucket_name(role, tenant)

    def version_folder(self, tenant: str, role: str) -> Path:
        """`adapters_root/<tenant>/<role>`; raises ValueError for unsafe names."""
        return adapter_folder(Path(self.adapters_root), tenant, role)

    def base_model(self, override: str = "") -> Path:
        """The base model folder: `override` (run config), else `base_model_dir`, else the
        embedded SmolLM2 (converted from its GGUF on first use)."""
        chosen = override or self.base_model_dir
        return Path(chosen).resolve() if chosen else ensure_embedded_model(self.models_dir)
