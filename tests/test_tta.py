"""Tests of galaxy_core.inference.tta: the 8 dihedral views used for test-time augmentation."""

import numpy as np

from galaxy_core.inference.tta import dihedral_transforms


def test_dihedral_transforms_are_the_8_distinct_symmetries():
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    views = dihedral_transforms(x)
    assert len(views) == 8 and np.array_equal(views[0], x)
    assert len({v.tobytes() for v in views}) == 8
    assert np.array_equal(views[1][0, :, :, 0], np.fliplr(x[0, :, :, 0]))
    assert np.array_equal(views[2][0, :, :, 0], np.rot90(x[0, :, :, 0]))
