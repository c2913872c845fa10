"""Grad-CAM: feature maps weighted by their spatially averaged gradients, ReLU, upsampled.

Reference: Selvaraju et al. 2017 (arXiv:1610.02391). Same definition as tf-keras-vis 0.8.7
`Gradcam` (linear class score, mean gradient per channel, ReLU, bilinear `scipy.ndimage.zoom`
to the input size, per-image min-max normalisation).

Caveat (measured on a synthetic task): with a Flatten head and evidence that is coded by
*position* (class = which quadrant a blob is in), the spatially averaged gradients of the
channels that fire on the blob come out negative and the ReLU leaves an all-zero map; Grad-CAM++
(positive gradients only) and saliency still localise there. When the class is decided by *what*
is in a region (the usual case, and the test of this module), Grad-CAM peaks on it with both heads.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy import ndimage

from galaxy_core.explain._engine import (check_classes, check_engine, check_images, model_functions,
                                         normalize_maps, resolve_feature_layer, run_tf_keras_vis)


def gradcam_map(model, images, class_indices, layer: str | None = None, *, batch_size: int = 16,
                engine: str = "compiled") -> np.ndarray:
    """Grad-CAM heatmaps.

    Args:
        model: flat keras.Model, input float32 [0, 1] (S, S, 3), softmax output.
        images: float32 in [0, 1] or uint8, shape (N, S, S, 3).
        class_indices: int (N,): the class to explain for each image.
        layer: name of the feature-map layer; None picks the last conv feature map
            (`find_feature_layer`: e.g. `relu` for DenseNet, `block5_conv4` for VGG19).
        batch_size: images per gradient call.
        engine: "compiled" (default) or "tf-keras-vis".

    Returns:
        float32 (N, S, S) in [0, 1].
    """
    return _cam(model, images, class_indices, layer, batch_size, engine, gradcam_weights, "gradcam")


CAM_METHODS = ("gradcam", "gradcam_plus_plus")


def flat_feature_map_note(model, layer: str | None = None) -> str | None:
    """Why Grad-CAM and Grad-CAM++ show nothing for this model, or None when they can.

    Both weight the feature maps of `layer` (default the last conv feature map) and upsample the
    result: a 1 x 1 feature map (a small input through a deep backbone) gives one number per image,
    which no upsampling turns into a place, so every map is blank (zeros after normalisation).
    Callers show this note instead of such maps.

    Returns:
        One line naming the layer, its size and the input size, or None.
    """
    feature_layer = resolve_feature_layer(model, layer)
    height, width = (int(d) if d is not None else 2 for d in feature_layer.output.shape[1:3])
    if height > 1 or width > 1:
        return None
    size = " x ".join(str(d) for d in model.inputs[0].shape[1:3])
    return (f"Grad-CAM cannot show where this model looked: its feature map ({feature_layer.name!r}) is "
            f"1 x 1 at {size} px input, so a Grad-CAM map is one number, shown blank. Saliency and "
            f"SmoothGrad still work (or train at a larger image size).")


def gradcam_weights(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM at feature resolution: relu(sum_k mean_ij(dS/dA_k) * A_k). (N,h,w,K) x2 -> (N,h,w)."""
    weights = grads.mean(axis=(1, 2), keepdims=True)  # (N, 1, 1, K)
    return np.maximum((features * weights).sum(axis=-1), 0.0)


def upsample_maps(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear zoom (N, h, w) -> (N, H, W), as tf-keras-vis does. float32."""
    factors = (1.0, size[0] / cams.shape[1], size[1] / cams.shape[2])
    return ndimage.zoom(cams.astype(np.float32), factors, order=1)


def _cam(model, images, class_indices, layer, batch_size, engine, combine, method):
    check_engine(engine)
    functions = model_functions(model)
    x = check_images(model, images)
    classes = check_classes(model, class_indices, len(x))
    feature_layer = resolve_feature_layer(model, layer)
    if engine == "tf-keras-vis":
        return _tfkv_cam(functions, method, feature_layer, x, classes, batch_size)
    maps = []
    fn = functions.cam_fn(feature_layer)
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        features, grads = (t.numpy() for t in fn(tf.constant(x[part]), tf.constant(classes[part])))
        maps.append(upsample_maps(combine(features, grads), x.shape[1:3]))
    return normalize_maps(np.concatenate(maps) if maps else np.zeros((0,) + x.shape[1:3], np.float32))


def _tfkv_cam(functions, method, feature_layer, x, classes, batch_size):
    # The layer is named (not sought): tf-keras-vis would otherwise step back to a Conv2D.
    return run_tf_keras_vis(functions.visualizer(method), x, classes, batch_size,
                            penultimate_layer=feature_layer.name,
                            seek_penultimate_conv_layer=False, normalize_cam=False)
