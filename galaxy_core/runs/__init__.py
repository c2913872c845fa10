"""Work on finished runs: re-evaluation and comparison of run bundles."""
