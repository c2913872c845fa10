"""Label tables (path,label) in CSV, Parquet and FITS: names, indices, --class-names, and refusals."""

from pathlib import Path

import numpy as np
import pytest

from galaxy_core.data.label_table import is_label_table, read_label_table
from galaxy_core.errors import DatasetError


def write_csv(path: Path, rows, header="path,label") -> Path:
    path.write_text("\n".join([header, *(f"{p},{label}" for p, label in rows)]) + "\n")
    return path


def test_names_become_sorted_classes_and_paths_are_relative_to_the_table(tmp_path):
    table = read_label_table(write_csv(tmp_path / "t.csv", [("a.png", "ring"), ("sub/b.png", "bar"),
                                                            ("/abs/c.png", "ring")]))
    assert table.class_names == ("bar", "ring")
    assert table.labels.tolist() == [1, 0, 1]
    assert table.paths == (tmp_path / "a.png", tmp_path / "sub" / "b.png", Path("/abs/c.png"))


def test_class_names_order_the_names_and_name_the_indices(tmp_path):
    names = write_csv(tmp_path / "n.csv", [("a.png", "ring"), ("b.png", "bar")])
    assert read_label_table(names, ["ring", "bar"]).labels.tolist() == [0, 1]
    indices = write_csv(tmp_path / "i.csv", [("a.png", 1), ("b.png", 0), ("c.png", 1)])
    assert read_label_table(indices).class_names == ("class 0", "class 1")
    table = read_label_table(indices, ["lens", "no lens"])
    assert table.class_names == ("lens", "no lens") and table.labels.tolist() == [1, 0, 1]


def test_parquet_and_fits_tables_read_like_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table

    pq.write_table(pa.table({"Path": ["a.png", "b.png"], "Label": [0, 1], "extra": [1.5, 2.5]}),
                   tmp_path / "t.parquet")
    table = read_label_table(tmp_path / "t.parquet", ["merger", "isolated"])
    assert table.labels.tolist() == [0, 1] and table.class_names == ("merger", "isolated")
    Table({"path": ["a.png", "b.png", "c.png"], "label": ["tidal", "none", "tidal"]}).write(tmp_path / "t.fits")
    fits = read_label_table(tmp_path / "t.fits")
    assert fits.class_names == ("none", "tidal") and fits.labels.tolist() == [1, 0, 1]
    assert is_label_table("x.FITS") and is_label_table("x.csv") and not is_label_table("x.h5")


@pytest.mark.parametrize("rows, header, names, message", [
    ([("a.png", "x")], "file,class", None, "needs the columns 'path' and 'label'"),
    ([("a.png", "")], "path,label", None, "lack a path or a label"),
    ([("a.png", 3)], "path,label", ["a", "b"], "outside 0..1"),
    ([("a.png", "ring")], "path,label", ["bar", "lens"], "not among --class-names"),
    ([("a.png", 0)], "path,label", ["a", "b"], "no row has the class(es) ['b']"),
])
def test_bad_tables_are_refused_with_the_reason(tmp_path, rows, header, names, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        read_label_table(write_csv(tmp_path / "bad.csv", rows, header), names)


def test_a_missing_or_garbled_table_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_label_table(tmp_path / "none.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="Cannot read the label table"):
        read_label_table(tmp_path / "bad.parquet")
    np.testing.assert_array_equal(read_label_table(write_csv(tmp_path / "ok.csv", [("a", "x"), ("b", "y")])).labels,
                                  [0, 1])
