"""A version that a killed run saved but never recorded: found, so that it is recorded (and
published) instead of trained again."""

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from .registry import AdapterVersion, version_for_night
from .resources import AdapterVersions


def unrecorded_version(instance: DagsterInstance, versions: AdapterVersions, tenant: str,
                       role: str, night: str) -> AdapterVersion | None:
    """The night's adapter version if a run died (SIGKILL, preemption) after saving it but
    before Dagster recorded its materialization or, for a version that passed the quality gate,
    its publication; else None. Re-materializing the adapter then records it and lets the
    publication run, with no retraining."""
    version = version_for_night(versions.version_folder(tenant, role), night)
    if version is None:
        return None

    def recorded(name: str) -> bool:
        records = instance.fetch_materializations(AssetRecordsFilter(
            asset_key=AssetKey([tenant, role, name]), asset_partitions=[night]), limit=1,
            ascending=False).records
        return bool(records) and \
            records[0].asset_materialization.metadata["version"].value == version.number

    if not recorded("adapter") or (version.passed_quality_gate and
                                   not recorded("published_adapter")):
        return version
    return None
