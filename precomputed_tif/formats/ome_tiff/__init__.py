"""``--format ome-tiff``: one pyramidal OME-TIFF, as Bio-Formats' raw2ometiff writes it.

For ``--dest /data/brain`` the image is ``/data/brain/brain.ome.tif`` (the
directory's own name, then ``.ome.tif``). It holds every z plane of every
channel as a tiled 2-D page (OME ``DimensionOrder="XYCZT"``), with the coarser
levels -- each halving x and y, never z -- in SubIFDs of each page, and the
OME-XML (sizes, pixel type, physical voxel size in µm, channel names and
colours) in the first page. ``/data/brain/brain.offsets.json`` lists the
top-level pages' byte offsets, which Viv's Avivator fetches from beside the
image to jump to a plane over HTTP. Fiji and QuPath (Bio-Formats), tifffile and
Viv read the file.

Colour (RGB) input becomes separate channels (C = 3, or 4 with alpha) named
red, green and blue, not interleaved samples: every reader treats them like
any other channels. Time series are converted one time point at a time
(``--timepoint``), as for every format.

Modules: :mod:`.layout` (sizes, tiles, names), :mod:`.plan` (deciding),
:mod:`.tiles` (stage 1: tasks that downsample and encode planes),
:mod:`.spill` (their work files), :mod:`.assemble` (stage 2: the file),
:mod:`.metadata` (OME-XML), :mod:`.offsets` (Viv's index), :mod:`.run`.
"""

from .plan import FORMAT, OmeTiffPlan, plan
from .run import run, summary

__all__ = ["FORMAT", "OmeTiffPlan", "plan", "run", "summary"]
