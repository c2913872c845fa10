"""Tests of galaxy_core.preprocessing.decode: the one image decoder (formats by content, size limit before decoding,
truncated and damaged files). Hostile files are written as small headers, never gigabytes."""

import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest

from galaxy_core.preprocessing.decode import ACCEPTED_FORMATS, MAX_IMAGE_PIXELS, image_format, read_header, read_image
from galaxy_core.errors import PreprocessError


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height gray pixels (signature, IHDR, a tiny IDAT, IEND): ~60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def radiance_hdr(width: int, height: int) -> bytes:
    """A Radiance .hdr header declaring width x height pixels plus a few bytes of (bogus) data."""
    return (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode()
            + b"\x02\x02" + b"\0" * 256)


@pytest.fixture
def no_decoding(monkeypatch):
    """Record every cv2.imdecode call (a refused file must never reach the pixel decoder)."""
    calls = []
    real = cv2.imdecode

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", spy)
    return calls


def test_read_image_layouts(image_files):
    files = image_files
    for kind in ("rgb", "gray", "rgba", "large", "16bit"):
        path, expected = files[kind]
        image = read_image(path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        np.testing.assert_array_equal(image, expected, err_msg=kind)  # RGB order, lossless PNG
        np.testing.assert_array_equal(read_image(path.read_bytes()), expected)
    assert read_image(files["jpeg"][0]).shape == (40, 50, 3)


@pytest.mark.parametrize("source, match", [
    (b"", "empty"), (b"not an image at all", "not an image"), ("/no/such/file.png", "Cannot read"),
])
def test_read_image_errors(source, match):
    with pytest.raises(PreprocessError, match=match):
        read_image(source)


def test_huge_declared_image_is_refused_before_decoding(tmp_path):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 100  # just over the cap, compresses to a small PNG
    ok, png = cv2.imencode(".png", np.zeros((side, side), np.uint8))
    assert ok and len(png) < 2_000_000
    with pytest.raises(PreprocessError, match="Mpx accepted"):
        read_image(png.tobytes())


def test_accepted_formats_judged_by_content_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    encodings = {"PNG": (".png", []), "JPEG": (".jpg", []), "TIFF": (".tif", []), "BMP": (".bmp", []),
                 "WEBP": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])}  # quality > 100: lossless
    assert set(encodings) == set(ACCEPTED_FORMATS)
    for name, (ext, params) in encodings.items():
        ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        data = data.tobytes()
        assert ok and image_format(data) == name
        header = read_header(data)
        assert (header.format, header.width, header.height) == (name, 17, 12)
        # The file name says nothing: every file is called .jpg here.
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        out = read_image(path)
        assert out.shape == (12, 17, 3) and out.dtype == np.uint8
        if name != "JPEG":
            np.testing.assert_array_equal(out, image, err_msg=name)  # lossless, RGB order


def test_huge_png_is_refused_with_its_real_size(no_decoding):
    """Issue 10 item 9: a 20000 x 20000 PNG was refused as "40000000 x 40000000 pixels"."""
    with pytest.raises(PreprocessError) as info:
        read_image(png_header(20000, 20000))
    assert "20000 x 20000 pixels" in str(info.value) and "40 Mpx accepted" in str(info.value)
    assert no_decoding == []


def test_size_check_emits_no_decompression_bomb_warning():
    """Issue 10 item 11: Pillow's DecompressionBombWarning (over 89 Mpx) leaked to the terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(PreprocessError, match="10000 x 10000 pixels"):
            read_image(png_header(10000, 10000))
    assert [w for w in caught if "DecompressionBomb" in type(w.message).__name__] == []


def test_radiance_hdr_is_refused_before_decoding_even_named_png(tmp_path, no_decoding):
    """Issue 10 item 3: an 8000 x 8000 .hdr (4 MB) was decoded with 3 GB, and passed renamed .png."""
    path = tmp_path / "galaxy.png"
    path.write_bytes(radiance_hdr(8000, 8000))
    for source in (path, path.read_bytes()):
        with pytest.raises(PreprocessError, match="Radiance HDR.*not one of the accepted formats"):
            read_image(source)
    assert no_decoding == []


@pytest.mark.parametrize("data, what", [
    (b"GIF89a" + b"\0" * 32, "a GIF image"),
    (b"v/1\x01" + b"\0" * 32, "an OpenEXR image"),
])
def test_other_formats_are_named_in_the_refusal(data, what, no_decoding):
    with pytest.raises(PreprocessError, match=f"it is {what}, not one of the accepted formats"):
        read_image(data)
    assert no_decoding == []


def test_pixel_limit_applies_to_every_accepted_format():
    # A BMP header declaring 7000 x 7000 pixels (49 Mpx): refused from its header.
    bmp = (b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
           + struct.pack("<IiiHHIIiiII", 40, 7000, 7000, 1, 24, 0, 0, 2835, 2835, 0, 0))
    assert image_format(bmp) == "BMP"
    with pytest.raises(PreprocessError, match="7000 x 7000 pixels"):
        read_image(bmp + b"\0" * 64)
    side = int(MAX_IMAGE_PIXELS ** 0.5)
    assert read_header(png_header(side, side)).width == side  # at the limit: the header is fine


@pytest.mark.parametrize("keep", [0.5, 0.9, 300])
def test_truncated_jpeg_is_reported_as_truncated(keep):
    """Issue 10 item 10: a truncated JPEG was called "not an image format OpenCV reads"."""
    ok, data = cv2.imencode(".jpg", np.random.default_rng(6).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    data = data.tobytes()
    cut = data[:int(len(data) * keep) if keep < 1 else keep]
    with pytest.raises(PreprocessError, match="JPEG file is truncated or damaged"):
        read_image(cut)


def test_truncated_png_is_reported_as_truncated():
    ok, data = cv2.imencode(".png", np.random.default_rng(7).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    with pytest.raises(PreprocessError, match="PNG file is truncated or damaged"):
        read_image(data.tobytes()[:len(data) // 2])


# --- issue 25 ---------------------------------------------------------------------------------------
def test_a_float32_rgb_tiff_is_read():
    """Item 8: a valid float32 RGB TIFF (Pillow cannot parse its mode) was called "truncated or damaged"."""
    rgb = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    ok, data = cv2.imencode(".tiff", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    assert read_header(data.tobytes()) == ("TIFF", 30, 20)
    got = read_image(data.tobytes())
    assert got.dtype == np.uint8 and got.shape == (20, 30, 3)
    np.testing.assert_array_equal(got, np.rint(rgb * 255).astype(np.uint8))
    ok, loud = cv2.imencode(".tiff", (rgb * 300).astype(np.float32))
    with pytest.raises(PreprocessError, match="floating-point TIFF whose values are not all in"):
        read_image(loud.tobytes())


def test_a_large_jpeg_is_decoded_at_reduced_size(no_decoding):
    """Item 12: libjpeg scales while decoding; the full-size pixels are never made."""
    from galaxy_core.config import Config
    from galaxy_core.inference.classify import decode_side, prepare_item

    big = cv2.resize(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8), (6000, 4096))
    ok, data = cv2.imencode(".jpg", big)
    cfg = Config(image_size=64, weights="none")
    full = read_image(data.tobytes())
    small = read_image(data.tobytes(), min_side=decode_side(cfg))
    assert decode_side(cfg) == 512 and full.shape == (4096, 6000, 3) and small.shape == (512, 750, 3)  # 1/8
    no_decoding.clear()
    model_input, _ = prepare_item(data.tobytes(), cfg)
    assert model_input.shape == (64, 64, 3) and len(no_decoding) == 1
    assert no_decoding[0][1] & cv2.IMREAD_REDUCED_COLOR_8 == cv2.IMREAD_REDUCED_COLOR_8
    from galaxy_core.preprocessing.preprocess import preprocess_image

    same = preprocess_image(full, cfg).astype(int) - model_input.astype(int)
    assert np.abs(same).mean() < 4.0  # the same picture at the model's size (of 0..255; libjpeg DCT scaling vs area averaging)


def test_a_large_16_bit_rgba_png_is_shrunk_before_its_conversions(monkeypatch):
    """Item 12: the uint16 RGBA pixels are shrunk first; to_rgb_uint8 only sees the small image."""
    import galaxy_core.preprocessing.decode as decode

    seen = []
    real = decode.to_rgb_uint8
    monkeypatch.setattr(decode, "to_rgb_uint8", lambda image: seen.append(image.shape) or real(image))
    rgba = np.full((1200, 1600, 4), 40000, np.uint16)
    rgba[..., 3] = 65535  # opaque
    ok, data = cv2.imencode(".png", rgba)
    got = read_image(data.tobytes(), min_side=300)
    assert seen == [(300, 400, 4)] and got.shape == (300, 400, 3)
    assert int(got[0, 0, 0]) == round(40000 / 257)
