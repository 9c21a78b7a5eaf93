"""Phase 2: corpus buckets, adapter training (QLoRA SFT and DPO), versions and their manifest,
the serving check as a vLLM LoRA overlay, publication to GCS; the assets, checks, jobs, sensors
and `Definitions` that run them (`definitions.py`)."""
