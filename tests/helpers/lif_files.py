"""Leica LIF files written from the format's layout, for cases no public file covers (colour
images, layouts described exactly as a test needs them): the same structure as the LAS X files in tests/data/vendor.

A LIF file is a header (``0x70``, the header's size, ``0x2A``, the XML's length in characters)
and the XML describing the images in UTF-16, then one memory block per element (``0x70``, the
block header's size, ``0x2A``, the data's size as 8 bytes, ``0x2A``, the block id's length, the
id in UTF-16, the data). An image's XML names its block (``Memory/@MemoryBlockID``); its
``DimensionDescription`` elements say each axis' size and byte stride, its
``ChannelDescription`` elements each channel's (a colour image's samples: the channels' byte
offsets within a pixel, ``ChannelTag`` 1 red, 2 green, 3 blue).
"""

from __future__ import annotations

import struct

import numpy as np

# DimID of each axis, as LAS X numbers them.
_DIM_ID = {"X": 1, "Y": 2, "Z": 3, "T": 4}
_TAG = {"R": 1, "G": 2, "B": 3}
_LUT = {"R": "Red", "G": "Green", "B": "Blue"}


def write_rgb_lif(path, rgb: np.ndarray, *, order: str = "BGR", stored_width: int | None = None,
                  spacing_um: tuple[float, float, float] = (0.5, 0.5, 2.0), name: str = "colour",
                  resolution: int | None = None, lof: bool = False) -> None:
    """Write ``rgb`` -- (t, z, y, x, 3) or (z, y, x, 3) red, green, blue samples, uint8 or
    uint16 -- as the one image ``name`` of a LIF file, its samples stored in ``order`` (LAS X
    stores colour images blue first), each row padded to ``stored_width`` pixels when given (the
    padding holds 0xEE bytes), with ``spacing_um`` (x, y, z) µm between voxels and ``resolution``
    bits per sample (default: the dtype's size). With ``lof``, a single-image ``.lof`` file
    instead: a header naming it ``LMS_Object_File``, the data block, then the XML of the image."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 4:
        rgb = rgb[None]
    n_t, n_z, n_y, n_x, three = rgb.shape
    assert three == 3 and rgb.dtype in (np.uint8, np.uint16), rgb.shape
    itemsize = rgb.dtype.itemsize
    width = stored_width or n_x
    stored = np.full((n_t, n_z, n_y, width, 3), 0xEEEE if itemsize == 2 else 0xEE, rgb.dtype)
    stored[:, :, :, :n_x] = rgb[..., ["RGB".index(s) for s in order]]
    data = stored.astype(rgb.dtype.newbyteorder("<")).tobytes()
    bits = resolution or 8 * itemsize

    channels = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="{_TAG[s]}" Resolution="{bits}" NameOfMeasuredQuantity="" '
        f'Min="0.000000e+000" Max="{2 ** bits - 1:.6e}" Unit="" LUTName="{_LUT[s]}" IsLUTInverted="0" '
        f'BytesInc="{i * itemsize}" BitInc="0"></ChannelDescription>' for i, s in enumerate(order))
    pixel = 3 * itemsize
    strides = {"X": pixel, "Y": pixel * width, "Z": pixel * width * n_y, "T": pixel * width * n_y * n_z}
    sizes = {"X": n_x, "Y": n_y, "Z": n_z, "T": n_t}
    steps = {"X": spacing_um[0] * 1e-6, "Y": spacing_um[1] * 1e-6, "Z": spacing_um[2] * 1e-6, "T": 1.5}
    dims = "".join(
        f'<DimensionDescription DimID="{_DIM_ID[a]}" NumberOfElements="{sizes[a]}" Origin="0.000000e+000" '
        f'Length="{steps[a] * (sizes[a] - 1):.6e}" Unit="{"s" if a == "T" else "m"}" BitInc="0" '
        f'BytesInc="{strides[a]}"></DimensionDescription>'
        for a in "XYZT" if a in "XY" or sizes[a] > 1)
    _write(path, _image_xml(name, channels, dims, len(data)), data, lof)


def write_lif_image(path, data: bytes, dims: list[tuple[str, int, int]], channels: list[tuple[int, int, int, str]],
                    *, spacing_um: float = 0.5, name: str = "image", flim: bool = False) -> None:
    """Write ``data`` as the one image ``name`` of a LIF file described exactly as given, for
    layouts :func:`write_rgb_lif` does not make: ``dims`` are (axis letter X/Y/Z/T, number of
    elements, BytesInc), ``channels`` (ChannelTag, BytesInc, bits per sample, LUTName) of unsigned
    samples, in the order they are listed;
    ``spacing_um`` µm between voxels on every spatial axis (T: seconds). With ``flim``, the image
    is marked as LAS X marks a FLIM/TCSPC acquisition (a ``SingleMoleculeDetection`` element)."""
    chans = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="{tag}" Resolution="{bits}" NameOfMeasuredQuantity="" '
        f'Min="0.000000e+000" Max="{2 ** bits - 1:.6e}" Unit="" LUTName="{lut}" IsLUTInverted="0" '
        f'BytesInc="{inc}" BitInc="0"></ChannelDescription>' for tag, inc, bits, lut in channels)
    dd = "".join(
        f'<DimensionDescription DimID="{_DIM_ID[a]}" NumberOfElements="{n}" Origin="0.000000e+000" '
        f'Length="{(1 if a == "T" else spacing_um * 1e-6) * (n - 1):.6e}" Unit="{"s" if a == "T" else "m"}" '
        f'BitInc="0" BytesInc="{inc}"></DimensionDescription>' for a, n, inc in dims)
    flim_xml = ""
    if flim:  # an 80 MHz laser, a 97.7 ps clock: 128 time bins per pixel
        axes = "".join(f"<Dimension><DimensionIdentifier>{a}</DimensionIdentifier><Size>{n}</Size></Dimension>"
                       for a, n, _ in dims)
        flim_xml = ("<SingleMoleculeDetection><Dataset><RawData><LaserPulseFrequency>80000000</LaserPulseFrequency>"
                    "<ClockPeriod>9.765625e-11</ClockPeriod><PixelTime>1e-06</PixelTime>"
                    f"<Dimensions>{axes}</Dimensions></RawData></Dataset></SingleMoleculeDetection>")
    _write(path, _image_xml(name, chans, dd, len(data), flim_xml), data, False)


def _image_xml(name: str, channels: str, dims: str, size: int, more: str = "") -> str:
    return (f'<Element Name="{name}" Visibility="1" CopyOption="1" UniqueID="00000000-0000-0000-0000-000000000002">'
            f'<Data>{more}<Image TextDescription=""><ImageDescription><Channels>{channels}</Channels>'
            f'<Dimensions>{dims}</Dimensions></ImageDescription></Image></Data>'
            f'<Memory Size="{size}" MemoryBlockID="MemBlock_2"/><Children/></Element>')


def _write(path, image: str, data: bytes, lof: bool) -> None:
    """A LIF file holding the one image of XML ``image`` and its ``data``; with ``lof``, a LOF file."""
    if lof:
        mark, xml = "LMS_Object_File", f'<LMSDataContainerHeader Version="2">{image}</LMSDataContainerHeader>'
        with open(path, "wb") as f:
            f.write(struct.pack("<IIBI", 0x70, 2 * len(mark) + 5, 0x2A, len(mark)) + mark.encode("utf-16-le"))
            f.write(struct.pack("<BIBI", 0x2A, 2, 0x2A, 1))  # version marks
            f.write(struct.pack("<BQ", 0x2A, len(data)) + data)
            f.write(struct.pack("<IIBI", 0x70, 2 * len(xml) + 5, 0x2A, len(xml)) + xml.encode("utf-16-le"))
        return
    xml = (
        '<LMSDataContainerHeader Version="2"><Element Name="colour-test" Visibility="1" CopyOption="1" '
        'UniqueID="00000000-0000-0000-0000-000000000001"><Data><Experiment Path="" IsSavedFlag="0"/></Data>'
        f'<Memory Size="0" MemoryBlockID="MemBlock_1"/><Children>{image}</Children></Element></LMSDataContainerHeader>')
    with open(path, "wb") as f:
        f.write(struct.pack("<IIBI", 0x70, 2 * len(xml) + 5, 0x2A, len(xml)) + xml.encode("utf-16-le"))
        for block, payload in (("MemBlock_1", b""), ("MemBlock_2", data)):
            f.write(struct.pack("<IIBQBI", 0x70, 2 * len(block) + 14, 0x2A, len(payload), 0x2A, len(block)))
            f.write(block.encode("utf-16-le"))
            f.write(payload)
