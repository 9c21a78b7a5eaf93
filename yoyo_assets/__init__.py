"""yoyo-assets: the nightly DataGraph rebuild and adapter training as a Dagster asset graph."""
