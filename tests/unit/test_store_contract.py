"""Every chunked format of the registry passes the chunk store contract (tests/helpers/store_contract.py).

The stores are made as a conversion makes them: a small TIFF stack of each kind is planned into
each format (``plan_conversion``), and the plan's store class is built from the plan's ``info``
and created. A format added to the registry runs the contract with its default options; the
formats whose options change how the store behaves run once per such option (precomputed's
encodings and sharding, OME-Zarr's NGFF versions).
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import tifffile

from precomputed_tif import formats
from precomputed_tif.convert import plan_conversion
from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.formats import FormatOptions
from precomputed_tif.formats.blockfs import BLOCKFS_SUFFIX
from precomputed_tif.options import ConvertOptions
from precomputed_tif.storage import LocalStorage
from tests.helpers.object_storage import ObjectLikeStorage
from tests.helpers.stacks import make_volume, write_planes
from tests.helpers.store_contract import KINDS, ChunkStoreContract, Subject, assert_same, kind_id

SHAPE = (13, 29, 37)  # z, y, x: no axis a multiple of the chunk size
CHUNK = (16, 16, 8)  # x, y, z


def _any_kind(dtype, channels, segmentation) -> bool:
    return True


def _png(dtype, channels, segmentation) -> bool:
    return not segmentation and (dtype == "uint8" or (dtype == "uint16" and channels == 1))


def _labels(dtype, channels, segmentation) -> bool:
    return segmentation


def _blockfs_files(store, key, box) -> list[str]:
    """Blockfs keeps blocks in a few shared files: the damage cases damage them all."""
    return sorted(glob.glob(os.path.join(store.level_dir(key), glob.escape(BLOCKFS_SUFFIX) + ".[0-9]*")))


@dataclass(frozen=True)
class Variant:
    id: str
    format: str
    options: FormatOptions = FormatOptions()
    holds: Callable[[str, int, bool], bool] = _any_kind  # which (dtype, channels, segmentation) it takes
    data_files: Callable | None = None  # for a store whose chunk_keys is None
    # "local": a local directory; "object": storage with an object store's limits (no path, no append)
    storage: str = "local"


# The formats whose options make their store behave differently; any other runs with its defaults.
SPECIAL = {
    "precomputed": [
        Variant("precomputed-raw", "precomputed", FormatOptions(encoding="raw", sharded=False)),
        Variant("precomputed-raw-sharded", "precomputed", FormatOptions(encoding="raw", sharded=True)),
        Variant("precomputed-png", "precomputed", FormatOptions(encoding="png", sharded=False), _png),
        Variant("precomputed-cseg", "precomputed",
                FormatOptions(encoding="compressed_segmentation", sharded=False), _labels),
        Variant("precomputed-cseg-sharded", "precomputed",
                FormatOptions(encoding="compressed_segmentation", sharded=True), _labels),
    ],
    "ome-zarr": [Variant("ome-zarr-0.5", "ome-zarr", FormatOptions(ngff_version="0.5")),
                 Variant("ome-zarr-0.4", "ome-zarr", FormatOptions(ngff_version="0.4"))],
    "blockfs": [Variant("blockfs", "blockfs", data_files=_blockfs_files)],
}
LOCAL_VARIANTS = [v for name in formats.names(chunked=True) for v in SPECIAL.get(name, [Variant(name, name)])]
# Variants whose store also runs the contract on storage with an object store's limits (a bucket
# next): every variant of a format that is not local-only (``ChunkStore.local_only``).
ON_OBJECT_STORAGE: set[str] = {v.id for v in SPECIAL["precomputed"]} | {"zarr", "ome-zarr-0.5", "ome-zarr-0.4"}
VARIANTS = LOCAL_VARIANTS + [dataclasses.replace(v, id=f"{v.id}@object", storage="object")
                             for v in LOCAL_VARIANTS if v.id in ON_OBJECT_STORAGE]


def test_every_chunked_format_runs_the_contract():
    assert {v.format for v in VARIANTS} == set(formats.names(chunked=True))
    assert len({v.id for v in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("name", [n for n in formats.names(chunked=True) if formats.get(n).store_class().local_only])
def test_a_local_only_format_refuses_other_storage_in_one_line(tmp_path, name):
    info = {"data_type": "uint8", "num_channels": 1, "type": "image",
            "scales": [{"key": "1_1_1", "size": [8, 8, 8], "chunk_sizes": [[8, 8, 8]], "resolution": [1, 1, 1],
                        "voxel_offset": [0, 0, 0], "encoding": "raw"}]}
    with pytest.raises(PrecomputedTifError, match=rf"^mem://.*the {name} format keeps its files in a local directory"):
        formats.get(name).store_class()(ObjectLikeStorage(tmp_path / "d"), info)
    assert not os.path.exists(tmp_path / "d")


def _write_source(directory: str, dtype: str, channels: int, segmentation: bool) -> str:
    if channels == 1:
        return write_planes(directory, make_volume(SHAPE, dtype, segmentation))
    os.makedirs(directory, exist_ok=True)
    volume = np.stack([make_volume(SHAPE, dtype, seed=c) for c in range(channels)], axis=1)  # z, c, y, x
    path = os.path.join(directory, "stack.ome.tif")
    tifffile.imwrite(path, volume, ome=True, metadata={"axes": "ZCYX"})
    return path


_PLANS: dict = {}


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """(variant, kind) -> the conversion plan of a small stack of that kind, made once."""
    sources: dict = {}

    def plan(variant: Variant, kind):
        if (variant.id, kind) not in _PLANS:
            if kind not in sources:
                sources[kind] = _write_source(str(tmp_path_factory.mktemp("source")), *kind)
            options = ConvertOptions(format=variant.format, chunk_size=CHUNK, levels=2, segmentation=kind[2],
                                     format_options=variant.options)
            _PLANS[variant.id, kind] = plan_conversion(sources[kind], str(tmp_path_factory.mktemp("unused")),
                                                       options, n_cores=1)
        return _PLANS[variant.id, kind]

    return plan


def _subject(plan, variant: Variant, dest: str) -> Subject:
    storage = ObjectLikeStorage(dest) if variant.storage == "object" else LocalStorage(dest)
    store = plan.store(storage, copy.deepcopy(plan.info))
    store.lossless_copies = plan.lossless_copies
    store.create(n_writers=1)
    return Subject(store, plan.geometry, plan.passes, plan.segmentation, variant.data_files)


@pytest.fixture(scope="module")
def levels_of_every_variant(plans, tmp_path_factory):
    """A level directory with chunks in it, and its store class, of every variant."""
    out = []
    for variant in VARIANTS:
        kind = next(k for k in KINDS if variant.holds(*k))
        s = _subject(plans(variant, kind), variant, str(tmp_path_factory.mktemp(variant.id)))
        s.write_level(1, s.volume(1))
        out.append((type(s.store), (s.store.storage, s.key(1))))
    return out


# What the contract finds and the format cannot promise: (case, variant, damage) -> why.
NO_CHECKSUM = ("carries no checksum: bytes changed in place that still decode read as "
               "other data")
KNOWN_DEFECTS = {
    ("test_a_damaged_chunk_file_is_reported", "precomputed-raw", "garbage"): "a raw precomputed chunk " + NO_CHECKSUM,
    ("test_a_damaged_chunk_file_is_reported", "precomputed-raw", "flipped"): "a raw precomputed chunk " + NO_CHECKSUM,
    ("test_a_damaged_chunk_file_is_reported", "precomputed-cseg", "flipped"):
        "a compressed_segmentation chunk " + NO_CHECKSUM,
    ("test_a_damaged_chunk_file_is_reported", "ome-zarr-0.5", "flipped"):
        "an OME-Zarr 0.5 shard checksums its index only; each Blosc inner chunk " + NO_CHECKSUM,
}


def pytest_generate_tests(metafunc):
    """Every variant; and for the round trip, each kind the variant's format holds."""
    if metafunc.cls is not TestChunkStores:
        return
    if "kind" in metafunc.fixturenames:
        pairs = [(v, k) for v in VARIANTS for k in KINDS if v.holds(*k)]
        metafunc.parametrize(("variant", "kind"), pairs, ids=[f"{v.id}-{kind_id(k)}" for v, k in pairs])
    else:
        metafunc.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])


REFUSED = [(v, k) for v in VARIANTS for k in KINDS if not v.holds(*k)]


@pytest.mark.parametrize("variant, kind", REFUSED, ids=[f"{v.id}-{kind_id(k)}" for v, k in REFUSED])
def test_a_kind_a_format_cannot_hold_is_refused_when_planned(plans, variant, kind):
    """Rather than written wrong: png holds uint8 (and one-channel uint16), compressed_segmentation
    labels only -- a conversion of anything else stops at planning with one user error."""
    with pytest.raises(PrecomputedTifError):
        plans(variant, kind)


class TestChunkStores(ChunkStoreContract):
    @pytest.fixture(autouse=True)
    def known_defects(self, request, variant):
        params = request.node.callspec.params
        reason = KNOWN_DEFECTS.get((request.function.__name__, variant.id.removesuffix("@object"), params.get("how")))
        if reason:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))

    @pytest.fixture
    def make_subject(self, variant, plans, tmp_path):
        def make(dtype, channels, segmentation) -> Subject:
            kind = (dtype, channels, segmentation)
            assert variant.holds(*kind), f"{variant.id} does not hold {kind}: not a case of the contract"
            return _subject(plans(variant, kind), variant, str(tmp_path / "dataset"))

        return make

    @pytest.fixture
    def foreign_levels(self, levels_of_every_variant):
        return levels_of_every_variant

    @pytest.fixture
    def subject(self, make_subject, variant):
        default = ("uint16", 1, False)
        kind = default if variant.holds(*default) else next(k for k in KINDS if variant.holds(*k))
        return make_subject(*kind)


ZARR_ON_OBJECTS = [v for v in VARIANTS if v.storage == "object" and v.format in ("zarr", "ome-zarr")]


@pytest.mark.parametrize("variant", ZARR_ON_OBJECTS, ids=[v.id for v in ZARR_ON_OBJECTS])
@pytest.mark.parametrize("kind", [("uint16", 1, False), ("uint8", 3, False)], ids=kind_id)
def test_zarr_written_on_object_storage_reads_back_with_zarr_python(plans, variant, kind, tmp_path):
    """What a zarr or OME-Zarr store wrote through storage with an object store's limits -- the
    arrays' metadata, chunks or shards, and the NGFF root -- is a dataset zarr-python opens."""
    import zarr

    s = _subject(plans(variant, kind), variant, str(tmp_path / "dataset"))
    levels = {number: s.volume(number) for number in (1, 2)}
    for number, data in levels.items():
        s.write_level(number, data)
    s.store.write_metadata(s.store.info, "a dataset")
    s.store.finish()
    group = zarr.open_group(str(tmp_path / "dataset"), mode="r")
    attrs = group.attrs.asdict()
    multiscales = attrs.get("ome", attrs)["multiscales"]  # NGFF 0.5 keeps it under "ome"
    assert [d["path"] for d in multiscales[0]["datasets"]] == [s.key(1), s.key(2)]
    for number, data in levels.items():
        assert_same(group[s.key(number)][...], data, f"level {number} read by zarr-python")
