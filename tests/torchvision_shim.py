"""The two torchvision functions facenet-pytorch imports, for the reference tests only.

facenet-pytorch 2.6.0 (the reference MTCNN of tests/test_mtcnn.py, installed with
`pip install --no-deps facenet-pytorch==2.6.0`) imports `torchvision.ops.boxes.batched_nms`
(used by its detector) and `torchvision.transforms.functional` (only `to_tensor`, used when
extracting faces). No torchvision wheel installs beside the pinned CPU torch 2.13 build, so
when `import torchvision` fails, `install()` registers a minimal stand-in in `sys.modules`:
`batched_nms` in pure torch with torchvision's documented semantics, and `to_tensor`.
A real torchvision, when importable, is always used instead.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """`torchvision.ops.nms`: greedy by descending score; a box is dropped when its IoU with
    a kept, higher-scoring box is > iou_threshold. Areas are (x2 - x1) * (y2 - y1)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = []
    while order.numel():
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        order = rest[~(inter / (areas[i] + areas[rest] - inter) > iou_threshold)]
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """`torchvision.ops.boxes.batched_nms`: NMS within each `idxs` category, by shifting each
    category's boxes by idx * (max coordinate + 1) so categories never overlap."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def to_tensor(pic) -> torch.Tensor:
    """`torchvision.transforms.functional.to_tensor` for numpy HWC arrays: CHW, uint8 -> [0, 1]."""
    array = np.asarray(pic)
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor


def install() -> None:
    """Registers the stand-in unless a real torchvision imports."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass
    modules = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
        "torchvision.transforms.functional")}
    modules["torchvision.ops.boxes"].batched_nms = batched_nms
    modules["torchvision.ops.boxes"].nms = nms
    modules["torchvision.ops"].boxes = modules["torchvision.ops.boxes"]
    modules["torchvision.transforms.functional"].to_tensor = to_tensor
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    sys.modules.update(modules)
