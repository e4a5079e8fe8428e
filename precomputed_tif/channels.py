"""Channel names and colours: one spelling of each default, the same in every output.

A source gives a name and a colour per channel where its metadata records them
(OME-XML ``Channel@Name``/``Color``, ImageJ labels and LUTs, a dataset's
``info``); :func:`names` and :func:`colors` fill what it leaves out. The
results are kept in ``info`` under ``precomputed_tif`` (``channel_names``,
``channel_colors``) and every writer -- NGFF ``omero``, OME-XML, the
Neuroglancer links the tools print -- takes them from there (or, for
OME-TIFF, from the same two functions), so no two outputs of one conversion
name or colour a channel differently.

Colours are ``"#rrggbb"`` strings (lower case) throughout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .info import VolumeInfo

# Green and magenta first: the pair that colour-blind viewers tell apart.
CHANNEL_COLORS = ("#00ff00", "#ff00ff", "#00ffff", "#ffff00", "#ff0000", "#0000ff", "#ffffff")
RGB_COLORS = ("#ff0000", "#00ff00", "#0000ff", "#ffffff")
RGB_NAMES = ("red", "green", "blue", "alpha")
GREY = "#ffffff"
_HEX = re.compile(r"^#[0-9a-f]{6}$")
_DEFAULT_NAME = re.compile(r"^channel \d+$")


def default_name(index: int) -> str:
    """The name of a channel its source does not name: ``channel <index>`` (index in the source)."""
    return f"channel {index}"


def is_default_name(name: str) -> bool:
    """Whether ``name`` is one :func:`default_name` makes (says nothing the index does not)."""
    return bool(_DEFAULT_NAME.match(name))


def names(n: int, rgb: bool = False, given: Sequence[str | None] = ()) -> list[str]:
    """A name per channel: the source's where it gives one, else red/green/blue/alpha for colour
    input, else :func:`default_name`."""
    given = list(given) if len(given) == n else [None] * n
    return [g.strip() if isinstance(g, str) and g.strip() else
            (RGB_NAMES[i] if rgb and i < len(RGB_NAMES) else default_name(i)) for i, g in enumerate(given)]


def colors(n: int, rgb: bool = False, given: Sequence[str | None] = ()) -> list[str]:
    """``#rrggbb`` per channel: the source's colour where it gives one, else grey for one channel,
    red/green/blue for colour input, green, magenta, cyan, ... for several."""
    given = [normalize(c) for c in given] if len(given) == n else [None] * n
    palette = (GREY,) if n == 1 else RGB_COLORS if rgb else CHANNEL_COLORS
    return [g or palette[i % len(palette)] for i, g in enumerate(given)]


def normalize(color) -> str | None:
    """``#rrggbb`` (lower case) for a colour written ``#RRGGBB`` or ``RRGGBB``; None for anything else."""
    if not isinstance(color, str):
        return None
    color = "#" + color.strip().lstrip("#").lower()
    return color if _HEX.match(color) else None


def from_rgb(r: int, g: int, b: int) -> str:
    return f"#{int(r):02x}{int(g):02x}{int(b):02x}"


def from_wavelength(nm: float) -> str:
    """``#rrggbb`` of light of ``nm`` nanometres as the eye sees it (violet at 380 nm to red at
    750 nm, piecewise linear); grey outside the visible range. For channels of a λ sweep."""
    stops = ((380, (0.5, 0.0, 1.0)), (440, (0.0, 0.0, 1.0)), (490, (0.0, 1.0, 1.0)), (510, (0.0, 1.0, 0.0)),
             (580, (1.0, 1.0, 0.0)), (645, (1.0, 0.0, 0.0)), (750, (1.0, 0.0, 0.0)))
    if not stops[0][0] <= nm <= stops[-1][0]:
        return GREY
    for (w0, c0), (w1, c1) in zip(stops, stops[1:]):
        if nm <= w1:
            f = (nm - w0) / (w1 - w0)
            return from_rgb(*(round(255 * (a + (b - a) * f)) for a, b in zip(c0, c1)))
    return GREY


def from_ome(value) -> str | None:
    """``#rrggbb`` of an OME ``Color`` (RGBA packed in a signed 32-bit integer; alpha ignored),
    or None when it is not an integer."""
    try:
        v = int(value) & 0xFFFFFFFF
    except (TypeError, ValueError):
        return None
    return from_rgb(v >> 24, (v >> 16) & 0xFF, (v >> 8) & 0xFF)


def to_ome(color: str) -> int:
    """OME's ``Color`` of ``#rrggbb``: RGBA packed in a signed 32-bit integer, opaque."""
    rgba = (int(color.lstrip("#"), 16) << 8) | 0xFF
    return rgba - (1 << 32) if rgba >= 1 << 31 else rgba


def of_info(info: dict | VolumeInfo) -> tuple[list[str], list[str]]:
    """(names, colours) of a dataset's channels as its ``info`` (a dict or a
    :class:`~.info.VolumeInfo`) records them, defaults filled in (datasets written before names
    were kept have colours only)."""
    volume = VolumeInfo.of(info)
    n, rgb = volume.n_channels, volume.rgb
    return names(n, rgb, volume.channel_names), colors(n, rgb, volume.channel_colors)


def of_source(source) -> tuple[list[str], list[str]]:
    """(names, colours) of a conversion source's channels (a TIFF stack or a dataset stored
    again), defaults filled in for what its metadata leaves out."""
    n, rgb = source.n_channels, bool(source.rgb)
    return (names(n, rgb, getattr(source, "channel_names", ())),
            colors(n, rgb, getattr(source, "channel_colors", ())))
