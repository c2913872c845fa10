"""The run bundle format (runs/<name>/), its one owner: `schema` (member names, version, the checks
shared by write and read), `write` (`write_bundle`, the one writer of predictions.h5) and `read`
(`load_bundle`, `RunBundle`, `list_bundles`)."""
