"""Phase 1: the nightly DataGraph rebuild (documents, entity extraction, graph writes)."""
