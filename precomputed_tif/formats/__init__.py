"""The output formats: one object each, in one registry.

Everything that differs between formats is said here, by the format itself:
its name (and the older names servers accept), the options only it takes,
how its levels are keyed, how a conversion into it is planned (its passes and
what it adds to ``info``), which store holds its chunks, whether it has NGFF
root metadata beside ``info``, whether servers pass its files through
untouched, and the line that sums up what was written. Nothing outside this
package compares format names: :func:`get` a format and ask it.

Adding a format is one module in this package (a :class:`Format` subclass)
and one line in :data:`REGISTRY`.

This module imports nothing heavy: formats import what they plan and write
with only when asked, so any module may look a format up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from ..errors import PrecomputedTifError, either, flags

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..geometry import Geometry
    from .store import ChunkStore


@dataclass(frozen=True)
class FormatOptions:
    """The options that belong to one format or another, as given (None: not given).

    ``encoding`` and ``jpeg_quality``, ``sharded``: precomputed; ``ngff_version``:
    ome-zarr; ``tile_size`` and ``compression``: ome-tiff. A format fills in its
    defaults in :meth:`Format.check_options`.
    """

    encoding: str | None = None
    jpeg_quality: int | None = None
    sharded: bool | None = None
    ngff_version: str | None = None
    tile_size: int | None = None
    compression: str | None = None

    def given(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}


def _listed(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def _stray_options(owner: Format, fmt: Format, command_line: bool) -> str:
    """That ``owner``'s options were given to ``fmt``, in Python's or the command line's words
    (every flag of an option: ``--sharded and --unsharded``)."""
    def spelled(options) -> str:
        return _listed([f for o in options for f in flags(o)] if command_line else list(options))

    def chosen(f: Format) -> str:
        return f"--format {f.name}" if command_line else f"format={f.name!r}"

    listed = spelled(owner.takes)
    verb = "go" if " and " in listed else "goes"
    also = f"; {chosen(fmt)} takes {spelled(fmt.takes)}" if fmt.takes else ""
    return f"{listed} {verb} with {chosen(owner)}{also}"


@dataclass(frozen=True)
class Planned:
    """What a chunked format decided for a conversion (see :meth:`Format.plan`)."""

    dtype: np.dtype  # what the chunks hold (an encoding may widen the source's)
    passes: list
    lossless_copies: frozenset = frozenset()  # level keys kept losslessly too, for coarser levels
    codec: object = None  # the chunk encoding, for formats that have a choice of them


class Format:
    """One output format. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    #: Other names a server's configuration may use for it.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: The :class:`FormatOptions` fields it takes.
    takes: ClassVar[tuple[str, ...]] = ()
    #: A multi-resolution dataset with ``info``, chunks in a store (False: files of its own kind).
    chunked: ClassVar[bool] = True
    #: Levels keyed ``0``, ``1``, ... (NGFF) rather than by their downsampling factors.
    numbered_keys: ClassVar[bool] = False
    #: NGFF root group metadata (``zarr.json``, ``.zgroup``, ``.zattrs``) beside ``info``.
    ngff_root: ClassVar[bool] = False
    #: Files any static web server or bucket serves as they are (servers pass them through).
    served_as_files: ClassVar[bool] = False
    #: Its files are what Neuroglancer's precomputed:// asks for (nothing to translate).
    precomputed_native: ClassVar[bool] = False
    #: Its arrays can have a leading t axis: a time series is one dataset of every time point.
    time_axis: ClassVar[bool] = False
    #: ``module:Class`` of the :class:`~precomputed_tif.formats.store.ChunkStore` holding its chunks.
    store: ClassVar[str] = ""

    def root_names(self) -> tuple[str, ...]:
        """What a dataset of this format holds at the top of its destination besides ``info``,
        the job records, its levels and the files its job record lists: the root group's
        metadata of an NGFF format (``--overwrite`` removes them with the dataset)."""
        if not self.ngff_root:
            return ()
        from .zarr.ngff import ROOT_FILES

        return tuple(ROOT_FILES)

    def check_options(self, options: FormatOptions, chunk_size) -> FormatOptions:
        """The options with this format's defaults filled in, or a user error for a bad value."""
        return options

    def store_class(self, options: FormatOptions | None = None) -> type[ChunkStore]:
        """The store class that holds this format's chunks (for these options)."""
        import importlib

        module, _, cls = self.store.partition(":")
        return getattr(importlib.import_module(module, __package__), cls)

    def job_name(self, options: FormatOptions) -> str:
        """How the conversion's record names the format (with what changes the layout)."""
        return self.name

    def plan(self, geometry: Geometry, stack, segmentation: bool, n_workers: int | None, block_bytes: int,
             options: FormatOptions) -> Planned:
        """The dtype the chunks hold and the passes that write them."""
        from ..pyramid import plan_passes

        voxel_bytes = stack.dtype.itemsize * stack.n_channels
        return Planned(stack.dtype, plan_passes(geometry, voxel_bytes, block_bytes, stack.whole_rows))

    def add_to_info(self, info: dict, geometry: Geometry, planned: Planned, options: FormatOptions) -> None:
        """What this format adds to a dataset's ``info`` (encodings, sharding, shard sizes)."""

    def summary(self, dest: str, info: dict) -> str:
        """One line saying what was written (``info`` is what the conversion returned), for the
        user to check at a glance."""
        from ..info import INFO, VolumeInfo
        from ..sources.tiff_metadata import time_step_words

        volume = VolumeInfo.of(info, os.path.join(dest, INFO))
        x, y, z = volume.scales[0].size
        n = volume.n_channels
        voxel = ",".join(f"{v:g}" for v in volume.voxel_size_um)
        origin = volume.voxel_size_from
        origin = {"given": "as given", "default": "the default"}.get(origin, "from the " + origin if origin else "")
        channels = f", {n} channels" if n > 1 else ""
        if volume.n_timepoints > 1:
            apart = time_step_words(*volume.time_interval)
            channels += f", {volume.n_timepoints} time points" + (f" {apart}" if apart else "")
        shown = volume.display_range
        contrast = f", contrast {' '.join(f'{lo:g}-{hi:g}' for lo, hi in shown)}" if shown else ""
        return (f"wrote {dest}: {x}x{y}x{z} {volume.dtype.name} {volume.volume_type}{channels}, "
                f"{len(volume.scales)} level{'s' if len(volume.scales) != 1 else ''}, voxel size {voxel} µm "
                f"({origin}){contrast}")


from .blockfs import BlockfsFormat  # noqa: E402
from .ome_tiff.format import OmeTiffFormat  # noqa: E402
from .ome_zarr import OmeZarrFormat  # noqa: E402
from .precomputed import PrecomputedFormat  # noqa: E402
from .tiff import TiffFormat  # noqa: E402
from .zarr import ZarrFormat  # noqa: E402

#: Every format, in the order the help lists them; the first is the default.
REGISTRY: tuple[Format, ...] = (TiffFormat(), ZarrFormat(), BlockfsFormat(), PrecomputedFormat(), OmeZarrFormat(),
                                OmeTiffFormat())
DEFAULT = REGISTRY[0].name


def names(chunked: bool | None = None) -> list[str]:
    """The formats' names (only those that are, or are not, ``chunked``)."""
    return [f.name for f in REGISTRY if chunked is None or f.chunked == chunked]


def served_names() -> list[str]:
    """The names a server's configuration may give a dataset's format: every chunked format's
    name and aliases."""
    return [n for f in REGISTRY if f.chunked for n in (f.name, *f.aliases)]


def get(name: str) -> Format:
    """The format called ``name`` (or one of its aliases), or a user error listing them."""
    for f in REGISTRY:
        if name == f.name or name in f.aliases:
            return f
    raise PrecomputedTifError(f"unknown format {name!r}; choose one of: {', '.join(sorted(names()))}")


def root_names() -> set[str]:
    """Every name any format keeps at the top of a destination (:meth:`Format.root_names`)."""
    return {n for f in REGISTRY for n in f.root_names()}


def of_dataset(storage, info: dict, recorded: str | None = None) -> Format | None:
    """The format of the dataset in ``storage``: the one its job record names (``recorded``),
    else the one its first level's objects show; None when neither tells (a format this
    version does not know, or no chunks yet)."""
    if recorded:
        try:
            return get(recorded.split()[0])
        except PrecomputedTifError:
            return None
    from .stores import detect_format

    try:
        return get(detect_format(storage, info))
    except (PrecomputedTifError, KeyError, IndexError, TypeError, AttributeError):
        return None


def check_options(fmt: Format, options: FormatOptions, chunk_size) -> FormatOptions:
    """A user error for options that belong to other formats; else ``fmt``'s checked options."""
    stray = options.given() - set(fmt.takes)
    for owner in REGISTRY:
        if stray & set(owner.takes):
            raise PrecomputedTifError(either(_stray_options(owner, fmt, False), _stray_options(owner, fmt, True)))
    return fmt.check_options(options, chunk_size)
