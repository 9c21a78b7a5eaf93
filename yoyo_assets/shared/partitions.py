"""The `nights` partitions: one partition per calendar night, in a configurable timezone."""

from dagster import DailyPartitionsDefinition

from .settings import Settings


def nights_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """One partition per night from `settings.schedule.first_night` (YYYY-MM-DD), in
    `settings.schedule.timezone`.

    end_offset=0: the last partition is the last *completed* night, so nothing runs over a night
    that is still receiving documents.
    """
    schedule = settings.schedule
    return DailyPartitionsDefinition(start_date=schedule.first_night, timezone=schedule.timezone,
                                     end_offset=0)
