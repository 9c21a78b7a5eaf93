"""The `nights` partitions: one partition per calendar night, in a configurable timezone."""

from dagster import DailyPartitionsDefinition

from .settings import Settings


def nights_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """One partition per night from `settings.first_night` (YYYY-MM-DD), in `settings.timezone`.

    end_offset=0: the last partition is the last *completed* night, so nothing runs over a night
    that is still receiving documents.
    """
    return DailyPartitionsDefinition(start_date=settings.first_night, timezone=settings.timezone,
                                     end_offset=0)
