"""The data wing: the Galaxy10 file (download, read, validate), the split, sky twins and sky properties.

Modules: `download` (fetch, resume, checksum), `galaxy10` (open and validate the HDF5 file; the
`python -m galaxy_core.data` CLI), `split` (stratified split, class weights), `sky` (the split that keeps
sky twins together), `properties` (ra/dec/redshift of test images, accuracy by bins).
"""
