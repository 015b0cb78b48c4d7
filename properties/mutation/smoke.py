"""``python -m roialign_suite.properties.mutation.smoke ROOT``: does the (mutated) code under ``ROOT`` import and run?

Calls every mutation target once on an ordinary input (boxes well inside the
map, both pixel conventions, fixed and adaptive grids, float32 and float64,
forward and backward; each level dialect; the FPN pooler and its oracle).
It checks nothing about the values — that is the suite's job — only that no
exception is raised, so that a mutant the suite "catches" merely because it
no longer imports or runs is reported as INVALID. Also compiles the kernels
into the mutant's Numba cache before the suite starts.

Exit status: 0 runs, 1 an exception (INVALID), 3 the modules were not
imported from ``ROOT`` (the mutated copy does not shadow the checkout).
"""
from __future__ import annotations

import sys
from pathlib import Path

SHADOW_ERROR = 3


def shadowing_problem(root: Path):
    """``None`` if ``impl`` and ``reference`` are imported from ``root``, else what is wrong."""
    from roialign_suite import impl
    from roialign_suite import reference

    for module in (impl, reference):
        where = Path(module.__file__).resolve()
        if not where.is_relative_to(root.resolve()):
            return f"{module.__name__} imported from {where}, not from the mutated copy {root}"
    return None


def exercise() -> None:
    import torch

    from roialign_suite import impl
    from roialign_suite import reference
    from roialign_suite.impl import levels as impl_levels
    from roialign_suite.reference import levels as ref_levels
    from roialign_suite.reference import pooler as ref_pooler

    boxes64 = torch.tensor([[0, 1.0, 1.5, 6.0, 7.0], [1, 2.5, 2.0, 9.0, 7.5]], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        features = torch.rand(2, 3, 9, 11, dtype=dtype)
        for roi_align in (impl.roi_align, reference.roi_align):
            for aligned in (False, True):
                for sampling_ratio in (2, 0):
                    x = features.clone().requires_grad_()
                    roi_align(x, boxes64.to(dtype), (3, 2), 1.0, sampling_ratio, aligned).sum().backward()

    level_boxes = torch.tensor([[0.0, 0.0, 10.0, 12.0], [5.0, 5.0, 400.0, 300.0]])
    for dialect in impl_levels.DIALECTS:
        impl_levels.levels_for_boxes(level_boxes, 2, 5, dialect=dialect)
        ref_levels.levels_for_boxes(level_boxes, 2, 5, dialect=dialect)

    pyramid = [torch.rand(1, 2, 64 // 2**i, 64 // 2**i, requires_grad=True) for i in range(4)]
    image_boxes = [torch.tensor([[1.0, 2.0, 30.0, 40.0], [10.0, 10.0, 250.0, 200.0]])]
    for pooler in (impl.fpn_box_head_pooler(), ref_pooler.Pooler(7, (0.25, 0.125, 0.0625, 0.03125), 2)):
        pooler(pyramid, image_boxes).sum().backward()


def main(argv=None) -> int:
    root = Path((argv or sys.argv[1:])[0])
    problem = shadowing_problem(root)
    if problem:
        print(problem, file=sys.stderr)
        return SHADOW_ERROR
    from roialign_suite import impl

    print(f"impl imported from {impl.__file__}")
    exercise()
    return 0


if __name__ == "__main__":
    sys.exit(main())
