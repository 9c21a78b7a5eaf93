"""Phase 2's resources, one per thing owned: the corpus buckets (`CorpusBuckets`), the adapter
versions and their base models (`AdapterVersions`), publication to GCS (`Publication`), and
which extraction adapter Phase 1 serves (`ExtractionServing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from google.cloud.storage.retry import DEFAULT_RETRY
from pydantic import Field

from ..shared.embedded_model import HUB_NAMES, ensure_embedded_model
from ..shared.inference_server import InferenceServer
from ..shared.settings import declared_default
from .corpus import DEFAULT_MAX_TUPLE_CHARS, bucket_name
from .merged_weights import merged_model
from .registry import AdapterVersion, adapter_folder, serving_version


class CorpusBuckets(ConfigurableResource):
    """The buckets `corpus_root/<role>-<tenant>/*.jsonl`, where they are read from, what is
    harvested into them, and how many new tuples make a bucket ready for a new version."""

    corpus_root: str = Field(description="Folder of the corpus buckets.")
    source: Literal["local", "gcs"] = Field(
        default=declared_default("corpus_source"), description="Where the adapter asset reads a "
        "bucket: the local folder, or the night's GCS copy (mirrored into `mirror_root`).")
    mirror_root: str = Field(
        default="", description="Local mirror of the GCS corpus; empty: `<corpus_root>-gcs`.")
    threshold: int = Field(
        default=declared_default("adapter_threshold"), description="Pending tuples (seen by no "
        "version yet) at which a bucket's sensor requests, and its adapter asset trains, a new "
        "version.")
    git_repositories: list[str] = Field(
        default_factory=list, description="`<tenant>=<path>` per git repository whose commits "
        "become the tenant's engineering tuples.")
    max_tuple_chars: int = Field(default=DEFAULT_MAX_TUPLE_CHARS,
                                 description="Longest tuple accepted, characters of JSON.")

    def bucket_folder(self, role: str, tenant: str) -> Path:
        """`corpus_root/<role>-<tenant>`; raises ValueError for unsafe names."""
        return Path(self.corpus_root) / bucket_name(role, tenant)

    def mirror_folder(self, role: str, tenant: str) -> Path:
        """Where the GCS copy of a bucket is mirrored for training."""
        root = self.mirror_root or f"{self.corpus_root.rstrip('/')}-gcs"
        return Path(root) / bucket_name(role, tenant)

    def repositories(self, tenant: str) -> list[Path]:
        """The git repositories harvested into `tenant`'s engineering bucket."""
        pairs = [entry.split("=", 1) for entry in self.git_repositories if "=" in entry]
        return [Path(path).expanduser() for owner, path in pairs if owner.strip() == tenant]


class AdapterVersions(ConfigurableResource):
    """Versions under `adapters_root/<tenant>/<role>/v<N>/`, and the base models they train on."""

    adapters_root: str = Field(description="Folder of the adapter versions.")
    models_dir: str = Field(description="Where the embedded model is converted on first use.")
    base_model_dir: str = Field(
        default="", description="Base model folder for training; empty: the embedded model.")
    base_model_name: str = Field(
        default="", description="Public name of the training base (e.g. allenai/Olmo-3-7B-Think),"
        " written into each adapter's adapter_config.json; empty: the embedded model's.")
    extraction_model_name: str = Field(
        default="", description="Public name of the model Phase 1 serves, the base of "
        "extraction adapters; empty: the embedded model's.")

    def version_folder(self, tenant: str, role: str) -> Path:
        """`adapters_root/<tenant>/<role>`; raises ValueError for unsafe names."""
        return adapter_folder(Path(self.adapters_root), tenant, role)

    def base_model(self, override: str = "") -> Path:
        """The base model folder: `override` (run config), else `base_model_dir`, else the
        embedded SmolLM2 (converted from its GGUF on first use)."""
        chosen = override or self.base_model_dir
        return Path(chosen).resolve() if chosen else ensure_embedded_model(self.models_dir)

    def public_base_name(self, role: str, base_dir: Path) -> str:
        """The name a gateway resolves `base_dir` by: the configured name for `role`'s base,
        else a packaged model's Hub name for its converted folder, else the local path (which
        only this machine can resolve)."""
        configured = self.extraction_model_name if role == "extraction" else self.base_model_name
        if configured:
            return configured
        return HUB_NAMES.get(base_dir.name, str(base_dir))


class Publication(ConfigurableResource):
    """Adapters and the corpus copy published to `gs://<bucket>/<prefix>/...`; no bucket: none."""

    bucket: str = Field(default="", description="GCS bucket to publish adapters and copy the "
                        "corpus to; empty: none.")
    prefix: str = Field(default=declared_default("gcs_prefix"),
                        description="Object name prefix in the bucket.")
    project: str | None = Field(default=None, description="GCS project of the client; "
                                "none: from the environment's credentials.")
    retry_timeout_s: float = Field(
        default=declared_default("gcs_retry_timeout_s"), description="Seconds the client "
        "library retries one request to an unreachable or failing store before the "
        "publication fails (its default policy).")

    def client(self):
        """A `google.cloud.storage.Client` made by dagster-gcp's `GCSResource` (credentials from
        the environment, STORAGE_EMULATOR_HOST for an emulator), made when something is
        published. dagster-gcp is imported here: its package loads BigQuery and pandas (~2 s),
        which every process that loads the code location would pay otherwise."""
        from dagster_gcp import GCSResource

        return GCSResource(project=self.project).get_client()

    def retry(self):
        """google-cloud-storage's default retry policy, bounded by `retry_timeout_s`."""
        return DEFAULT_RETRY.with_timeout(self.retry_timeout_s)


class ExtractionServing(ConfigurableResource):
    """Which `extraction-<tenant>` version Phase 1 serves, and how."""

    tenant: str = Field(default=declared_default("tenants")[0],
                        description="Whose `extraction-<tenant>` adapter Phase 1 serves.")
    mode: Literal["merged", "overlay"] = Field(
        default=declared_default("extraction_serving"), description="How Phase 1's managed "
        "server serves the extraction adapter: merged into a copy of the base (CPU: the base's "
        "speed) or as a vLLM LoRA overlay (GPU: cheap, no copy of the base).")
    versions: AdapterVersions = Field(description="Where the versions are.")

    def serving_version(self) -> AdapterVersion | None:
        """The newest `extraction-<tenant>` version that passed its quality gate."""
        return serving_version(self.versions.version_folder(self.tenant, "extraction"))

    def extractor(self, server: InferenceServer, log) -> InferenceServer:
        """`server` with the extraction adapter Phase 1 serves. Managed mode: the serving
        version on the model it was trained on, merged into a copy of it or as a LoRA overlay
        (`mode`); none, or one trained on another model: the model alone (with a warning on
        `log`). External mode, or an adapter already set: `server` as configured (its
        `adapter` is the gateway's)."""
        if server.mode == "external" or server.lora_modules or server.merged_adapter:
            return server
        version = self.serving_version()
        if version is None:
            return server
        base = server.resolved_model_dir().resolve()
        if Path(version.manifest.base_model.path) != base:
            log.warning(f"extraction adapter {version.path} was trained on "
                        f"{version.manifest.base_model.path}, not on the served {base}: "
                        "extracting with the model alone")
            return server
        name = version.manifest.served_name
        if self.mode == "merged":
            merged = merged_model(version, base, Path(self.versions.models_dir) / "merged")
            return server.model_copy(update={"model_dir": str(merged), "merged_adapter": name})
        return server.model_copy(update={
            "lora_modules": {name: str(version.path)}, "adapter": name})
