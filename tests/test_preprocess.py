"""hpsedge.runtime.preprocess: validation, crop geometry, bilinear sampling (with a cv2 oracle), CLIFF inputs."""

from __future__ import annotations

import numpy as np
import pytest

from hpsedge.errors import InputError, ManifestError
from hpsedge.runtime.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    as_rgb_uint8,
    cliff_bbox_info,
    crop_boxes,
    crop_images,
    crop_matrices,
    focal_length,
    normalize,
    preprocess,
    square_boxes,
    validate_boxes,
)

POCO_SPEC = {
    "input_size": [224, 224],
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "color": "RGB",
    "bbox_scale": 1.0,
    "square": True,
    "bbox_info": True,
}


def coord_image(h: int, w: int) -> np.ndarray:
    """float32 image whose channels are (x, y, 1): a pixel's value says where it came from."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack((xs, ys, np.ones_like(xs)), axis=-1)


def smooth_image(h: int, w: int, amp: float = 200.0) -> np.ndarray:
    """float64 image that is 0 at x = −1, x = W, y = −1, y = H and smooth, per channel a different amplitude.

    Extended by the zero border it stays Lipschitz: neighbouring samples (border included) differ by at most
    amp·π/(W+1) along x and amp·π/(H+1) along y.
    """
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.sin(np.pi * (xs + 1) / (w + 1)) * np.sin(np.pi * (ys + 1) / (h + 1))
    return np.stack((amp * base, 0.7 * amp * base, 0.4 * amp * base), axis=-1)


# ---- validation ---------------------------------------------------------------------------------


def test_as_rgb_uint8_accepts_and_flips() -> None:
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = as_rgb_uint8(img)
    np.testing.assert_array_equal(out, img)
    assert out.flags.c_contiguous
    bgr = as_rgb_uint8(img, bgr=True)
    np.testing.assert_array_equal(bgr, img[..., ::-1])
    assert bgr.flags.c_contiguous


@pytest.mark.parametrize(
    ("image", "pattern"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), "dtype float32"),
        (np.zeros((4, 4, 3), dtype=np.float64), "dtype float64"),
        (np.zeros((4, 4), dtype=np.uint8), r"shape \(4, 4\)"),
        (np.zeros((4, 4, 4), dtype=np.uint8), r"shape \(4, 4, 4\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
    ],
)
def test_as_rgb_uint8_rejects(image: np.ndarray, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        as_rgb_uint8(image)


def test_validate_boxes_ok() -> None:
    b = validate_boxes([[10, 20, 50, 80], [-5, -5, 20, 20]], (100, 200))  # partly outside is fine
    assert b.dtype == np.float64 and b.shape == (2, 4)
    assert validate_boxes([], (100, 200)).shape == (0, 4)
    assert validate_boxes(np.zeros((0, 4)), (100, 200)).shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "pattern"),
    [
        ([[0, 0, 10, 10], [1, np.nan, 5, 5]], "box 1 has NaN or inf"),
        ([[0, 0, 10, np.inf]], "box 0 has NaN or inf"),
        ([[0, 0, 10, 10], [5, 5, 5, 9]], "box 1 has zero or negative area"),
        ([[5, 9, 8, 2]], "box 0 has zero or negative area"),
        ([[0, 0, 10, 10], [200, 10, 260, 50]], "box 1 .* entirely outside"),
        ([[-30, -30, 0, 0]], "box 0 .* entirely outside"),
        ([0, 0, 10, 10], r"shape \[K, 4\]"),
        ([[0, 0, 10]], r"shape \[K, 4\]"),
        ([["a", 0, 1, 1]], "numbers"),
    ],
)
def test_validate_boxes_rejects(boxes: object, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        validate_boxes(boxes, (100, 200))


# ---- geometry -----------------------------------------------------------------------------------


def test_square_boxes_and_aspect() -> None:
    boxes = np.array([[10.0, 20.0, 70.0, 120.0]])  # w = 60, h = 100, centre (40, 70)
    c, s = square_boxes(boxes)
    np.testing.assert_array_equal(c, [[40.0, 70.0]])
    np.testing.assert_array_equal(s, [100.0])
    np.testing.assert_array_equal(square_boxes(boxes, scale=1.2)[1], [120.0])
    _, wh = crop_boxes(boxes, (224, 224))
    np.testing.assert_array_equal(wh, [[100.0, 100.0]])
    # 256×192 (H×W, aspect 3:4): grown to (3S/4, S) with S = max(h, 4w/3) = max(100, 80) = 100.
    _, wh = crop_boxes(boxes, (256, 192))
    np.testing.assert_array_equal(wh, [[75.0, 100.0]])
    _, wh = crop_boxes(boxes, (256, 192), keep_aspect=False)
    np.testing.assert_array_equal(wh, [[60.0, 100.0]])


def test_crop_matrix_maps_centre_and_corner() -> None:
    m = crop_matrices(np.array([[300.0, 200.0]]), np.array([112.0]), (224, 224))[0]
    # crop centre (112, 112) → box centre; crop (0, 0) → box top-left corner; crop (224, 224) → bottom-right.
    np.testing.assert_array_equal(m @ [112, 112, 1], [300.0, 200.0])
    np.testing.assert_array_equal(m @ [0, 0, 1], [244.0, 144.0])
    np.testing.assert_array_equal(m @ [224, 224, 1], [356.0, 256.0])


def test_crop_matrix_matches_official_patch_transform() -> None:
    import cv2
    # The official gen_trans_from_patch_cv (scale 1, rot 0) built from three float32 point pairs:
    # centre → (W/2, H/2), centre + (0, h/2) → (W/2, H), centre + (w/2, 0) → (W, H/2).
    cx, cy, bw, bh, pw, ph = 321.7, 143.2, 187.3, 187.3, 224, 224
    src = np.float32([[cx, cy], [cx, cy + bh / 2], [cx + bw / 2, cy]])
    dst = np.float32([[pw / 2, ph / 2], [pw / 2, ph], [pw, ph / 2]])
    official = cv2.getAffineTransform(src, dst)  # source → crop
    ours = crop_matrices(np.array([[cx, cy]]), np.array([bw]), (ph, pw))[0]
    np.testing.assert_allclose(cv2.invertAffineTransform(ours), official, rtol=1e-5, atol=1e-4)


# ---- bilinear crop --------------------------------------------------------------------------------


def test_crop_coordinate_image_centre_and_corners() -> None:
    img = coord_image(300, 400)
    center = np.array([[200.25, 150.5]])
    size = np.array([112.0])  # box (144.25, 94.5)–(256.25, 206.5), fully inside
    m = crop_matrices(center, size, (224, 224))
    crop = crop_images(img, m, (224, 224), out_dtype=np.float32)[0]
    # Bilinear sampling reproduces the linear coordinate ramps exactly: value = source (x, y).
    np.testing.assert_allclose(crop[112, 112, :2], [200.25, 150.5], atol=1e-4)
    np.testing.assert_allclose(crop[0, 0, :2], [144.25, 94.5], atol=1e-4)
    np.testing.assert_allclose(crop[223, 223, :2], [144.25 + 223 * 0.5, 94.5 + 223 * 0.5], atol=1e-4)
    np.testing.assert_allclose(crop[..., 2], 1.0)


def test_crop_integer_shift_is_exact_and_border_is_zero() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, size=(240, 320, 3), dtype=np.uint8)  # no zeros inside
    # A 224-px box with an integer top-left corner: the crop is a pure shift, source pixel (x1+j, y1+i).
    boxes = np.array([[50.0, 10.0, 274.0, 234.0], [-100.0, -50.0, 124.0, 174.0]])
    c, s = square_boxes(boxes)
    crops = crop_images(img, crop_matrices(c, s, (224, 224)), (224, 224))
    assert crops.dtype == np.uint8 and crops.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(crops[0], img[10:234, 50:274])
    # Second box sticks out by 100 px left and 50 px up: those crop pixels are 0, the rest is the image.
    assert (crops[1, :, :100] == 0).all() and (crops[1, :50] == 0).all()
    np.testing.assert_array_equal(crops[1, 50:, 100:], img[0:174, 0:124])


def test_crop_aspect_crop_is_the_centre_of_the_square_crop() -> None:
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, size=(300, 260, 3)).astype(np.float32)
    boxes = np.array([[40.3, 30.1, 130.9, 250.7]])
    c, sq = crop_boxes(boxes, (256, 256))
    c2, wh = crop_boxes(boxes, (256, 192))
    full = crop_images(img, crop_matrices(c, sq, (256, 256)), (256, 256), np.float32)
    narrow = crop_images(img, crop_matrices(c2, wh, (256, 192)), (256, 192), np.float32)
    np.testing.assert_allclose(narrow, full[:, :, 32:224], atol=1e-3)


def test_crop_tiny_image_and_far_coordinates() -> None:
    img = np.full((1, 1, 1), 100.0, np.float32)
    # Crop pixel (0, 0) samples source (−0.5, 0): half the pixel, half the zero border.
    m = np.array([[[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]]])
    out = crop_images(img, m, (2, 2), np.float32)[0, :, :, 0]
    np.testing.assert_allclose(out, [[50.0, 50.0], [0.0, 0.0]])
    # Boxes absurdly far away give zeros, not overflow.
    far = crop_matrices(np.array([[1e30, -1e30]]), np.array([1e3]), (4, 4))
    assert (crop_images(np.ones((8, 8, 3), np.uint8), far, (4, 4)) == 0).all()


def test_crop_empty_batch() -> None:
    out = crop_images(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 2, 3)), (224, 224))
    assert out.shape == (0, 224, 224, 3) and out.dtype == np.uint8


# cv2 oracle. OpenCV 4.x's INTER_LINEAR works in fixed point: the source coordinate is rounded to 1/32 px
# (INTER_BITS = 5, after rounding each affine term to 1/1024 px), and for uint8 the two 1-D weights are
# 15-bit integers (OpenCV 5 is at least as precise). Hence:
#  * source coordinates on the 1/32 grid → float32 images agree to float rounding; uint8 crops differ by at
#    most 1 gray level (weight quantisation only moves the value by < 0.05 before rounding);
#  * any other coordinates → the sampling point moves by at most 1/64 + 2/1024 px, so the difference is at
#    most (Lx + Ly)·(1/64 + 2/1024) for an image whose neighbouring samples differ by at most Lx, Ly.

WARP_FLAGS = "INTER_LINEAR|WARP_INVERSE_MAP"


def _cv2_crops(cv2: object, image: np.ndarray, matrices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    return np.stack(
        [
            cv2.warpAffine(
                image,
                m,
                (out_hw[1], out_hw[0]),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            for m in matrices
        ]
    )


def test_crop_matches_cv2_on_the_1_32_grid() -> None:
    import cv2
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(150, 200, 3), dtype=np.uint8)
    # Centres on the 1/32 grid, box/crop ratios 1.25, 0.4375, 2.5, 0.875 (multiples of 1/32): every
    # source coordinate is exact. Boxes 2–4 stick out of the image (zero border).
    center = np.array([[100.5, 70.25], [5.0, 7.5], [180.125, 140.0], [-10.0, 75.0]])
    size = np.array([280.0, 98.0, 560.0, 196.0])
    m = crop_matrices(center, size, (224, 224))
    ours = crop_images(img, m, (224, 224)).astype(np.int16)
    ref = _cv2_crops(cv2, img, m, (224, 224)).astype(np.int16)
    assert np.abs(ours - ref).max() <= 1
    assert (ours != ref).mean() < 0.05  # only values within ~0.05 of a .5 boundary may round differently
    f = img.astype(np.float32)
    np.testing.assert_allclose(
        crop_images(f, m, (224, 224), np.float32), _cv2_crops(cv2, f, m, (224, 224)), atol=1e-3
    )


def test_crop_matches_cv2_at_arbitrary_coordinates() -> None:
    import cv2
    h, w, amp = 150, 200, 200.0
    smooth = smooth_image(h, w, amp)
    lx, ly = amp * np.pi / (w + 1), amp * np.pi / (h + 1)
    bound = (lx + ly) * (1 / 64 + 2 / 1024)  # ≈ 0.13 gray levels
    rng = np.random.default_rng(3)
    center = np.stack((rng.uniform(-20, w + 20, 6), rng.uniform(-20, h + 20, 6)), axis=1)
    size = rng.uniform(40, 400, 6)
    m = crop_matrices(center, size, (224, 224))
    f = smooth.astype(np.float32)
    diff = np.abs(crop_images(f, m, (224, 224), np.float32) - _cv2_crops(cv2, f, m, (224, 224)))
    assert diff.max() <= bound + 1e-3
    # uint8: rounded samples differ by at most L + 1 between neighbours; the pre-rounding gap stays < 1.
    u8 = np.round(smooth).astype(np.uint8)
    assert (lx + ly + 2) * (1 / 64 + 2 / 1024) < 1
    diff8 = np.abs(crop_images(u8, m, (224, 224)).astype(int) - _cv2_crops(cv2, u8, m, (224, 224)))
    assert diff8.max() <= 1


def test_crop_general_affine_matches_cv2() -> None:
    import cv2
    h, w, amp = 150, 200, 200.0
    f = smooth_image(h, w, amp).astype(np.float32)
    lx, ly = amp * np.pi / (w + 1), amp * np.pi / (h + 1)
    a = np.deg2rad(30.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * 0.6
    m = np.concatenate((rot, [[60.0], [10.0]]), axis=1)[None]
    ours = crop_images(f, m, (128, 160), np.float32)
    ref = _cv2_crops(cv2, f, m, (128, 160))
    assert np.abs(ours - ref).max() <= (lx + ly) * (1 / 64 + 2 / 1024) + 1e-3
    assert ours.any()


# ---- normalisation and CLIFF inputs ---------------------------------------------------------------


def test_normalize_matches_torchvision_order() -> None:
    crops = np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3).astype(np.uint8) * 3
    out = normalize(crops)
    assert out.shape == (2, 3, 4, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    mean = np.float32(IMAGENET_MEAN)
    std = np.float32(IMAGENET_STD)
    for ch in range(3):
        ref = (crops[..., ch].astype(np.float32) / np.float32(255.0) - mean[ch]) / std[ch]
        np.testing.assert_array_equal(out[:, ch], ref)
    with pytest.raises(InputError, match="3 values"):
        normalize(crops, mean=(0.5, 0.5))


def test_cliff_bbox_info_by_hand() -> None:
    # Image 480×640 (H×W): f = √(640² + 480²) = 800. Box (300, 100)–(400, 340): w = 100, h = 240,
    # centre (350, 220), b = max(w, h) = 240.
    #   (cx − W/2)/f·2.8 = (350 − 320)/800·2.8 = 0.105
    #   (cy − H/2)/f·2.8 = (220 − 240)/800·2.8 = −0.07
    #   (b − 0.24f)/(0.06f) = (240 − 192)/48 = 1.0
    assert focal_length((480, 640)) == 800.0
    c, s = square_boxes(np.array([[300.0, 100.0, 400.0, 340.0]]))
    info = cliff_bbox_info(c, s, (480, 640))
    assert info.dtype == np.float32 and info.shape == (1, 3)
    np.testing.assert_allclose(info, [[0.105, -0.07, 1.0]], rtol=1e-6)


# ---- preprocess --------------------------------------------------------------------------------------


def test_preprocess_feeds_and_meta() -> None:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    boxes = [[300.0, 100.0, 400.0, 340.0], [10.5, 20.25, 90.0, 60.0]]
    feeds, meta = preprocess(img, boxes, POCO_SPEC)
    assert set(feeds) == {"image", "bbox_info"}
    assert feeds["image"].shape == (2, 3, 224, 224) and feeds["image"].dtype == np.float32
    np.testing.assert_allclose(feeds["bbox_info"][0], [0.105, -0.07, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(meta.center, [[350.0, 220.0], [50.25, 40.125]])
    np.testing.assert_array_equal(meta.size, [240.0, 79.5])
    assert meta.image_hw == (480, 640) and meta.focal == 800.0 and meta.num_persons == 2
    # Same pipeline by hand.
    crops = crop_images(img, crop_matrices(meta.center, meta.size, (224, 224)), (224, 224))
    np.testing.assert_array_equal(feeds["image"], normalize(crops))
    # Pure and deterministic; BGR input gives the same feeds.
    again, _ = preprocess(img[..., ::-1], boxes, POCO_SPEC, bgr=True)
    np.testing.assert_array_equal(again["image"], feeds["image"])
    # Without bbox_info (PARE/HMR), and an empty batch.
    feeds2, _ = preprocess(img, boxes, {"input_size": [224, 224]})
    assert set(feeds2) == {"image"}
    np.testing.assert_array_equal(feeds2["image"], feeds["image"])
    empty, meta0 = preprocess(img, [], POCO_SPEC)
    assert empty["image"].shape == (0, 3, 224, 224) and empty["bbox_info"].shape == (0, 3)
    assert meta0.num_persons == 0 and meta0.matrices.shape == (0, 2, 3)


def test_preprocess_bbox_scale_and_bgr_model() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[..., 0] = 200  # red
    spec = {"input_size": [32, 32], "bbox_scale": 1.5, "color": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1]}
    feeds, meta = preprocess(img, [[40, 40, 60, 50]], spec)
    np.testing.assert_array_equal(meta.size, [30.0])
    # A BGR model gets the red value in channel 2.
    np.testing.assert_allclose(feeds["image"][0, 2], 200 / 255, rtol=1e-6)
    np.testing.assert_array_equal(feeds["image"][0, 0], 0.0)


def test_preprocess_bad_input() -> None:
    img = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(InputError, match="dtype float32"):
        preprocess(img.astype(np.float32), [[0, 0, 10, 10]], POCO_SPEC)
    with pytest.raises(InputError, match=r"shape \(50, 60\)"):
        preprocess(img[..., 0], [[0, 0, 10, 10]], POCO_SPEC)
    with pytest.raises(InputError, match="NaN"):
        preprocess(img, [[0, 0, np.nan, 10]], POCO_SPEC)
    with pytest.raises(InputError, match="zero or negative area"):
        preprocess(img, [[5, 5, 5, 10]], POCO_SPEC)
    with pytest.raises(InputError, match="outside"):
        preprocess(img, [[70, 0, 90, 10]], POCO_SPEC)
    with pytest.raises(ManifestError, match="input_size"):
        preprocess(img, [[0, 0, 10, 10]], {"mean": [0, 0, 0]})
