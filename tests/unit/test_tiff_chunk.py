"""The fast chunk decoder agrees with tifffile, and declines what it does not handle."""

import io

import numpy as np
import pytest
import tifffile

from precomputed_tif.formats.tiff.chunk import decode_chunk
from tests.helpers.stacks import make_volume


def encode(array, **kw):
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="minisblack", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "float32"])
@pytest.mark.parametrize("kw", [{}, {"compression": "zlib"}, {"compression": "zlib", "rowsperstrip": 3},
                                {"byteorder": ">"}, {"byteorder": ">", "compression": "zlib"}])
@pytest.mark.parametrize("shape", [(5, 7, 9), (1, 13, 4), (64, 64, 64)])
def test_matches_tifffile(dtype, kw, shape):
    array = make_volume(shape, dtype, seed=sum(shape))
    got = decode_chunk(encode(array, **kw), shape, np.dtype(dtype))
    assert got is not None
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("kw", [{"compression": "lzw"}, {"compression": "zlib", "predictor": True},
                                {"tile": (16, 16)}, {"bigtiff": True}])
def test_declines_other_kinds(kw):
    array = make_volume((3, 32, 32), "uint16")
    assert decode_chunk(encode(array, **kw), (3, 32, 32), np.dtype("uint16")) is None


def test_declines_wrong_shape_dtype_and_garbage():
    array = make_volume((3, 8, 8), "uint16")
    data = encode(array, compression="zlib")
    assert decode_chunk(data, (4, 8, 8), np.dtype("uint16")) is None
    assert decode_chunk(data, (2, 8, 8), np.dtype("uint16")) is None
    assert decode_chunk(data, (3, 8, 9), np.dtype("uint16")) is None
    assert decode_chunk(data, (3, 8, 8), np.dtype("uint8")) is None
    assert decode_chunk(data, (3, 8, 8), np.dtype("float32")) is None  # wrong sample format... and size
    assert decode_chunk(b"not a tiff", (3, 8, 8), np.dtype("uint16")) is None
    assert decode_chunk(data[: len(data) // 2], (3, 8, 8), np.dtype("uint16")) is None
