"""Survey-scale classification: a catalogue of cutouts -> a Parquet catalogue, on Dask.

`python -m galaxy_core.catalog --run RUN --out OUT INPUT...` (see `galaxy_core.catalog.cli` and
docs/catalog.md). One concept per module, lowest first:

- `inputs`: what the command was given (image files/folders, a table with a path column, an HDF5
  file of images), its identity, and the table staged as `OUT/_input.parquet` (one row group per
  partition, so a task reads its rows itself).
- `writer`: the output's columns (`probability_column`), one partition's Parquet part file written
  atomically, the summaries read back from the committed parts.
- `manifest`: `OUT/_manifest.json` (run, input, options, partitions done), the refusal of a
  mismatching rerun, the overwrite guard.
- `rows`: on a worker, one partition's carried columns and decoded images, in batches.
- `worker`: the run loaded once per worker process; `classify_partition`, the task.
- `engine`: the Dask side: a local cluster or an existing scheduler, the tasks, the summaries.
- `cli`: the command line.
"""
