"""Operators' corrections stream: entity corrections (`stream`), identity decisions
(`identity_decisions`), and what both teach the extraction adapter (`tuples`: SFT tuples from
labelled documents and corrections, DPO pairs from corrections)."""
