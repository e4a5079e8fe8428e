"""Neuroglancer links that show a dataset right the first time: contrast, channel colours,
physical scale, centred.

A link is Neuroglancer's own viewer state, JSON in the URL fragment. Image
layers get a shader built from what the conversion measured (``info`` key
``precomputed_tif``): an ``invlerp`` range per channel and one colour per
channel (or red, green, blue for colour images).
"""

from __future__ import annotations

import json
import urllib.parse

from .info import EXTRA

NEUROGLANCER_APP = "https://neuroglancer-demo.appspot.com"
# Viv's viewer for OME-TIFF (and OME-Zarr): opens ``?image_url=`` from any server with CORS and Range.
AVIVATOR = "https://avivator.gehlenborglab.org/"


def _number(v) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


def image_shader(info: dict) -> str:
    """GLSL for Neuroglancer's image layer: grey for one channel, additive colours for several."""
    extra = info.get(EXTRA) or {}
    n = int(info.get("num_channels", 1))
    ranges = extra.get("display_range") or [None] * n
    colors = extra.get("channel_colors") or ["#ffffff"] * n

    def control(name, i, r):
        args = [f"range=[{_number(r[0])}, {_number(r[1])}]"] if r else []
        if n > 1:
            args.append(f"channel=[{i}]")
        return f"#uicontrol invlerp {name}({', '.join(args)})"

    if n == 1:
        return control("normalized", 0, ranges[0]) + "\nvoid main() { emitGrayscale(normalized()); }\n"
    lines, terms = [], []
    shown = 3 if extra.get("rgb") else n  # an alpha channel is not a colour
    for i in range(shown):
        lines.append(control(f"ch{i}", i, ranges[i]))
        lines.append(f'#uicontrol vec3 color{i} color(default="{colors[i]}")')
        terms.append(f"ch{i}() * color{i}")
    lines.append("void main() { emitRGB(clamp(" + " + ".join(terms) + ", 0.0, 1.0)); }")
    return "\n".join(lines) + "\n"


def layer(source: str, info: dict, name: str) -> dict:
    """A layer of a viewer state for a precomputed ``source`` URL whose ``info`` is given."""
    if info.get("type") == "segmentation":
        return {"type": "segmentation", "source": source, "name": name}
    return {"type": "image", "source": source, "name": name, "shader": image_shader(info)}


def viewer_state(layers: list[dict], info: dict) -> dict:
    """A state showing ``layers`` at the physical scale of ``info``'s finest level, centred on it."""
    scale = info["scales"][0]
    resolution_nm = scale["resolution"]
    size = scale["size"]
    offset = scale.get("voxel_offset", [0, 0, 0])
    return {
        "dimensions": {axis: [r / 1e9, "m"] for axis, r in zip("xyz", resolution_nm)},
        "position": [o + s / 2 for o, s in zip(offset, size)],
        "crossSectionScale": max(1.0, max(size[:2]) / 400),
        "projectionScale": max(size) * 1.5,
        "layers": layers,
        "selectedLayer": {"layer": layers[0]["name"]},
        "layout": "4panel",
    }


def neuroglancer_link(state: dict, app: str = NEUROGLANCER_APP) -> str:
    return f"{app}/#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")


def dataset_link(source: str, info: dict, name: str = "image", app: str = NEUROGLANCER_APP) -> str:
    """A link that opens one precomputed dataset."""
    return neuroglancer_link(viewer_state([layer(source, info, name)], info), app)
