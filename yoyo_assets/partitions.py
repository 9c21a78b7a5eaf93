"""The `nights` partitions: one partition per calendar night, in a configurable timezone."""

import os

from dagster import DailyPartitionsDefinition

#: Timezone in which a night starts and ends (IANA name), from YOYO_TIMEZONE; default UTC.
NIGHTS_TIMEZONE = os.environ.get("YOYO_TIMEZONE", "UTC")
#: First night that can be materialized or backfilled, from YOYO_FIRST_NIGHT (YYYY-MM-DD).
FIRST_NIGHT = os.environ.get("YOYO_FIRST_NIGHT", "2026-01-01")

# end_offset=0: the last partition is the last *completed* night, so nothing runs over a night
# that is still receiving documents.
nights = DailyPartitionsDefinition(start_date=FIRST_NIGHT, timezone=NIGHTS_TIMEZONE, end_offset=0)
