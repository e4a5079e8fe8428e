"""Neuroglancer links that show a dataset right the first time: contrast, channel colours,
physical scale, centred.

A link is Neuroglancer's own viewer state, JSON in the URL fragment. Image
layers get a shader built from what the conversion measured (``info`` key
``precomputed_tif``): an ``invlerp`` range per channel and one colour per
channel (or red, green, blue for colour images). Channels the source named
(``DAPI``) name the layer, ``image (DAPI, Membrane)``, and the shader's
controls, ``ch_DAPI`` and ``color_DAPI``.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from .. import channels
from ..info import VolumeInfo

NEUROGLANCER_APP = "https://neuroglancer-demo.appspot.com"
# Viv's viewer for OME-TIFF (and OME-Zarr): opens ``?image_url=`` from any server with CORS and Range.
AVIVATOR = "https://avivator.gehlenborglab.org/"


def _number(v) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


def image_shader(info: dict | VolumeInfo) -> str:
    """GLSL for Neuroglancer's image layer: grey for one channel (or its own colour, if the source
    gave it one), additive colours for several."""
    volume = VolumeInfo.of(info)
    n, rgb = volume.n_channels, volume.rgb
    ranges = volume.display_range or [None] * n
    names, colors = channels.of_info(volume)

    def control(name, i, r):
        args = [f"range=[{_number(r[0])}, {_number(r[1])}]"] if r else []
        if n > 1:
            args.append(f"channel=[{i}]")
        return f"#uicontrol invlerp {name}({', '.join(args)})"

    if n == 1:
        if colors[0] == channels.GREY:
            return control("normalized", 0, ranges[0]) + "\nvoid main() { emitGrayscale(normalized()); }\n"
        value, color = _control_names(names, False)[0]
        return (control(value, 0, ranges[0]) + f'\n#uicontrol vec3 {color} color(default="{colors[0]}")'
                f"\nvoid main() {{ emitRGB({value}() * {color}); }}\n")
    lines, terms = [], []
    shown = 3 if rgb else n  # an alpha channel is not a colour
    for i, (value, color) in enumerate(_control_names(names[:shown], rgb)):
        lines.append(control(value, i, ranges[i]))
        lines.append(f'#uicontrol vec3 {color} color(default="{colors[i]}")')
        terms.append(f"{value}() * {color}")
    lines.append("void main() { emitRGB(clamp(" + " + ".join(terms) + ", 0.0, 1.0)); }")
    return "\n".join(lines) + "\n"


def layer(source: str, info: dict | VolumeInfo, name: str) -> dict:
    """A layer of a viewer state for a precomputed ``source`` URL whose ``info`` is given, named
    ``name`` -- followed by its channels' names in brackets when the source named them."""
    volume = VolumeInfo.of(info)
    if volume.segmentation:
        return {"type": "segmentation", "source": source, "name": name}
    names, _ = channels.of_info(volume)
    if not volume.rgb and not all(channels.is_default_name(s) for s in names):
        name = f"{name} ({', '.join(names)})"
    return {"type": "image", "source": source, "name": name, "shader": image_shader(volume)}


def _control_names(names: list[str], rgb: bool) -> list[tuple[str, str]]:
    """(invlerp control, colour control) GLSL names per channel: ``ch_<name>``, ``color_<name>``
    with the channel's name made an identifier (``FITC BP`` -> ``ch_FITC_BP``) where the source
    named it, else ``ch<i>``, ``color<i>``.

    Neuroglancer wants control names that start with a lower-case letter and turns each into a
    ``#define`` for the rest of the shader, so a bare channel name (``max``, ``DAPI``) could
    break the shader or be refused: the prefixes keep clear of GLSL's and Neuroglancer's own
    names."""
    out: list[tuple[str, str]] = []
    used: set[str] = set()
    for i, name in enumerate(names):
        ident = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:40]
        pair = (f"ch_{ident}", f"color_{ident}")
        if rgb or channels.is_default_name(name) or not ident or used & set(pair):
            pair = (f"ch{i}", f"color{i}")
        used.update(pair)
        out.append(pair)
    return out


# Seconds per NGFF time unit: Neuroglancer's time dimension is in seconds.
_SECONDS = {"nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0, "minute": 60.0,
            "hour": 3600.0, "day": 86400.0}


def viewer_state(layers: list[dict], info: dict | VolumeInfo) -> dict:
    """A state showing ``layers`` at the physical scale of ``info``'s finest level, centred on it;
    a time series (an OME-Zarr with a t axis) also has a ``t`` dimension, at its first time
    point, which Neuroglancer steps through with a slider."""
    volume = VolumeInfo.of(info)
    scale = volume.scales[0]
    resolution_nm, size, offset = scale.resolution, scale.size, scale.voxel_offset
    dimensions = {axis: [r / 1e9, "m"] for axis, r in zip("xyz", resolution_nm)}
    position = [o + s / 2 for o, s in zip(offset, size)]
    if volume.n_timepoints > 1:
        interval, unit = volume.time_interval
        seconds = _SECONDS.get(unit)
        dimensions["t"] = [interval * seconds, "s"] if interval is not None and seconds else [1, ""]
        # NGFF puts the centre of time point i at i x interval (translation 0), and Neuroglancer
        # shows it from i - 0.5 to i + 0.5 steps: 0 is time point 0's middle.
        position.append(0)
    return {
        "dimensions": dimensions,
        "position": position,
        "crossSectionScale": max(1.0, max(size[:2]) / 400),
        "projectionScale": max(size) * 1.5,
        "layers": layers,
        "selectedLayer": {"layer": layers[0]["name"]},
        "layout": "4panel",
    }


def neuroglancer_link(state: dict, app: str = NEUROGLANCER_APP) -> str:
    return f"{app}/#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")


def dataset_link(source: str, info: dict | VolumeInfo, name: str = "image", app: str = NEUROGLANCER_APP) -> str:
    """A link that opens one precomputed dataset."""
    return neuroglancer_link(viewer_state([layer(source, info, name)], info), app)


def zarr_layers(source: str, info: dict | VolumeInfo, name: str) -> list[dict]:
    """Image layers for the ``zarr://`` ``source`` of an OME-Zarr this project wrote (NGFF axes
    c, z, y, x; c only with several channels), whose ``info`` is given: one layer per shown
    channel, as Neuroglancer itself makes them from the ``omero`` metadata (the channel picked
    by its local ``c'`` dimension, colours added), with the channel's colour and the measured
    contrast in a short shader, named ``name`` (and the channel's name when the source named it)."""
    volume = VolumeInfo.of(info)
    n = volume.n_channels
    ranges = volume.display_range or [None] * n
    names, colors = channels.of_info(volume)
    shown = 3 if volume.rgb else n  # an alpha channel is not a colour
    out = []
    for i in range(shown):
        r = ranges[i]
        contrast = f"(range=[{_number(r[0])}, {_number(r[1])}])" if r else ""
        entry: dict = {
            "type": "image", "source": source,
            "name": name if n == 1 and channels.is_default_name(names[0]) else f"{name} ({names[i]})",
            "shader": f"#uicontrol invlerp contrast{contrast}\n#uicontrol vec3 color color(default=\"{colors[i]}\")\n"
                      "void main() { emitRGB(color * contrast()); }\n",
        }
        if n > 1:
            entry.update({"localDimensions": {"c'": [1, ""]}, "localPosition": [i], "blend": "additive"})
        out.append(entry)
    return out


def zarr_link(source: str, info: dict | VolumeInfo, name: str = "image", app: str = NEUROGLANCER_APP) -> str:
    """A link that opens the OME-Zarr at the ``zarr://`` ``source`` with x, y, z display
    dimensions, centred, its channels in their colours with the contrast measured at conversion."""
    return neuroglancer_link(viewer_state(zarr_layers(source, info, name), info), app)
