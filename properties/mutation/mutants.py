"""The catalogue of planted bugs: one exact snippet of one source file and its buggy replacement.

Each mutant is a single plausible slip (an offset, a clamp, a comparison,
an index...) in our kernel (``impl/kernels.py``), its Python front end, the
float64 oracle (``reference/roi_align.py``: a bug there must be caught
because the oracle then disagrees with both numba and torchvision), the level
mapper or the pooler. ``original`` must occur exactly once in its file
(``tests/test_mutants_apply.py`` checks that, so the catalogue cannot rot
silently when the code changes) and the replacement must still import and
run (the runner's smoke call checks that).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

KERNELS = "impl/kernels.py"
FRONT_END = "impl/roi_align.py"
OPS = "impl/ops.py"
ORACLE = "reference/roi_align.py"
LEVELS = "impl/levels.py"
ORACLE_LEVELS = "reference/levels.py"
POOLER = "impl/pooler.py"

# The property files that should catch a bug in each target file (paths from the repo root).
PROPERTY_SUITES: Dict[str, Tuple[str, ...]] = {
    KERNELS: ("properties",),
    FRONT_END: ("properties",),
    OPS: ("properties",),
    ORACLE: ("properties",),
    LEVELS: ("properties/test_level_assignment.py", "properties/test_pooler_properties.py"),
    ORACLE_LEVELS: ("properties/test_level_assignment.py", "properties/test_pooler_properties.py"),
    POOLER: ("properties/test_pooler_properties.py",),
}

# The hand-written unit tests for each target file (reported separately with --unit-tests).
UNIT_SUITES: Dict[str, Tuple[str, ...]] = {
    KERNELS: ("tests/test_roi_align.py",),
    FRONT_END: ("tests/test_roi_align.py",),
    OPS: ("tests/test_roi_align.py", "tests/test_operator.py"),
    ORACLE: ("tests/test_roi_align.py",),
    LEVELS: ("tests/test_levels.py", "tests/test_pooler.py"),
    ORACLE_LEVELS: ("tests/test_levels.py", "tests/test_pooler.py"),
    POOLER: ("tests/test_pooler.py", "tests/test_extractors.py"),
}


class MutantDoesNotApply(ValueError):
    """The mutant's original snippet is not in its file exactly once."""


@dataclass(frozen=True)
class Mutant:
    id: str
    bug_class: str
    description: str
    path: str  # relative to the repository root
    original: str
    replacement: str

    def apply(self, source: str) -> str:
        """``source`` with ``original`` replaced; :class:`MutantDoesNotApply` unless it occurs exactly once."""
        found = source.count(self.original)
        if found != 1:
            raise MutantDoesNotApply(f"{self.id}: original snippet occurs {found} times in {self.path}, expected 1")
        return source.replace(self.original, self.replacement)

    def apply_in(self, root: Path) -> None:
        """Plant the bug in the copy of the repository at ``root`` (rewrites one file)."""
        target = Path(root) / self.path
        target.write_text(self.apply(target.read_text()))

    @property
    def property_suite(self) -> Tuple[str, ...]:
        return PROPERTY_SUITES[self.path]

    @property
    def unit_suite(self) -> Tuple[str, ...]:
        return UNIT_SUITES[self.path]


def _lines(indent: int, *lines: str) -> str:
    """Lines joined with newlines, every one after the first indented by ``indent`` spaces."""
    return ("\n" + " " * indent).join(lines)


_SCATTERS = (
    "_scatter(rows[r0, x0], wy0 * wx0 / count, g)",
    "_scatter(rows[r0, x1], wy0 * wx1 / count, g)",
    "_scatter(rows[r1, x0], wy1 * wx0 / count, g)",
    "_scatter(rows[r1, x1], wy1 * wx1 / count, g)",
)
# The four scatters as they stand in the backward kernel (two per row test).
_SCATTER_BLOCK = _lines(24, "if in0:", "    " + _SCATTERS[0], "    " + _SCATTERS[1], "if in1:", "    " + _SCATTERS[2], "    " + _SCATTERS[3])

MUTANTS: List[Mutant] = [
    # --- our kernel: geometry -------------------------------------------------------
    Mutant(
        "kernel-aligned-offset-zero", "offset", "aligned=True no longer shifts boxes by -0.5 px",
        KERNELS, "offset = 0.5 if aligned else 0.0", "offset = 0.0 if aligned else 0.0",
    ),
    Mutant(
        "kernel-legacy-clamp-dropped", "clamp", "legacy mode no longer forces RoIs to at least 1x1",
        KERNELS,
        _lines(8, "roi_w = max(roi_w, 1.0)", "roi_h = max(roi_h, 1.0)"),
        "pass",
    ),
    Mutant(
        "kernel-adaptive-grid-floor", "grid rounding", "adaptive grid floor(roi / pooled) instead of ceil",
        KERNELS,
        _lines(8, "grid_h = np.int64(math.ceil(roi_h / pooled_h))", "grid_w = np.int64(math.ceil(roi_w / pooled_w))"),
        _lines(8, "grid_h = np.int64(math.floor(roi_h / pooled_h))", "grid_w = np.int64(math.floor(roi_w / pooled_w))"),
    ),
    Mutant(
        "kernel-forward-sample-plus-one", "sample position", "forward samples at (i + 1) instead of (i + 0.5) of each bin's grid",
        KERNELS,
        "pos = start + p * bin_size + (i + 0.5) * bin_size / grid",
        "pos = start + p * bin_size + (i + 1.0) * bin_size / grid",
    ),
    Mutant(
        "kernel-count-plus-one", "denominator", "bin average divides by grid_h * grid_w + 1",
        KERNELS, "count = max(grid_h * grid_w, 1)", "count = max(grid_h * grid_w + 1, 1)",
    ),
    Mutant(
        "kernel-bin-size-axes-swapped", "swapped axes", "bin height divides by pooled_w and bin width by pooled_h",
        KERNELS,
        "return start_h, start_w, roi_h / pooled_h, roi_w / pooled_w, grid_h, grid_w, count",
        "return start_h, start_w, roi_h / pooled_w, roi_w / pooled_h, grid_h, grid_w, count",
    ),
    # --- our kernel: bilinear edge rules ---------------------------------------------
    Mutant(
        "kernel-lower-bound-inclusive", "boundary comparison", "a sample exactly at -1 is dropped (pos <= -1.0)",
        KERNELS, "if pos < -1.0 or pos > size:", "if pos <= -1.0 or pos > size:",
    ),
    Mutant(
        "kernel-last-pixel-clamp-strict", "clamp", "low == size - 1 is no longer clamped (low > size - 1), high = size",
        KERNELS, "if low >= size - 1:", "if low > size - 1:",
    ),
    Mutant(
        "kernel-forward-x-against-height", "swapped axes", "the forward clamps x against the height instead of the width",
        KERNELS,
        "xs, wxs = _sample_taps(start_w, bin_w, pooled_w, grid_w, features.shape[height_axis + 1])",
        "xs, wxs = _sample_taps(start_w, bin_w, pooled_w, grid_w, features.shape[height_axis])",
    ),
    Mutant(
        "kernel-forward-y-weights-swapped", "swapped weights", "forward weights wy0 and wy1 exchanged",
        KERNELS,
        _lines(16, "w00 = wy0 * wx0", "w01 = wy0 * wx1", "w10 = wy1 * wx0", "w11 = wy1 * wx1"),
        _lines(16, "w00 = wy1 * wx0", "w01 = wy1 * wx1", "w10 = wy0 * wx0", "w11 = wy0 * wx1"),
    ),
    # --- our kernel: indexing ---------------------------------------------------------
    Mutant(
        "kernel-forward-batch-zero", "batch index", "forward reads image 0 for every RoI",
        KERNELS,
        _lines(4, "b = np.int64(roi[0])", "start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry("),
        _lines(4, "b = 0", "start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry("),
    ),
    Mutant(
        "kernel-backward-batch-first-roi", "batch index", "backward scatters every RoI into the first RoI's image",
        KERNELS,
        _lines(8, "width = widths[level]", "roi = rois[k]", "b = np.int64(roi[0])"),
        _lines(8, "width = widths[level]", "roi = rois[k]", "b = np.int64(rois[0, 0])"),
    ),
    Mutant(
        "kernel-forward-last-channel-skipped", "channel index", "forward channel loop stops one short (last channel 0)",
        KERNELS,
        _lines(4, "for c in range(acc.shape[0]):", "    acc[c] +="),
        _lines(4, "for c in range(acc.shape[0] - 1):", "    acc[c] +="),
    ),
    Mutant(
        "kernel-backward-band-end-short", "gradient accumulation", "backward row band ends one row early (a row per band gets no gradient)",
        KERNELS, "row_hi = (band + 1) * total_rows // bands", "row_hi = (band + 1) * total_rows // bands - 1",
    ),
    Mutant(
        "kernel-backward-zeroes-first-pixel-only", "gradient accumulation",
        "backward zeroes only the first pixel of each of its rows of an NHWC (channels_last) gradient",
        KERNELS,
        "rows[lo - row_starts[slot]:hi - row_starts[slot]] = 0.0",
        "rows[lo - row_starts[slot]:hi - row_starts[slot], 0] = 0.0",
    ),
    Mutant(
        "kernel-backward-band-buffer-not-zeroed", "gradient accumulation",
        "backward accumulates an NCHW level into an uninitialised band buffer",
        KERNELS,
        "return np.zeros((hi - lo, widths[slot], like.shape[3]), like.dtype), lo",
        "return np.empty((hi - lo, widths[slot], like.shape[3]), like.dtype), lo",
    ),
    Mutant(
        "kernel-backward-nchw-copy-row-above", "gradient accumulation",
        "backward copies each accumulated row into the NCHW gradient one row up",
        KERNELS,
        "_row_to_nchw(rows[row - lo], out, local // heights[slot], local % heights[slot])",
        "_row_to_nchw(rows[row - lo], out, local // heights[slot], local % heights[slot] - 1)",
    ),
    Mutant(
        "kernel-scatter-last-channel-skipped", "channel index", "backward scatter stops one channel short",
        KERNELS, "for c in range(dst.shape[0]):", "for c in range(dst.shape[0] - 1):",
    ),
    Mutant(
        "kernel-forward-finest-scale", "pooler", "the forward pools every level at the finest level's scale",
        KERNELS, "spatial_scale = scales[level]", "spatial_scale = scales[0]",
    ),
    Mutant(
        "kernel-nchw-block-last-channel-skipped", "channel index",
        "the NCHW forward leaves the last channel of each block of 16 unwritten",
        KERNELS, "last = min(first + NCHW_CHANNEL_BLOCK, channels)", "last = min(first + NCHW_CHANNEL_BLOCK - 1, channels)",
    ),
    Mutant(
        "kernel-nchw-wrong-tap", "gather", "the NCHW forward reads tap (y1, x1) from row y0",
        KERNELS, "w11 * _convert(plane[y1, x1], acc))", "w11 * _convert(plane[y0, x1], acc))",
    ),
    Mutant(
        "kernel-nhwc-transpose-last-column", "channel index", "NCHW -> NHWC copy never writes the last column",
        KERNELS,
        _lines(8, "for x in range(src.shape[3]):", "    for c in range(c0, c1):", "        dst_row[x, c] = _convert(src[b, c, y, x], dst_row)"),
        _lines(8, "for x in range(src.shape[3] - 1):", "    for c in range(c0, c1):", "        dst_row[x, c] = _convert(src[b, c, y, x], dst_row)"),
    ),
    # --- our kernel: gradient ----------------------------------------------------------
    Mutant(
        "kernel-backward-no-count", "gradient scaling", "backward forgets the 1 / count of the bin average",
        KERNELS, _SCATTER_BLOCK, _SCATTER_BLOCK.replace(" / count", ""),
    ),
    Mutant(
        "kernel-backward-wrong-tap-weight", "gradient scaling", "backward gives tap (y0, x1) the weight of (y1, x1)",
        KERNELS, _SCATTERS[1], _SCATTERS[1].replace("wy0 * wx1", "wy1 * wx1"),
    ),
    Mutant(
        "kernel-backward-wrong-pixel", "gradient accumulation", "backward scatters tap (y1, x0) into pixel (y0, x0)",
        KERNELS, _SCATTERS[2], _SCATTERS[2].replace("[r1, x0]", "[r0, x0]"),
    ),
    Mutant(
        "kernel-backward-assign-not-add", "gradient accumulation", "backward overwrites (=) instead of accumulating (+=)",
        KERNELS, "dst[c] += w * src[c]", "dst[c] = w * src[c]",
    ),
    # --- our kernel: halves --------------------------------------------------------------
    Mutant(
        "kernel-float16-truncates", "half rounding", "float32 -> float16 drops the low 13 bits (truncates) instead of rounding to nearest",
        KERNELS, "normal = (magnitude + 0xFFF + ((magnitude >> 13) & 1) - (112 << 23)) >> 13",
        "normal = (magnitude - (112 << 23)) >> 13",
    ),
    # --- our front end -----------------------------------------------------------------
    Mutant(
        "ops-backward-drops-aligned", "pixel convention",
        "the autograd rule calls the backward operator with aligned=False whatever the forward used",
        OPS,
        "w, sampling_ratio, aligned, ctx.channels_last)",
        "w, sampling_ratio, False, ctx.channels_last)",
    ),
    # --- the float64 oracle ------------------------------------------------------------
    Mutant(
        "oracle-offset-sign", "offset", "oracle adds the aligned offset to x1 instead of subtracting it",
        ORACLE, "start_w = x1 * spatial_scale - offset", "start_w = x1 * spatial_scale + offset",
    ),
    Mutant(
        "oracle-clamp-in-aligned-mode", "clamp", "oracle forces RoIs to at least 1x1 in aligned mode too",
        ORACLE, _lines(4, "if not aligned:", "    # Legacy"), _lines(4, "if True:", "    # Legacy"),
    ),
    Mutant(
        "oracle-adaptive-grid-int", "grid rounding", "oracle's adaptive grid int(roi / pooled) instead of ceil",
        ORACLE, "return int(math.ceil(roi_size / pooled))", "return int(roi_size / pooled)",
    ),
    Mutant(
        "oracle-sampling-ratio-zero-fixed", "grid rounding", "oracle treats sampling_ratio = 0 as a fixed 0x0 grid",
        ORACLE, _lines(4, "if sampling_ratio > 0:", "    return sampling_ratio"),
        _lines(4, "if sampling_ratio >= 0:", "    return sampling_ratio"),
    ),
    Mutant(
        "oracle-sample-y-no-half", "sample position", "oracle samples rows at iy instead of iy + 0.5",
        ORACLE,
        "y = g.start_h + ph * g.bin_h + (iy + 0.5) * g.bin_h / g.grid_h",
        "y = g.start_h + ph * g.bin_h + iy * g.bin_h / g.grid_h",
    ),
    Mutant(
        "oracle-count-grid-h-only", "denominator", "oracle averages over grid_h instead of grid_h * grid_w",
        ORACLE,
        _lines(4, "count = max(grid_h * grid_w, 1)", "return RoIGeometry("),
        _lines(4, "count = max(grid_h, 1)", "return RoIGeometry("),
    ),
    Mutant(
        "oracle-upper-bound-inclusive", "boundary comparison", "oracle drops a sample exactly at x == width",
        ORACLE, "x < -1.0 or x > width:", "x < -1.0 or x >= width:",
    ),
    Mutant(
        "oracle-x-weights-swapped", "swapped weights", "oracle exchanges the weights of x_low and x_high (top row)",
        ORACLE,
        _lines(8, "(y_low, x_low, hy * hx),", "(y_low, x_high, hy * lx),"),
        _lines(8, "(y_low, x_low, hy * lx),", "(y_low, x_high, hy * hx),"),
    ),
    Mutant(
        "oracle-box-x1-y1-swapped", "swapped axes", "oracle reads the box's x1 as its top and y1 as its left",
        ORACLE,
        _lines(4, "start_w = x1 * spatial_scale - offset", "start_h = y1 * spatial_scale - offset"),
        _lines(4, "start_w = y1 * spatial_scale - offset", "start_h = x1 * spatial_scale - offset"),
    ),
    Mutant(
        "oracle-batch-from-roi-index", "batch index", "oracle takes the image index from the RoI's position k",
        ORACLE, "image = features[int(roi[0])]", "image = features[k % features.shape[0]]",
    ),
    Mutant(
        "oracle-backward-assign-not-add", "gradient accumulation", "oracle backward overwrites (=) instead of +=",
        ORACLE,
        "image_grad[:, row, col] += weight * grad_output[k, :, ph, pw]",
        "image_grad[:, row, col] = weight * grad_output[k, :, ph, pw]",
    ),
    # --- level mapper ------------------------------------------------------------------
    Mutant(
        "levels-maskrcnn-plus-one-dropped", "level mapper", "maskrcnn_benchmark dialect loses the legacy +1 per side",
        LEVELS,
        'Dialect("maskrcnn_benchmark", side_offset=1.0,',
        'Dialect("maskrcnn_benchmark", side_offset=0.0,',
    ),
    Mutant(
        "levels-eps-outside-log", "level mapper", "eps-inside-log dialects add eps after the log",
        LEVELS,
        "values = canonical_level + torch.log2(sizes / canonical_scale + eps)",
        "values = canonical_level + torch.log2(sizes / canonical_scale) + eps",
    ),
    Mutant(
        "levels-canonical-level-minus-one", "level mapper", "torchvision dialect uses k0 - 1",
        LEVELS,
        "values = canonical_level + torch.log2(sizes / canonical_scale) + torch.full_like(",
        "values = canonical_level - 1 + torch.log2(sizes / canonical_scale) + torch.full_like(",
    ),
    Mutant(
        "levels-clamp-max-short", "level mapper", "levels clamped to k_max - 1 instead of k_max",
        LEVELS, "torch.clamp(torch.floor(values), min=k_min, max=k_max)", "torch.clamp(torch.floor(values), min=k_min, max=k_max - 1)",
    ),
    Mutant(
        "levels-round-not-floor", "level mapper", "levels rounded to nearest instead of floored",
        LEVELS, "torch.clamp(torch.floor(values),", "torch.clamp(torch.round(values),",
    ),
    Mutant(
        "levels-degenerate-top-level", "level mapper", "boxes with area <= 0 get the top level instead of the lowest",
        LEVELS,
        "levels = torch.where(positive, levels, torch.full_like(levels, k_min))",
        "levels = torch.where(positive, levels, torch.full_like(levels, k_max))",
    ),
    Mutant(
        "oracle-levels-sqrt-misplaced", "level mapper", "oracle's torchvision formula takes sqrt(area / s0) instead of sqrt(area) / s0",
        ORACLE_LEVELS,
        "return k0 + math.log2(math.sqrt(area) / s0) + eps",
        "return k0 + math.log2(math.sqrt(area / s0)) + eps",
    ),
    Mutant(
        "oracle-levels-height-plus-one-dropped", "level mapper", "oracle's maskrcnn_benchmark area adds +1 to the width only",
        ORACLE_LEVELS, "area = (x2 - x1 + 1) * (y2 - y1 + 1)", "area = (x2 - x1 + 1) * (y2 - y1)",
    ),
    # --- pooler --------------------------------------------------------------------------
    Mutant(
        "pooler-order-not-restored", "pooler", "the per-level path (a swapped-in roi_align) pools rows grouped by level, not the input's rows",
        POOLER,
        "rows = torch.nonzero(levels == level).squeeze(1)",
        "rows = torch.arange(int((levels < level).sum()), int((levels <= level).sum()))",
    ),
    Mutant(
        "pooler-scales-reversed", "pooler", "each level pools with the scale of the mirror level (coarsest first)",
        POOLER, "features, rois, levels, self.scales, self.output_size", "features, rois, levels, self.scales[::-1], self.output_size",
    ),
    Mutant(
        "pooler-k-range-off-by-one", "pooler", "k_min/k_max from frexp's exponent without the -1 (one level too fine)",
        POOLER, "exponents.append(exponent - 1)", "exponents.append(exponent)",
    ),
    Mutant(
        "pooler-levels-from-batch-column", "pooler", "levels computed from rois[:, :4] (batch index read as x1)",
        POOLER, "rois[:, 1:], self.k_min", "rois[:, :4], self.k_min",
    ),
]


def by_id() -> Dict[str, Mutant]:
    return {m.id: m for m in MUTANTS}
