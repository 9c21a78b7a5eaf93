"""Phase 1: the nightly DataGraph rebuild: documents, entity extraction with its quality check,
and the LadybugDB graph; the assets, job, schedule and `Definitions` that run them
(`definitions.py`)."""
