"""facenet-pytorch's MTCNN and every speed-up of it: the same detections, faster.

Three changes, each leaving every box, score and landmark bit-identical to stock MTCNN (the
tests compare them):

* :func:`load_mtcnn` swaps MTCNN's max pools for strided-slice maxima on the CPU
  (:func:`replace_max_pools`), 4-10x faster on its shapes;
* the tracker runs detection on one CPU thread (:func:`cpu_threads`): thousands of tiny ops
  lose more to thread hand-offs than they gain;
* :func:`detect_faces` resamples the R-net and O-net crops in groups, below.

:func:`detect_faces` is ``facenet_pytorch.models.utils.detect_face.detect_face`` (MIT licence,
Tim Esler) step for step, using that module's own helpers, except for one thing: the R-net and
O-net inputs. The original crops every candidate box and resamples it to 24x24 / 48x48 with
its own ``interpolate(mode="area")`` call, thousands of calls per batch of frames. Here the
crops of equal size are stacked and resampled with one call per size. Area resampling treats
every image of a batch alike, so each crop gets the same numbers (a test compares detections
with stock MTCNN's bit for bit), in the same order, while the per-call overhead goes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np


def load_mtcnn(device: str, min_face_size: int, thresholds: tuple[float, float, float]) -> Any:
    """facenet-pytorch's MTCNN (every face, most confident first, no post-processing) in eval
    mode on ``device``; on a CPU its max pools are replaced (:func:`replace_max_pools`)."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_face_size,
                  thresholds=list(thresholds), select_largest=False, post_process=False).eval()
    if device == "cpu":
        replace_max_pools(mtcnn)
    return mtcnn


def detect_faces(mtcnn: Any, frames: np.ndarray) -> tuple[list[Any], list[Any], list[Any]]:
    """Boxes (n, 4), probabilities (n,) and landmarks (n, 5, 2) per frame of ``frames`` (uint8,
    (batch, H, W, 3)), with ``None`` entries (and ``[None]`` probabilities) where no face is
    found: what ``MTCNN.detect(frames, landmarks=True)`` returns with ``select_largest=False``."""
    import torch

    with torch.no_grad():
        batch_boxes, batch_points = _cascade(
            frames, mtcnn.min_face_size, mtcnn.pnet, mtcnn.rnet, mtcnn.onet, mtcnn.thresholds,
            mtcnn.factor, mtcnn.device)
    boxes, probs, points = [], [], []
    for box, point in zip(batch_boxes, batch_points):
        box, point = np.array(box), np.array(point)
        if len(box) == 0:
            boxes.append(None)
            probs.append([None])
            points.append(None)
        else:
            boxes.append(box[:, :4])
            probs.append(box[:, 4])
            points.append(point)
    return boxes, probs, points


def _resampled_crops(imgs: Any, image_inds: Any, y: np.ndarray, ey: np.ndarray, x: np.ndarray,
                     ex: np.ndarray, size: int) -> Any:
    """The boxes' crops of ``imgs`` resampled to size x size, in box order, skipping empty
    boxes as the original does; crops of one size are resampled together."""
    import torch
    from torch.nn.functional import interpolate

    keep = [k for k in range(len(y)) if ey[k] > (y[k] - 1) and ex[k] > (x[k] - 1)]
    groups: dict[tuple[int, int], list[int]] = {}
    for pos, k in enumerate(keep):
        groups.setdefault((int(ey[k] - y[k] + 1), int(ex[k] - x[k] + 1)), []).append(pos)
    out = torch.empty((len(keep), imgs.shape[1], size, size), dtype=imgs.dtype, device=imgs.device)
    inds = image_inds.tolist()
    for members in groups.values():
        crops = torch.stack([imgs[inds[keep[p]], :, y[keep[p]] - 1:ey[keep[p]],
                                  x[keep[p]] - 1:ex[keep[p]]] for p in members])
        out[members] = interpolate(crops, size=(size, size), mode="area")
    return out


def _cascade(imgs: np.ndarray, minsize: float, pnet: Any, rnet: Any, onet: Any,
             threshold: Any, factor: float, device: Any) -> tuple[Any, Any]:
    import torch
    from facenet_pytorch.models.utils.detect_face import (batched_nms, batched_nms_numpy, bbreg,
                                                          fixed_batch_process,
                                                          generateBoundingBox, imresample, pad,
                                                          rerec)

    imgs = torch.as_tensor(np.ascontiguousarray(imgs), device=device)
    model_dtype = next(pnet.parameters()).dtype
    imgs = imgs.permute(0, 3, 1, 2).type(model_dtype)
    batch_size = len(imgs)
    h, w = imgs.shape[2:4]
    m = 12.0 / minsize
    minl = min(h, w) * m

    scales = []
    scale_i = m
    while minl >= 12:
        scales.append(scale_i)
        scale_i = scale_i * factor
        minl = minl * factor
    if not scales:  # frames smaller than the smallest face looked for hold none
        return ([np.zeros((0, 5), np.float32) for _ in range(batch_size)],
                [np.zeros((0, 5, 2), np.float32) for _ in range(batch_size)])

    # First stage: P-net over the pyramid, NMS per scale and image, then per image.
    boxes, image_inds, scale_picks = [], [], []
    offset = 0
    for scale in scales:
        im_data = imresample(imgs, (int(h * scale + 1), int(w * scale + 1)))
        im_data = (im_data - 127.5) * 0.0078125
        reg, probs = pnet(im_data)
        boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
        boxes.append(boxes_scale)
        image_inds.append(image_inds_scale)
        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
        scale_picks.append(pick + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(boxes, dim=0)
    image_inds = torch.cat(image_inds, dim=0)
    scale_picks = torch.cat(scale_picks, dim=0)
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    boxes = rerec(boxes)
    y, ey, x, ex = pad(boxes, w, h)

    # Second stage: R-net on 24x24 crops.
    if len(boxes) > 0:
        im_data = _resampled_crops(imgs, image_inds, y, ey, x, ex, 24)
        im_data = (im_data - 127.5) * 0.0078125
        out = fixed_batch_process(im_data, rnet)
        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        score = out1[1, :]
        ipass = score > threshold[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = bbreg(boxes, mv)
        boxes = rerec(boxes)

    # Third stage: O-net on 48x48 crops, landmarks, "Min" NMS per image.
    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes) > 0:
        y, ey, x, ex = pad(boxes, w, h)
        im_data = _resampled_crops(imgs, image_inds, y, ey, x, ex, 48)
        im_data = (im_data - 127.5) * 0.0078125
        out = fixed_batch_process(im_data, onet)
        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        out2 = out[2].permute(1, 0)
        score = out2[1, :]
        points = out1
        ipass = score > threshold[2]
        points = points[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)
        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes = boxes.cpu().numpy()
    points = points.cpu().numpy()
    image_inds = image_inds.cpu()
    batch_boxes, batch_points = [], []
    for b_i in range(batch_size):
        b_i_inds = np.where(image_inds == b_i)
        batch_boxes.append(boxes[b_i_inds].copy())
        batch_points.append(points[b_i_inds].copy())
    return batch_boxes, batch_points


def replace_max_pools(module: Any) -> int:
    """Swap every ceil-mode ``nn.MaxPool2d`` inside ``module`` for :func:`_slice_max_pool_class`,
    which gives bit-identical outputs; returns how many were replaced.

    On a CPU thread, torch's max_pool2d takes about 40% of MTCNN's detection time; the maximum
    of strided slices is 4-10x faster on MTCNN's shapes (a max is exact, so nothing changes).
    """
    import torch

    count = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if (isinstance(child, torch.nn.MaxPool2d) and _pair(child.padding) == (0, 0)
                    and _pair(child.dilation) == (1, 1) and not child.return_indices):
                setattr(parent, name, _slice_max_pool_class()(_pair(child.kernel_size),
                                                              _pair(child.stride or child.kernel_size),
                                                              bool(child.ceil_mode)))
                count += 1
    return count


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pooled_length(n: int, k: int, s: int, ceil: bool) -> int:
    """torch's output length for an unpadded max pool (a window must start inside the input)."""
    if ceil:
        out = -(-(n - k) // s) + 1
        if (out - 1) * s >= n:
            out -= 1
        return out
    return (n - k) // s + 1


@functools.cache
def _slice_max_pool_class() -> type:
    import torch

    class SliceMaxPool2d(torch.nn.Module):
        """Max pooling (no padding or dilation) as the maximum of k strided slices per axis;
        windows that run past the edge in ceil mode see -inf there, as in torch."""

        def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], ceil_mode: bool):
            super().__init__()
            self.kernel, self.stride, self.ceil_mode = kernel, stride, ceil_mode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for axis, k, s in ((-2, self.kernel[0], self.stride[0]),
                               (-1, self.kernel[1], self.stride[1])):
                x = self._pool_axis(x, axis, k, s)
            return x

        def _pool_axis(self, x: torch.Tensor, axis: int, k: int, s: int) -> torch.Tensor:
            n = x.shape[axis]
            out = _pooled_length(n, k, s, self.ceil_mode)

            def taps(j: int) -> torch.Tensor:  # x[j], x[j + s], ... as far as the input goes
                count = min(out, (n - 1 - j) // s + 1)
                part = x.narrow(axis, j, (count - 1) * s + 1)
                return part[..., ::s] if axis == -1 else part[..., ::s, :]

            y = taps(0).clone()
            for j in range(1, k):
                part = taps(j)  # one shorter when the last window runs past the edge (ceil)
                head = y.narrow(axis, 0, part.shape[axis])
                torch.maximum(head, part, out=head)
            return y

        def extra_repr(self) -> str:
            return f"kernel={self.kernel}, stride={self.stride}, ceil_mode={self.ceil_mode}"

    return SliceMaxPool2d


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run a block with torch limited to ``n`` CPU threads, restoring the count after.

    MTCNN's refine stages crop and resize thousands of tiny candidate boxes one at a time; with
    several threads each tiny op pays a thread-pool hand-off (measured 3 ms per 24x24 resize on
    2 cores, 75% of detection time), so one thread is 3-10x faster on the CPU.
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
