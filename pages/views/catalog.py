"""Catalog: open a catalogue made by `python -m galaxy_core.catalog`; counts, confidence, sky map,
filters, the most and least confident galaxies of a class, the filtered rows as CSV."""

from __future__ import annotations

import streamlit as st

from pages.lib import catalog, widgets

GALLERY_MAX = 12

st.title("Catalog")
st.caption("A catalogue is the folder `python -m galaxy_core.catalog --run RUN --out FOLDER INPUT...` writes "
           "(Parquet part files and `_manifest.json`; see docs/catalog.md). Give its path on this machine.")
folder = st.text_input("Catalogue folder", key="cat_folder", placeholder="e.g. catalogues/dr10-sample")
if not folder.strip():
    st.info("Type the path of a catalogue folder to open it.", icon=":material/folder_open:")
    st.stop()
try:
    frame, manifest = catalog.open_catalogue(folder.strip())
except catalog.CatalogueUnreadable as err:
    st.error(str(err), icon=":material/folder_off:")
    st.stop()

run = manifest["run"]
class_names = list(manifest["class_names"])
if run.get("synthetic"):
    st.warning("**Synthetic run.** This catalogue was classified by a model trained on generated galaxies, "
               "not on Galaxy10 DECaLS: its classes say nothing about real galaxies.", icon=":material/science:")
errors = int(frame["error"].notna().sum())
done = "complete" if manifest.get("complete") else "partial: the command has not finished (rerun it to resume)"
cols = st.columns(4)
cols[0].metric("Rows", f"{len(frame):,}")
cols[1].metric("Classified", f"{len(frame) - errors:,}")
cols[2].metric("Errors", f"{errors:,}")
cols[3].metric("Run", run["name"])
st.caption(f"Input: {manifest['input'].get('kind')} `{manifest['input'].get('path') or manifest['input'].get('inputs', [''])[0]}`; "
           f"{manifest['rows']:,} input rows, {manifest['partitions']} partitions, {done}. "
           f"Options: {', '.join(f'{k} {v}' for k, v in manifest['options'].items())}.")

# --- filters --------------------------------------------------------------------------------------
left, right, third = st.columns([3, 2, 1])
classes = left.multiselect("Classes", class_names, default=class_names, key="cat_classes")
confidence = right.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key="cat_conf")
with_errors = third.checkbox("Error rows", value=False, key="cat_errors",
                             help="Also keep the rows that could not be classified (their reason is in `error`).")
shown = catalog.filter_rows(frame, classes, confidence, with_errors)
st.caption(f"**{len(shown):,} of {len(frame):,} rows** pass the filters.")

a, b = st.columns(2)
with a:
    st.subheader("Class counts")
    st.plotly_chart(catalog.counts_figure(catalog.class_counts(shown, class_names)), width="stretch",
                    config={"displayModeBar": False})
with b:
    st.subheader("Confidence per class")
    st.plotly_chart(catalog.confidence_figure(shown, class_names), width="stretch", config={"displayModeBar": False})

st.subheader("Sky map")
if {"ra", "dec"} <= set(frame.columns):
    points = catalog.sky_sample(shown)
    if len(points) < len(shown):
        st.caption(f"A random {len(points):,} of the {len(shown):,} rows are drawn.")
    st.plotly_chart(catalog.sky_figure(points), width="stretch", key="cat_sky")
else:
    st.info("This catalogue has no `ra` and `dec` columns (carried from its input): no sky map.",
            icon=":material/info:")

st.subheader("Gallery")
g1, g2 = st.columns([2, 1])
present = [c for c in class_names if (shown["pred_name"] == c).fillna(False).any()]
if not present:
    st.info("No classified row passes the filters.")
else:
    name = g1.selectbox("Class", present, key="cat_gallery_class")
    most = g2.radio("Order", ["most confident", "least confident"], horizontal=True, key="cat_gallery_order")
    rows = catalog.gallery_rows(shown, name, GALLERY_MAX, most == "most confident")
    images, note = catalog.gallery_images(rows, manifest)
    if note:
        st.info(f"Images: {note}.", icon=":material/image_not_supported:")
    drawn = [(image, f"row {int(r)}: {float(c):.1%}") for image, r, c in
             zip(images, rows["row"], rows["confidence"]) if image is not None]
    if drawn:
        widgets.show_images([d[0] for d in drawn], [d[1] for d in drawn], columns=6)

st.download_button(f"Download the {len(shown):,} filtered rows (CSV)", catalog.csv_bytes(shown),
                   file_name="catalogue_filtered.csv", mime="text/csv", icon=":material/download:",
                   key="cat_download")
