"""Phase 2: corpus buckets and (next) adapter training, versions and publication."""
