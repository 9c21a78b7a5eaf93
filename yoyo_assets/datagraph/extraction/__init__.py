"""Entity extraction: the extractor (chunks, prompt, JSON Schema, the served model's answer;
`extractor`), its run config (`config`), its F1 against labelled documents (`quality`), and what
a graph write batch of extracted documents may hold (`batch`)."""
