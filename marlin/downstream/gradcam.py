"""Grad-CAM over the tokens of the MARLIN encoder: which tubelets drive a chosen output of a probed or
fine-tuned model, upsampled to the frames of a clip and written as PNG overlays."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .model import VideoClassifier
from .tasks import Task


def resolve_target(task: Task, target: str | int | None, logits: Tensor) -> tuple[int, float, str]:
    """(output index, sign, name) of the output to explain; None = the model's prediction.

    Binary tasks have one logit: its positive class is +logit, the other class -logit."""
    names = list(task.labels) if task.labels else ["0", "1"]
    if task.kind == "binary":
        if target is None:
            cls = int(logits[0] >= 0)
        elif str(target) in names:
            cls = names.index(str(target))
        elif str(target).lstrip("-").isdigit() and int(target) in (0, 1):
            cls = int(target)
        else:
            raise ValueError(f"unknown target {target!r}; choose one of {names}")
        return 0, (1.0 if cls == 1 else -1.0), names[cls]
    if target is None:
        idx = int(logits.argmax())
    elif str(target) in names:
        idx = names.index(str(target))
    elif str(target).isdigit() and int(target) < len(names):
        idx = int(target)
    else:
        raise ValueError(f"unknown target {target!r}; choose one of {names}")
    return idx, 1.0, names[idx]


def token_cam(model: VideoClassifier, clip: Tensor, index: int, sign: float = 1.0) -> tuple[Tensor, Tensor]:
    """Grad-CAM on the last encoder block: clip (1, 3, T, H, W) -> (cam (T', H', W') >= 0, logits (K,)).

    cam_n = ReLU(sum_d w_d A_nd) with A the block's output tokens and w the gradient of the chosen
    (signed) logit averaged over tokens."""
    store = {}

    def hook(_, __, out):
        out.retain_grad()
        store["tokens"] = out

    handle = model.encoder.blocks[-1].register_forward_hook(hook)
    try:
        model.eval()
        model.zero_grad(set_to_none=True)
        logits = model(clip)[0]
        (sign * logits[index]).backward()
    finally:
        handle.remove()
    acts, grads = store["tokens"][0].detach().float(), store["tokens"].grad[0].float()  # (N, D) each
    weights = grads.mean(0)  # (D,)
    cam = F.relu(acts @ weights)  # (N,)
    return cam.view(*model.config.grid), logits.detach()


def frame_cam(cam: Tensor, frames: int, size: int) -> np.ndarray:
    """(T', H', W') token map -> (T, S, S) in [0, 1], trilinear upsampling."""
    up = F.interpolate(cam[None, None], size=(frames, size, size), mode="trilinear", align_corners=False)[0, 0]
    up = up - up.min()
    return (up / up.max().clamp(min=1e-12)).numpy()


def overlay_grid(frames: np.ndarray, heat: np.ndarray, columns: int = 8, alpha: float = 0.45) -> np.ndarray:
    """Frames (T, S, S, 3) uint8 RGB over their overlays (JET heat map), rows of ``columns`` -> RGB image."""
    import cv2

    t, s = frames.shape[:2]
    over = []
    for f, h in zip(frames, heat):
        jet = cv2.cvtColor(cv2.applyColorMap((h * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        over.append((f * (1 - alpha) + jet * alpha).astype(np.uint8))
    columns = min(columns, t)
    rows = -(-t // columns)
    grid = np.full((rows * 2 * s, columns * s, 3), 255, np.uint8)
    for i in range(t):
        r, c = divmod(i, columns)
        grid[2 * r * s:(2 * r + 1) * s, c * s:(c + 1) * s] = frames[i]
        grid[(2 * r + 1) * s:(2 * r + 2) * s, c * s:(c + 1) * s] = over[i]
    return grid




def gradcam_clip(model: VideoClassifier, task: Task, clip: np.ndarray, target=None) -> dict:
    """Grad-CAM of one clip (L, S, S, 3) uint8: {"heat": (L, S, S), "target", "score", "logits"}."""
    from ..extract import clips_to_tensor

    x = clips_to_tensor([clip]).to(next(model.parameters()).device)
    with torch.no_grad():
        logits = model(x)[0].cpu()
    index, sign, name = resolve_target(task, target, logits)
    cam, _ = token_cam(model, x, index, sign)
    score = sign * float(logits[index])
    return {"heat": frame_cam(cam.cpu(), clip.shape[0], clip.shape[1]), "target": name, "score": score,
            "logits": logits.tolist()}
