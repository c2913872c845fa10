"""Test-time augmentation (TTA): the 8 dihedral views of a batch (4 rotations x an optional flip).

`galaxy_core.inference.probabilities.predict_probs(..., tta=True)` averages a model's probabilities
over these views; galaxy morphology has no preferred orientation, so each view is as valid as the
original.

Example:
    >>> import numpy as np
    >>> views = dihedral_transforms(np.arange(4).reshape(1, 2, 2))
    >>> len(views), views[0].tolist()
    (8, [[[0, 1], [2, 3]]])
"""

from __future__ import annotations

import numpy as np


def dihedral_transforms(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of a batch: rot90 by k = 0..3, each without and with a left-right flip.

    Args:
        images: `(N, H, W, ...)` array with H == W.

    Returns:
        8 arrays of the same shape and dtype; the first one is the input itself.
    """
    out = []
    for k in range(4):
        rotated = np.rot90(images, k, axes=(1, 2))
        out.append(np.ascontiguousarray(rotated))
        out.append(np.ascontiguousarray(rotated[:, :, ::-1]))
    return out
