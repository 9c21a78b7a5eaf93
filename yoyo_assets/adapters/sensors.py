"""What launches Phase 2: the corpus buckets' nightly schedule, and one sensor per bucket that
requests an adapter run when its bucket holds enough tuples no version has seen."""

from dagster import (AssetKey, DagsterInstance, DagsterRunStatus, DefaultScheduleStatus,
                     DefaultSensorStatus, EventLogEntry, RunRequest, RunsFilter,
                     ScheduleDefinition, SensorDefinition, SkipReason, asset_sensor,
                     build_schedule_from_partitioned_job)

from .checks import KEPT_LOCAL, VERDICT_TAG
from .recovery import unrecorded_version
from .resources import AdapterVersions, CorpusBuckets

#: Run tag holding the pending set (SHA-256) that a Phase 2 run was requested for.
PENDING_SET_TAG = "yoyo/pending_set"


def corpus_nightly_schedule(job, hour: int, minute: int,
                            running: bool = True) -> ScheduleDefinition:
    """The corpus buckets of the night that just ended, at the same time as Phase 1; on when
    the code location loads if `running`."""
    return build_schedule_from_partitioned_job(
        job, hour_of_day=hour, minute_of_hour=minute,
        default_status=DefaultScheduleStatus.RUNNING if running else
        DefaultScheduleStatus.STOPPED)


def adapter_run_request(instance: DagsterInstance, bucket: str, job_name: str,
                        event: EventLogEntry, threshold: int) -> RunRequest | SkipReason:
    """The decision on one corpus bucket materialization: a run request for its night when
    `pending_tuples` >= `threshold`, keyed by the pending set so that the same set is not
    requested again while a run for it is queued, running or has succeeded, or after its gate
    kept the version it trained local (a verdict, not a failure to retry: the set is trained
    again only once new tuples change it); else a skip reason that says why."""
    materialization = event.asset_materialization
    meta = materialization.metadata
    night = materialization.partition
    pending = int(meta["pending_tuples"].value)
    if pending < threshold:
        return SkipReason(f"{bucket} night {night}: {pending} pending tuples, below the "
                          f"threshold {threshold}")
    pending_set = str(meta["pending_set_sha256"].value)
    earlier = instance.get_runs(RunsFilter(job_name=job_name, tags={PENDING_SET_TAG: pending_set}))
    alive = [r for r in earlier if r.status != DagsterRunStatus.FAILURE
             or r.tags.get(VERDICT_TAG) == KEPT_LOCAL]
    if alive:
        status = ("its gate kept the version local" if alive[0].tags.get(VERDICT_TAG)
                  else alive[0].status.value)
        return SkipReason(f"{bucket} night {night}: these {pending} pending tuples were already "
                          f"requested by run {alive[0].run_id} ({status})")
    # Runs for this set that failed (budget spent, machine preempted twice) are requested again,
    # under a new key: training resumes from their last checkpoint.
    run_key = f"{bucket}:{pending_set[:32]}" + (f":attempt-{len(earlier) + 1}" if earlier else "")
    return RunRequest(run_key=run_key, partition_key=night,
                      tags={PENDING_SET_TAG: pending_set})


def corpus_threshold_sensor(tenant: str, role: str, job, running: bool = True
                            ) -> SensorDefinition:
    """Watches `<tenant>/<role>/corpus_bucket` and launches `job` for the night whose bucket
    reaches the adapter store's threshold, or whose version a killed run saved but never
    recorded (the run then records and publishes it without training); on when the code
    location loads if `running`."""

    @asset_sensor(asset_key=AssetKey([tenant, role, "corpus_bucket"]), job=job,
                  name=f"{tenant}_{role}_corpus_threshold", minimum_interval_seconds=60,
                  default_status=DefaultSensorStatus.RUNNING if running else
                  DefaultSensorStatus.STOPPED,
                  description=f"Requests a new {role} adapter of {tenant} when its bucket holds "
                  "enough tuples that no adapter was trained on.")
    def sensor(context, asset_event: EventLogEntry, corpus_buckets: CorpusBuckets,
               adapter_versions: AdapterVersions):
        decision = adapter_run_request(context.instance, f"{role}-{tenant}", job.name,
                                       asset_event, corpus_buckets.threshold)
        night = asset_event.asset_materialization.partition
        saved = unrecorded_version(context.instance, adapter_versions, tenant, role, night)
        if isinstance(decision, SkipReason) and saved is not None:
            return RunRequest(run_key=f"{role}-{tenant}:record:{saved.path.name}:{night}",
                              partition_key=night)
        return decision

    return sensor
