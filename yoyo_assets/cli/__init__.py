"""The command line (`python -m yoyo_assets`): a night in this process, run recovery, and
extraction tuples from a labelled set."""
