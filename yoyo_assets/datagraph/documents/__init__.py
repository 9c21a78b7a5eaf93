"""The night's input documents: the three streams read with their limits (`streams`), and the
scan index that lets a night open only new or changed files (`scan_index`)."""
