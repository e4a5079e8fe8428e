"""Channel names and colours go from the input to every output.

Inputs are written by other software: tifffile's OME writer (``Channel`` names and colours),
a hand-written OME-XML as Bio-Formats writes it (one channel without a name), and tifffile's
ImageJ writer (a composite hyperstack with slice labels and LUTs). Outputs are read back by
readers that are not ours: json for ``info``, zarr-python for the NGFF ``omero`` metadata,
ome-types (schema-validated) and bioio for the OME-TIFF's OME-XML, and the Neuroglancer links
the tools print are decoded with urllib and json.
"""

import json
import os
import re
import urllib.parse

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from precomputed_tif.viewer.links import dataset_link
from tests.helpers.servers import start_webserver

Z, Y, X = 5, 37, 41  # odd; nothing divides the chunk size
CHUNK = (16, 16, 16)
FORMATS = [("tiff", None), ("zarr", None), ("precomputed", None), ("ome-zarr", "0.5"), ("ome-zarr", "0.4"),
           ("ome-tiff", None)]
FORMAT_IDS = [f"{f}-{v}" if v else f for f, v in FORMATS]
NAMED = ["DAPI", "Membrane"]
NAMED_COLORS = ["#0000ff", "#ff00ff"]  # blue, magenta


def volume(nc, dtype=np.uint16, seed=0) -> np.ndarray:
    """(z, c, y, x) with different data per channel."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, (Z, nc, Y, X)).astype(dtype)


def ome_rgba(r, g, b) -> int:
    """OME's Color: RGBA in a signed 32-bit integer (computed here, not by the code under test)."""
    v = (r << 24) | (g << 16) | (b << 8) | 0xFF
    return v - (1 << 32) if v >= 1 << 31 else v


def write_ome_named(directory) -> str:
    path = os.path.join(directory, "named.ome.tif")
    tifffile.imwrite(path, volume(2), ome=True,
                     metadata={"axes": "ZCYX", "Channel": {"Name": NAMED,
                                                            "Color": [ome_rgba(0, 0, 255), ome_rgba(255, 0, 255)]}})
    with tifffile.TiffFile(path) as tif:  # what tifffile wrote is what this test means
        assert 'Name="DAPI"' in tif.ome_metadata and 'Name="Membrane"' in tif.ome_metadata
    return path


def write_imagej_named(directory) -> str:
    """A composite ImageJ hyperstack: every image labelled with its channel's name, a blue and a
    magenta LUT."""
    path = os.path.join(directory, "named_ij.tif")
    blue = np.zeros((3, 256), np.uint8)
    blue[2] = np.arange(256)
    magenta = np.zeros((3, 256), np.uint8)
    magenta[0] = magenta[2] = np.arange(256)
    tifffile.imwrite(path, volume(2), imagej=True,
                     metadata={"axes": "ZCYX", "mode": "composite", "Labels": NAMED * Z, "LUTs": [blue, magenta]})
    with tifffile.TiffFile(path) as tif:
        meta = tif.imagej_metadata
        assert meta["channels"] == 2 and meta["Labels"] == NAMED * Z and len(meta["LUTs"]) == 2
    return path


WRITERS = {"ome": write_ome_named, "imagej": write_imagej_named}

# As Bio-Formats writes it: colours in OME's signed RGBA, the second channel unnamed and uncoloured.
HAND_WRITTEN_OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:schemaLocation="http://www.openmicroscopy.org/Schemas/OME/2016-06 http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd"
     Creator="OME Bio-Formats 7.3.1">
  <Image ID="Image:0" Name="scan">
    <Pixels BigEndian="false" DimensionOrder="XYCZT" ID="Pixels:0" SizeC="3" SizeT="1" SizeX="{x}" SizeY="{y}"
            SizeZ="{z}" Type="uint8">
      <Channel ID="Channel:0:0" Name="FITC BP" Color="16711935" SamplesPerPixel="1"/>
      <Channel ID="Channel:0:1" SamplesPerPixel="1"/>
      <Channel ID="Channel:0:2" Name="Cy5" Color="-16776961" SamplesPerPixel="1"/>
      <TiffData FirstC="0" FirstT="0" FirstZ="0" IFD="0" PlaneCount="{planes}"/>
    </Pixels>
  </Image>
</OME>
"""


def write_hand_written_ome(directory) -> str:
    path = os.path.join(directory, "hand.ome.tif")
    planes = volume(3, np.uint8).reshape(Z * 3, Y, X)
    xml = HAND_WRITTEN_OME.format(x=X, y=Y, z=Z, planes=Z * 3)
    with tifffile.TiffWriter(path) as w:
        for i, plane in enumerate(planes):
            w.write(plane, description=xml if i == 0 else None, metadata=None, photometric="minisblack")
    from ome_types import from_xml

    from_xml(xml, validate=True)  # a valid OME document, not something only we would accept
    return path


# --- independent read-back ----------------------------------------------------------------------


def run_cli(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def convert_to(source, dest, fmt, version, **kw):
    return convert(source, str(dest), format=fmt, ngff_version=version, n_cores=1,
                   **({} if fmt == "ome-tiff" else {"chunk_size": CHUNK}), **kw)


def read_info(dest) -> tuple[list, list]:
    with open(os.path.join(dest, "info")) as f:
        extra = json.load(f)["precomputed_tif"]
    return extra["channel_names"], extra["channel_colors"]


def read_ngff(dest, version) -> tuple[list, list]:
    """(labels, colours as #rrggbb) of the omero metadata, read with zarr-python."""
    import zarr

    attrs = dict(zarr.open_group(str(dest), mode="r", zarr_format=2 if version == "0.4" else 3).attrs)
    omero = attrs["omero"]
    if version == "0.5":
        assert attrs["ome"]["omero"] == omero
    for c in omero["channels"]:
        assert re.fullmatch(r"[0-9A-Fa-f]{6}", c["color"]), c  # NGFF: hex RRGGBB, no '#'
    return [c["label"] for c in omero["channels"]], ["#" + c["color"].lower() for c in omero["channels"]]


def read_ome_tiff(dest) -> tuple[list, list]:
    """(names, colours as #rrggbb) of the OME-XML, validated against the schema by ome-types, and
    the names bioio sees."""
    import bioio_ome_tiff
    from bioio import BioImage
    from ome_types import from_xml

    image = os.path.join(dest, os.path.basename(os.path.abspath(dest)) + ".ome.tif")
    with tifffile.TiffFile(image) as tif:
        ome = from_xml(tif.pages[0].description, validate=True)
    channels = ome.images[0].pixels.channels
    names = [c.name for c in channels]
    assert list(BioImage(image, reader=bioio_ome_tiff.Reader).channel_names) == names
    return names, ["#{:02x}{:02x}{:02x}".format(*c.color.as_rgb_tuple()[:3]) for c in channels]


def read_back(dest, fmt, version) -> tuple[list, list]:
    """What an independent reader of the format sees; for formats with ``info`` and NGFF
    metadata, both must agree."""
    if fmt == "ome-tiff":
        return read_ome_tiff(dest)
    seen = read_info(dest)
    if fmt in ("zarr", "ome-zarr"):
        assert read_ngff(dest, version or "0.4") == seen
    return seen


def decode_link(link: str) -> dict:
    assert link.startswith("https://") and "#!" in link, link
    return json.loads(urllib.parse.unquote(link.split("#!", 1)[1]))


def shown(layer: dict) -> tuple[str, list[str], list[str]]:
    """(layer name, colour defaults, invlerp control names) of an image layer's shader."""
    shader = layer["shader"]
    return (layer["name"], re.findall(r'#uicontrol vec3 \w+ color\(default="(#[0-9a-f]{6})"\)', shader),
            re.findall(r"#uicontrol invlerp (\w+)\(", shader))


def link_of(dest) -> dict:
    with open(os.path.join(dest, "info")) as f:
        info = json.load(f)
    return decode_link(dataset_link("precomputed://http://127.0.0.1:9000", info, "image"))["layers"][0]


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,version", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_named_coloured_channels_reach_every_format(tmp_path, writer, fmt, version):
    source = WRITERS[writer](tmp_path)
    dest = tmp_path / "out"
    convert_to(source, dest, fmt, version)
    assert read_back(dest, fmt, version) == (NAMED, NAMED_COLORS)
    if fmt != "ome-tiff":
        name, colours, controls = shown(link_of(dest))
        assert (name, colours, controls) == ("image (DAPI, Membrane)", NAMED_COLORS, ["ch_DAPI", "ch_Membrane"])


@pytest.mark.parametrize("fmt,version", [("precomputed", None), ("ome-zarr", "0.5"), ("ome-tiff", None)],
                         ids=["precomputed", "ome-zarr-0.5", "ome-tiff"])
def test_hand_written_ome_xml_unnamed_channel_gets_the_default(tmp_path, fmt, version):
    dest = tmp_path / "out"
    convert_to(write_hand_written_ome(tmp_path), dest, fmt, version)
    # Bio-Formats' 16711935 is 0x00FF00FF: green; -16776961 is 0xFF0000FF: red. The channel with
    # no colour gets the second default colour, magenta.
    assert read_back(dest, fmt, version) == (["FITC BP", "channel 1", "Cy5"], ["#00ff00", "#ff00ff", "#ff0000"])
    if fmt != "ome-tiff":
        _, _, controls = shown(link_of(dest))
        assert controls == ["ch_FITC_BP", "ch1", "ch_Cy5"]  # GLSL names; the unnamed one keeps ch<i>


@pytest.mark.parametrize("fmt,version", FORMATS, ids=FORMAT_IDS)
def test_one_picked_channel_keeps_its_name_and_colour(tmp_path, capsys, fmt, version):
    dest = tmp_path / "out"
    run_cli(capsys, "--source", write_ome_named(tmp_path), "--dest", str(dest), "--format", fmt, "--channel", "1",
            "--n-cores", "1", *(["--ngff-version", version] if version else []))
    assert read_back(dest, fmt, version) == (["Membrane"], ["#ff00ff"])
    if fmt != "ome-tiff":
        layer = link_of(dest)
        assert shown(layer) == ("image (Membrane)", ["#ff00ff"], ["ch_Membrane"])
        assert "emitRGB(ch_Membrane() * color_Membrane)" in layer["shader"]


def write_unnamed(directory, kind) -> str:
    if kind == "planes":  # one grey channel, one file per plane, no metadata at all
        for z, plane in enumerate(volume(1)[:, 0]):
            tifffile.imwrite(os.path.join(directory, f"img_{z:03d}.tif"), plane)
        return os.path.join(str(directory), "img_*.tif")
    path = os.path.join(directory, f"{kind}.tif")
    if kind == "ome":  # channels without names or colours
        tifffile.imwrite(path, volume(2), ome=True, metadata={"axes": "ZCYX"})
    elif kind == "ome-white":  # every channel white (OME's default Color -1): no colour at all
        tifffile.imwrite(path, volume(2), ome=True, metadata={"axes": "ZCYX", "Channel": {"Color": [-1, -1]}})
    else:  # ImageJ slice labels that change along z are not channel names
        tifffile.imwrite(path, volume(2), imagej=True,
                         metadata={"axes": "ZCYX", "Labels": [f"img_{i:03d}.tif" for i in range(2 * Z)]})
    return path


@pytest.mark.parametrize("kind", ["planes", "ome", "ome-white", "imagej-slice-labels"])
def test_default_names_are_spelled_the_same_in_every_format(tmp_path, kind):
    source = write_unnamed(tmp_path, kind)
    n = 1 if kind == "planes" else 2
    expected = ([f"channel {i}" for i in range(n)], ["#ffffff"] if n == 1 else ["#00ff00", "#ff00ff"])
    for fmt, version in FORMATS:
        dest = tmp_path / f"out-{fmt}-{version}"
        convert_to(source, dest, fmt, version, voxel_size=(1, 1, 1))
        assert read_back(dest, fmt, version) == expected, (fmt, version)
        if fmt != "ome-tiff":
            name, colours, controls = shown(link_of(dest))
            assert name == "image"  # default names add nothing to the layer's name
            assert (colours, controls) == (([], ["normalized"]) if n == 1 else (expected[1], ["ch0", "ch1"]))


def test_colour_pages_are_red_green_blue(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (Z, Y, X, 3)).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    for fmt, version in FORMATS:
        dest = tmp_path / f"out-{fmt}-{version}"
        convert_to(str(path), dest, fmt, version, voxel_size=(1, 1, 1))
        assert read_back(dest, fmt, version) == (["red", "green", "blue"], ["#ff0000", "#00ff00", "#0000ff"])
        if fmt != "ome-tiff":
            assert shown(link_of(dest)) == ("image", ["#ff0000", "#00ff00", "#0000ff"], ["ch0", "ch1", "ch2"])


def test_a_dataset_stored_again_keeps_its_names_and_resumes(tmp_path, capsys):
    first = tmp_path / "first"
    convert_to(write_imagej_named(tmp_path), first, "tiff", None)
    for fmt, version in FORMATS:
        dest = tmp_path / f"again-{fmt}-{version}"
        argv = ["--source", str(first), "--dest", str(dest), "--format", fmt, "--n-cores", "1",
                *(["--ngff-version", version] if version else [])]
        run_cli(capsys, *argv)
        assert read_back(dest, fmt, version) == (NAMED, NAMED_COLORS), (fmt, version)
        # The job record holds the names: the same command again is the same conversion, not
        # "a different dataset".
        run_cli(capsys, *argv)


def test_the_webserver_prints_links_with_names_and_colours(tmp_path):
    named, plain = tmp_path / "named", tmp_path / "plain"
    convert_to(write_ome_named(tmp_path), named, "zarr", None)
    convert_to(write_unnamed(tmp_path, "ome"), plain, "precomputed", None, voxel_size=(1, 1, 1))
    config = tmp_path / "sources.json"
    config.write_text(json.dumps([{"name": "cells", "directory": str(named)},
                                  {"name": "plain", "directory": str(plain)}]))
    server = start_webserver("--config", str(config), "--workers", "1")
    try:
        printed = "".join(server.printed)
    finally:
        server.stop()
    links = dict(re.findall(r"^  (\w+): (https://\S+)$", printed, re.M))
    assert set(links) == {"cells", "plain"}, printed
    layer = decode_link(links["cells"])["layers"][0]
    assert shown(layer) == ("cells (DAPI, Membrane)", NAMED_COLORS, ["ch_DAPI", "ch_Membrane"])
    assert layer["source"].endswith("/cells")
    assert shown(decode_link(links["plain"])["layers"][0]) == ("plain", ["#00ff00", "#ff00ff"], ["ch0", "ch1"])
