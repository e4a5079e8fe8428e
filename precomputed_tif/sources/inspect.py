"""What a source would give a conversion, in words (``precomputed-tif --inspect``); reads
metadata only, writes nothing.

For a file holding several images every image is described (or why it cannot be
read), so the ``--series`` to give can be chosen; a time series is described at
its first time point (or the one given), with how many it has. An image whose data
is cut short or missing is listed as such, and then the inspection fails
(:class:`DamagedImages`): a damaged file is never reported as fine.
"""

from __future__ import annotations

from .. import channels
from ..errors import PrecomputedTifError
from . import _dataset_storage, ome_zarr_location, open_source, vendor
from .ome_zarr import image_paths, open_ome_zarr
from .tiff_metadata import time_step_words
from .vendor import SeriesInfo
from .vendor.base import DamagedFile, MissingLibrary, dims_text


class DamagedImages(DamagedFile):
    """Some images of a file cannot be read: ``report`` holds the lines describing every image
    (the damaged ones saying what is wrong), the message says which cannot be read."""

    def __init__(self, message: str, report: str):
        super().__init__(message)
        self.report = report


def inspect_source(source, series: int | None = None, channel: int | None = None,
                   timepoint: int | None = None, segmentation: bool = False) -> str:
    """Lines describing ``source`` (as :func:`~precomputed_tif.sources.open_source` takes it):
    series, axes, shape, dtype, voxel size and where it came from, channels with names and
    colours, time points. A user error only when nothing at all can be read."""
    lines = [f"source: {source}"]
    kind = vendor.kind_of(source)
    if kind is not None:
        lines.extend(_vendor_lines(source, kind, series, channel, timepoint, segmentation))
        return "\n".join(lines)
    if series is None:
        images = _ome_zarr_images(source, channel, timepoint, segmentation)
        if images is not None:
            return "\n".join(lines + images)
    try:
        src = open_source(source, segmentation=segmentation, channel=channel, timepoint=timepoint, series=series)
    except PrecomputedTifError as exc:
        if timepoint is not None:
            raise
        try:  # a time series: described at its first time point
            src = open_source(source, segmentation=segmentation, channel=channel, timepoint=0, series=series)
        except PrecomputedTifError:
            raise exc from None
    lines.extend(describe(src))
    return "\n".join(lines)


def _vendor_lines(source, kind: str, series: int | None, channel: int | None, timepoint: int | None,
                  segmentation: bool) -> list[str]:
    """Lines describing the series of a microscope file; :class:`DamagedImages` (after them)
    when the data of some cannot be read."""
    lines = [f"source: {source}"]
    listing = vendor.list_series(source)
    noun = vendor.NOUNS[kind]
    if len(listing) > 1:
        lines.append(f"{len(listing)} {noun}" + ("" if series is not None else "; convert one with --series N"))
    chosen = [s for s in listing if series is None or s.index == series]
    damaged: list[tuple[SeriesInfo, DamagedFile]] = []
    if not chosen:
        vendor.open_vendor(source, series=series)  # the out-of-range error, listing them
    for s in chosen:
        if len(listing) > 1:
            lines.append(f"{noun.rstrip('s')} {s.describe()}:")
        try:
            one = vendor.open_vendor(source, series=s.index if len(listing) > 1 else series,
                                     channel=channel, timepoint=timepoint if timepoint is not None else 0,
                                     segmentation=segmentation)
        except MissingLibrary:
            raise
        except PrecomputedTifError as exc:
            if len(chosen) == 1:  # the one image asked about: its error is the answer
                raise
            lines.append(f"  not readable: {exc}")
            if isinstance(exc, DamagedFile):
                damaged.append((s, exc))
            continue
        lines.extend("  " + line for line in describe(one))
    if damaged:
        which = ", ".join(f"{s.index}{f' {s.name!r}' if s.name else ''}" for s, _ in damaged)
        first = str(damaged[0][1])
        raise DamagedImages(first if len(damaged) == 1 else
                            f"{len(damaged)} of the {len(listing)} {noun} cannot be read ({which}): {first}",
                            "\n".join(lines))
    return lines[1:]


def _ome_zarr_images(source, channel: int | None, timepoint: int | None, segmentation: bool) -> list[str] | None:
    """Lines describing each image of ``source`` when it is an OME-Zarr group of several
    (bioformats2raw's layout), else None."""
    location = ome_zarr_location(source) if _dataset_storage(source) is None else None
    if location is None:
        return None
    images = image_paths(location)
    if len(images) < 2:
        return None
    lines = [f"{len(images)} images; convert one with --series N"]
    for i, image in enumerate(images):
        try:
            one = open_ome_zarr(location, series=i, channel=channel,
                                timepoint=timepoint if timepoint is not None else 0, segmentation=segmentation)
        except PrecomputedTifError as exc:
            lines += [f"image {i} {image!r}:", f"  not readable: {exc}"]
            continue
        (z, y, x), t, c = one.shape, one.n_timepoints, one.n_channels
        dims = dims_text((a, n) for a, n in (("T", t), ("C", c), ("Z", z), ("Y", y), ("X", x)) if n > 1 or a in "YX")
        lines.append(f"image {SeriesInfo(i, image, dims).describe()}:")
        lines.extend("  " + line for line in describe(one))
    return lines


def describe(src) -> list[str]:
    """Lines describing one opened source."""
    z, y, x = src.shape
    files = src.files
    lines = []
    if len(files) > 1:
        lines.append(f"files: {len(files)} ({files[0]} ... {files[-1]})")
    lines.append(f"axes: {src.axes}; size x, y, z: {x}, {y}, {z}; {src.dtype.name}")
    size = ", ".join("?" if v is None else f"{v:g}" for v in src.voxel_size)
    lines.append(f"voxel size (x, y, z): {size} µm, from the {src.voxel_size_origin}" if src.voxel_size_origin
                 else "voxel size: not recorded (give --voxel-size X,Y,Z; default 1.8,1.8,2.0 µm)")
    names, colors = channels.of_source(src)
    listed = ", ".join(f"{i} {n!r} {c}" for i, (n, c) in enumerate(zip(names, colors)))
    lines.append(f"channels: {src.n_channels}: {listed}")
    n_t = src.n_timepoints
    apart = f", {time_step_words(src.time_interval, src.time_unit)}" if n_t > 1 and src.time_interval else ""
    lines.append("time points: 1" if n_t == 1 else
                 f"time points: {n_t}{apart} (--format ome-zarr writes them all on a t axis; --timepoint N, "
                 f"0 to {n_t - 1}, picks one; --timepoint all makes one dataset each)")
    return lines
