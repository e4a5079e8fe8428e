import pytest

from precomputed_tif import Box, Geometry, PrecomputedTifError
from precomputed_tif.geometry import parse_triple


def test_isotropic_keys_and_sizes():
    g = Geometry((100, 70, 45), (32, 32, 32), (1.8, 1.8, 2.0))
    assert [lv.key for lv in g.levels] == ["1_1_1", "2_2_2", "4_4_4"]
    assert [lv.size for lv in g.levels] == [(100, 70, 45), (50, 35, 23), (25, 18, 12)]
    assert g.levels[1].resolution == (3600.0, 3600.0, 4000.0)


def test_anisotropic_halves_fine_axes_first():
    g = Geometry((1000, 1000, 50), (64, 64, 64), (0.3, 0.3, 2.0), n_levels=5)
    assert [lv.key for lv in g.levels] == ["1_1_1", "2_2_1", "4_4_1", "8_8_2", "16_16_4"]
    assert [lv.step for lv in g.levels][1:] == [(2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)]
    assert g.levels[3].size == (125, 125, 25)


def test_default_levels_fit_one_chunk_in_xy():
    g = Geometry((1024, 1024, 256), (64, 64, 64))
    assert len(g.levels) == 5
    assert g.levels[-1].size[:2] == (64, 64)
    g = Geometry((1025, 1024, 256), (64, 64, 64))
    assert len(g.levels) == 6


def test_too_many_levels_is_a_clear_error():
    with pytest.raises(PrecomputedTifError, match="too many"):
        Geometry((100, 70, 45), (32, 32, 32), n_levels=10)
    with pytest.raises(PrecomputedTifError, match="at least 1"):
        Geometry((100, 70, 45), (32, 32, 32), n_levels=0)


def test_chunk_boxes_are_truncated_at_the_edge_and_cover_the_level():
    g = Geometry((100, 70, 45), (32, 32, 32))
    boxes = list(g.chunk_boxes(1))
    assert len(boxes) == 4 * 3 * 2 == g.n_chunks(1)
    assert Box(96, 100, 64, 70, 32, 45) in boxes
    assert sum(b.shape[0] * b.shape[1] * b.shape[2] for b in boxes) == 100 * 70 * 45
    assert all(g.is_chunk(1, b) for b in boxes)
    assert not g.is_chunk(1, Box(96, 128, 64, 70, 32, 45))  # past the edge
    assert not g.is_chunk(1, Box(1, 33, 0, 32, 0, 32))  # misaligned
    assert not g.is_chunk(1, Box(128, 160, 0, 32, 0, 32))  # outside


def test_chunk_names_round_trip():
    b = Box(64, 100, 0, 32, 32, 45)
    assert b.name == "64-100_0-32_32-45"
    assert Box.parse(b.name) == b
    for bad in ["64-100_0-32", "a-b_c-d_e-f", "1-2_3-4_5-6.tiff", "../1-2_3-4_5-6"]:
        with pytest.raises(ValueError):
            Box.parse(bad)


@pytest.mark.parametrize("text", ["1.8,1.8", "a,b,c", "0,1,1", "-1,1,1", "nan,1,1", "inf,1,1", ""])
def test_bad_voxel_size(text):
    with pytest.raises(PrecomputedTifError, match="voxel"):
        parse_triple(text, "voxel size", integer=False)


@pytest.mark.parametrize("text", ["64,64", "64,64,6.5", "0,64,64", "x,64,64"])
def test_bad_chunk_size(text):
    with pytest.raises(PrecomputedTifError, match="chunk"):
        parse_triple(text, "chunk size", integer=True)
