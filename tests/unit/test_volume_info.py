"""VolumeInfo: the one reading of a volume's ``info``. Read from what every format writes
(checked field by field against the file's own JSON), from hand-written infos for the cases
conversions never write, and refused in one line naming the file and the field when a field
has the wrong type."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert, formats, open_volume
from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.info import EXTRA, INFO, VolumeInfo, read_volume_info, write_info
from precomputed_tif.sources import open_source
from tests.helpers.stacks import make_volume, write_planes

VOXEL_UM = (0.75, 0.5, 3.0)


def _raw(dest) -> dict:
    with open(dest / INFO) as f:
        return json.load(f)


def _same_as_file(volume: VolumeInfo, raw: dict) -> None:
    """Every field ``volume`` exposes says what the JSON itself says."""
    assert volume.dtype == np.dtype(raw["data_type"])
    assert volume.n_channels == raw.get("num_channels", 1)
    assert volume.segmentation == (raw["type"] == "segmentation")
    assert len(volume.scales) == len(raw["scales"])
    for scale, entry in zip(volume.scales, raw["scales"]):
        assert scale.key == entry["key"]
        assert list(scale.size) == entry["size"]
        assert list(scale.chunk_size) == entry["chunk_sizes"][0]
        assert list(scale.resolution) == entry["resolution"]
        assert list(scale.voxel_offset) == entry["voxel_offset"]
        assert scale.encoding == entry["encoding"]
        assert scale.sharding == entry.get("sharding")
    assert volume.voxel_size_um == pytest.approx([r / 1000 for r in raw["scales"][0]["resolution"]])
    extra = raw.get(EXTRA, {})
    assert dict(volume.extra) == extra
    assert volume.channel_names == tuple(extra.get("channel_names", ()))
    assert volume.channel_colors == tuple(extra.get("channel_colors", ()))
    assert volume.voxel_size_from == extra.get("voxel_size_from", "")
    assert volume.display_range == (tuple(map(tuple, extra["display_range"])) if "display_range" in extra else None)
    assert volume.rgb == extra.get("rgb", False)


@pytest.mark.parametrize("name", formats.names(chunked=True))
def test_every_format_reads_back_as_the_file_says(tmp_path, name):
    """A single-channel image of odd size in every chunked format: the VolumeInfo of its info
    is the file's JSON, written back byte for byte, and the store and source built on it agree."""
    planes = write_planes(tmp_path / "planes", make_volume((9, 21, 17), "uint16", seed=3))
    dest = tmp_path / name
    convert(planes, str(dest), format=name, chunk_size=(8, 8, 8), voxel_size=VOXEL_UM, n_cores=1)
    raw = _raw(dest)
    volume = read_volume_info(dest)
    _same_as_file(volume, raw)
    assert volume.voxel_size_um == pytest.approx(VOXEL_UM)
    assert volume.voxel_size_from == "given" and volume.display_range is not None
    assert volume.where == str(dest / INFO)
    assert volume.to_json() == raw

    before = (dest / INFO).read_bytes()
    write_info(str(dest), volume.to_json())
    assert (dest / INFO).read_bytes() == before

    opened = open_volume(str(dest))
    assert opened.volume_info == volume and opened.store.dtype == np.uint16 and opened.store.channels == 1
    assert [opened.store.size(s.key) for s in volume.scales] == [s.size for s in volume.scales]
    source = open_source(str(dest))
    assert (source.shape, source.dtype, source.voxel_size) == ((9, 21, 17), np.uint16, volume.voxel_size_um)


def test_two_named_channels_sharded_precomputed(tmp_path):
    """Channels' names and colours from OME-XML, sharding specs and a per-channel display range."""
    two = tmp_path / "two.ome.tif"
    tifffile.imwrite(two, np.stack([make_volume((7, 19, 23), "uint8", seed=s) for s in (1, 2)], axis=1), ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0,
                               "Channel": {"Name": ["DAPI", "GFP"]}})
    dest = tmp_path / "out"
    convert(str(two), str(dest), format="precomputed", sharded=True, chunk_size=(8, 8, 8), n_cores=1)
    volume = read_volume_info(dest)
    _same_as_file(volume, _raw(dest))
    assert volume.n_channels == 2 and volume.channel_names == ("DAPI", "GFP")
    assert len(volume.channel_colors) == 2 and all(len(r) == 2 for r in volume.display_range or ())
    assert any(s.sharding is not None for s in volume.scales)
    assert volume.voxel_size_um == pytest.approx((0.5, 0.5, 2.0))


def test_uint64_segmentation(tmp_path):
    labels = make_volume((5, 13, 11), "uint64", segmentation=True)
    dest = tmp_path / "labels"
    convert(write_planes(tmp_path / "planes", labels), str(dest), format="precomputed", segmentation=True,
            chunk_size=(8, 8, 8), n_cores=1)
    volume = read_volume_info(dest)
    _same_as_file(volume, _raw(dest))
    assert volume.segmentation and volume.dtype == np.uint64 and volume.n_channels == 1
    assert volume.scales[0].encoding == "compressed_segmentation"
    assert volume.display_range is None and volume.channel_names == ()


def _info(**changes) -> dict:
    """A minimal volume info as other tools write it, with ``changes`` made at the top level."""
    info = {"@type": "neuroglancer_multiscale_volume", "type": "image", "data_type": "uint16", "num_channels": 1,
            "scales": [{"key": "s0", "size": [33, 17, 5], "resolution": [400, 400, 1500], "voxel_offset": [-3, 0, 7],
                        "chunk_sizes": [[16, 16, 4], [32, 32, 1]], "encoding": "raw"},
                       {"key": "s1", "size": [17, 9, 5], "resolution": [800, 800, 1500],
                        "chunk_sizes": [[16, 16, 4]]}]}
    for key, value in changes.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    return info


def test_what_older_and_other_infos_leave_out_has_its_default():
    """No num_channels is one channel; no @type, encoding or voxel_offset, no EXTRA: the defaults."""
    volume = VolumeInfo.from_json(_info(num_channels=None, **{"@type": None, EXTRA: None}))
    assert volume.n_channels == 1 and volume.dtype == np.uint16 and not volume.segmentation
    assert volume.keys == ("s0", "s1")
    coarse = volume.scale("s1")
    assert (coarse.voxel_offset, coarse.encoding, coarse.sharding) == ((0, 0, 0), "raw", None)
    fine = volume.scale("s0")
    assert (fine.size, fine.chunk_size, fine.voxel_offset) == ((33, 17, 5), (16, 16, 4), (-3, 0, 7))
    assert volume.voxel_size_um == (0.4, 0.4, 1.5)
    assert dict(volume.extra) == {} and volume.channel_names == volume.channel_colors == ()
    assert (volume.display_range, volume.rgb, volume.voxel_size_from, volume.zarr_shards) == (None, False, "", {})
    with pytest.raises(KeyError):
        volume.scale("s2")


def test_it_is_a_copy_and_gives_a_copy():
    """Changing the dict it was made from, or the dict it gives back, changes nothing in it."""
    info = _info(**{EXTRA: {"channel_names": ["a"], "display_range": [[1, 9]]}})
    volume = VolumeInfo.from_json(info)
    info["scales"][0]["size"][0] = 1
    info[EXTRA]["channel_names"].append("b")
    given = volume.to_json()
    given[EXTRA]["display_range"][0][1] = 99
    assert volume.scales[0].size[0] == 33 and volume.channel_names == ("a",)
    assert volume.to_json() == _info(**{EXTRA: {"channel_names": ["a"], "display_range": [[1, 9]]}})
    assert volume.display_range == ((1, 9),)
    with pytest.raises(TypeError):
        volume.extra["rgb"] = True  # type: ignore[index]
    assert VolumeInfo.of(volume) is volume
    assert pickle.loads(pickle.dumps(volume)) == volume  # workers receive stores and sources that hold one


def _with(path: str, value) -> dict:
    """:func:`_info` with the field at ``path`` (dotted; numbers index lists) set to ``value``."""
    info = _info(**{EXTRA: {}})
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = info
    for p in parents:
        target = target[p]
    target[last] = value
    return info


@pytest.mark.parametrize("path,value,named", [
    ("data_type", 16, "data_type"),
    ("data_type", "uint17", "data_type"),
    ("data_type", "complex64", "data_type"),
    ("num_channels", "2", "num_channels"),
    ("num_channels", 0, "num_channels"),
    ("num_channels", True, "num_channels"),
    ("type", ["image"], "type"),
    (EXTRA, ["rgb"], EXTRA),
    ("scales.0", "s0", "scales[0]"),
    ("scales.1.key", 3, "scales[1].key"),
    ("scales.0.size", [33, 17], "scale s0's size"),
    ("scales.0.size", [33, 17, 0], "scale s0's size"),
    ("scales.1.chunk_sizes", [], "scale s1's chunk_sizes"),
    ("scales.1.chunk_sizes", [[16, 16, 4.5]], "scale s1's chunk size"),
    ("scales.0.resolution", [400, "400", 1500], "scale s0's resolution"),
    ("scales.0.voxel_offset", [0, 0, 0.5], "scale s0's voxel_offset"),
    ("scales.0.encoding", None, "scale s0's encoding"),
    ("scales.0.sharding", "yes", "scale s0's sharding"),
    ("scales.1.key", "s0", "keys"),
])
def test_a_field_of_the_wrong_type_is_one_line_naming_the_file_and_the_field(path, value, named):
    with pytest.raises(PrecomputedTifError) as caught:
        VolumeInfo.from_json(_with(path, value), "/data/cells/info")
    message = str(caught.value)
    assert message.startswith("/data/cells/info") and "\n" not in message and named in message, message


@pytest.mark.parametrize("info", [[], {"scales": []}, {"type": "image"}], ids=["list", "no-scales", "none"])
def test_what_is_not_a_volume_info_keeps_its_message(info):
    with pytest.raises(PrecomputedTifError, match=r"^/d/info is not the info file of a precomputed volume$"):
        VolumeInfo.from_json(info, "/d/info")


def test_another_kind_of_info_is_not_a_volume():
    with pytest.raises(PrecomputedTifError, match=r"^/d/info holds a 'neuroglancer_annotations_v1', not a volume"):
        VolumeInfo.from_json(_info(**{"@type": "neuroglancer_annotations_v1"}), "/d/info")


@pytest.mark.parametrize("extra,read,named", [
    ({"display_range": [[0, 10], [0, 10]]}, "display_range", "1 pairs"),
    ({"display_range": [[0, "10"]]}, "display_range", "display_range"),
    ({"channel_names": "DAPI"}, "channel_names", "channel_names"),
    ({"channel_colors": ["#ff0000", 3]}, "channel_colors", "channel_colors"),
    ({"rgb": "yes"}, "rgb", "rgb"),
    ({"voxel_size_from": 1}, "voxel_size_from", "voxel_size_from"),
    ({"zarr_shards": {"s0": [64, 64]}}, "zarr_shards", "zarr_shards"),
])
def test_a_setting_of_the_wrong_type_is_refused_when_read(extra, read, named):
    """What a server never reads does not stop it serving; a reader of the setting gets one line."""
    volume = VolumeInfo.from_json(_info(**{EXTRA: extra}), "/d/info")
    with pytest.raises(PrecomputedTifError) as caught:
        getattr(volume, read)
    message = str(caught.value)
    assert message.startswith(f"/d/info: {EXTRA}.{read} must be") and named in message, message


def test_readers_name_the_info_file(tmp_path):
    """A dataset whose info has a field of the wrong type: opening it as a volume or a source is
    the same one line, naming its info."""
    dest = tmp_path / "d"
    dest.mkdir()
    write_info(str(dest), _info(num_channels=1.5))
    for opener in (read_volume_info, lambda p: open_volume(str(p)), lambda p: open_source(str(p))):
        with pytest.raises(PrecomputedTifError, match=rf"^{dest / INFO}: num_channels must be a positive whole number"):
            opener(dest)
    with pytest.raises(PrecomputedTifError, match="holds no precomputed dataset"):
        read_volume_info(tmp_path / "nothing")


def test_a_hand_written_info_opens_a_store_with_its_parsed_values(tmp_path):
    """Stores take a dict or a VolumeInfo alike."""
    info = _info()
    store_class = formats.get("precomputed").store_class()
    by_dict, by_volume = store_class(str(tmp_path), info), store_class(str(tmp_path), VolumeInfo.from_json(info))
    for store in (by_dict, by_volume):
        assert store.dtype == np.uint16 and store.channels == 1
        assert store.size("s0") == (33, 17, 5) and store.chunk_size("s1") == (16, 16, 4)
        assert store.info == info
    assert by_dict.volume_info.where == str(tmp_path / INFO)  # messages name the dataset's info
    assert by_dict.info is info and copy.deepcopy(by_volume.info) == info
