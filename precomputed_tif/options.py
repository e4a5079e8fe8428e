"""What a conversion is asked to make (:class:`ConvertOptions`) and with what
(:class:`Resources`), and what it gives back (:class:`Result`).

:func:`~precomputed_tif.convert` takes these objects, or the same fields as
keyword arguments (``convert(src, dest, format="zarr", n_cores=4)``), which
:func:`split_keywords` sorts into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from .formats import DEFAULT, FormatOptions
from .geometry import DEFAULT_CHUNK_SIZE
from .pyramid import DEFAULT_BLOCK_BYTES


@dataclass(frozen=True)
class ConvertOptions:
    """What to make of the source.

    ``format``: a name of :mod:`precomputed_tif.formats`; ``levels``: resolution
    levels, level 1 full resolution (None: until the coarsest fits in one chunk
    in x and y); ``voxel_size``: microns, (x, y, z) (None: the files' metadata,
    else 1.8, 1.8, 2.0); ``chunk_size``: voxels, (x, y, z); ``segmentation``:
    labels (coarser levels take the most frequent); ``channel``/``timepoint``:
    pick one (0-based; None: all channels, and the only time point -- or, with a format that
    has a t axis (ome-zarr), every time point; ``timepoint="all"``: every time point, in one
    dataset with a t axis or else one dataset each); ``series``: one image of a file holding
    several (LIF images, CZI scenes, ND2 positions, BigDataViewer setups, an OME-Zarr group's
    bioformats2raw series; None: the only one);
    ``format_options``: those of the chosen format (encoding, sharding, NGFF
    version, OME-TIFF tiles and compression).
    """

    format: str = DEFAULT
    levels: int | None = None
    voxel_size: tuple[float, float, float] | None = None
    chunk_size: tuple[int, int, int] = DEFAULT_CHUNK_SIZE
    segmentation: bool = False
    channel: int | None = None
    timepoint: int | str | None = None
    series: int | None = None
    format_options: FormatOptions = field(default_factory=FormatOptions)


@dataclass(frozen=True)
class Resources:
    """What the conversion may use: ``n_cores`` worker processes (None: all cores);
    ``memory_limit`` in bytes for all processes together (None: half the machine's
    memory); ``dask_scheduler``, the address of a Dask cluster to run on instead;
    ``block_bytes``, the most voxel bytes a worker holds at once; ``progress``
    bars on stderr."""

    n_cores: int | None = None
    memory_limit: int | None = None
    dask_scheduler: str | None = None
    block_bytes: int = DEFAULT_BLOCK_BYTES
    progress: bool = False


def split_keywords(options: ConvertOptions | None, resources: Resources | None,
                   keywords: dict[str, Any]) -> tuple[ConvertOptions, Resources]:
    """The option objects, with the keyword arguments of the older call style put into them;
    a ``TypeError`` for a keyword no object has, as for any function."""
    options = options or ConvertOptions()
    resources = resources or Resources()
    names = {f.name for f in fields(ConvertOptions)} - {"format_options"}
    format_names = {f.name for f in fields(FormatOptions)}
    resource_names = {f.name for f in fields(Resources)}
    unknown = set(keywords) - names - format_names - resource_names
    if unknown:
        raise TypeError(f"convert() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    pick = {k: v for k, v in keywords.items() if k in names}
    for key in ("voxel_size", "chunk_size"):
        if pick.get(key) is not None:
            pick[key] = tuple(pick[key])
    chosen = {k: v for k, v in keywords.items() if k in format_names}
    if chosen:
        pick["format_options"] = replace(options.format_options, **chosen)
    return (replace(options, **pick),
            replace(resources, **{k: v for k, v in keywords.items() if k in resource_names}))


class Result(dict):
    """What :func:`~precomputed_tif.convert` wrote: the dataset's ``info`` (or, for a format
    without one, the description of its files), as a dict, with ``dest``, ``format`` (the
    format's name) and :meth:`summary`, the one line the command prints."""

    def __init__(self, described: dict, dest: str, format: str):
        super().__init__(described)
        self.dest, self.format = dest, format

    def summary(self) -> str:
        from . import formats

        return formats.get(self.format).summary(self.dest, self)


class SeriesResult(Result):
    """What a conversion of every time point into datasets of their own wrote: each one's
    :class:`Result` (``parts``, in order of time, ``dest`` of each ``DEST/t0000``...); as a dict,
    ``{"timepoints": [their dests]}``."""

    def __init__(self, parts: list[Result], dest: str, format: str):
        super().__init__({"timepoints": [p.dest for p in parts]}, dest, format)
        self.parts = parts

    def summary(self) -> str:
        return "\n".join(p.summary() for p in self.parts)
