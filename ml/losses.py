"""The training losses and the SSIM that evaluation reports: beside the model, so that
training, swapping and evaluation share one definition."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..common.guides_file import REGION_LABELS

HEAVY_REGIONS = (REGION_LABELS["eyes"], REGION_LABELS["lips"], REGION_LABELS["mouth_interior"])


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (g / g.sum())


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM of images in 0..1, averaged over channels: (B, 1, H, W)."""
    g = _gaussian(window, 1.5).to(a)
    kernel = (g[:, None] * g[None, :]).expand(a.shape[1], 1, window, window)
    blur = lambda x: F.conv2d(x, kernel, padding=window // 2, groups=a.shape[1])  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return (numerator / denominator).mean(dim=1, keepdim=True)


def _same(total: torch.Tensor) -> torch.Tensor:
    return total


def reconstruction_loss(rgb, mask_logits, batch, region_weight: float,
                        total_of: Callable[[torch.Tensor], torch.Tensor] = _same):
    """``total_of``: the weights' total over the whole batch from this share's total (the
    mean over the training processes, so their averaged gradients are the whole batch's)."""
    mask = batch["mask"]
    heavy = torch.zeros_like(mask)
    for label in HEAVY_REGIONS:
        heavy = heavy + (batch["region"] == label).unsqueeze(1).float()
    weight = mask * (1 + (region_weight - 1) * heavy)
    total = total_of(weight.sum()).clamp(min=1)
    l1 = ((rgb - batch["rgb"]).abs().mean(dim=1, keepdim=True) * weight).sum() / total
    ssim = 1 - (ssim_map(rgb, batch["rgb"]) * weight).sum() / total
    mask_loss = F.binary_cross_entropy_with_logits(mask_logits, mask)
    return l1 + ssim + 0.5 * mask_loss, {"l1": l1.item(), "ssim": ssim.item(),
                                          "mask": mask_loss.item()}


def occlusion_loss(logits: torch.Tensor, coverage: torch.Tensor, face: torch.Tensor,
                   total_of: Callable[[torch.Tensor], torch.Tensor] = _same,
                   near_occluders_only: bool = False) -> torch.Tensor:
    """Binary cross-entropy of the occlusion head against the pasted occluders' coverage
    (B, 1, R, R), counted fully on and around the face and a quarter elsewhere.
    ``near_occluders_only``: counted only on and around the pasted occluders (the plate's
    crops: a hand really in front of the plate's face must not be taught as face)."""
    near_face = F.max_pool2d(face, 9, stride=1, padding=4)
    weight = 0.25 + 0.75 * near_face
    normaliser = weight.sum()
    if near_occluders_only:
        weight = weight * F.max_pool2d(coverage, 31, stride=1, padding=15)
    loss = F.binary_cross_entropy_with_logits(logits, coverage, weight=weight, reduction="sum")
    return loss / total_of(normaliser)
