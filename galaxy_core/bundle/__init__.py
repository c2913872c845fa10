"""The run bundle format (runs/<name>/): its one owner. Writing, validating and reading bundles."""
