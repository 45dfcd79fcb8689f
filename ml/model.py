"""The swap network: one file, one configuration dataclass.

A shared encoder reads an aligned face crop; one decoder per identity renders that
identity's face from the encoder's code, conditioned at every scale on the CG guides of
the frame, in three sets that can each be switched off (the ablation):

- "mesh": camera-space normals, canonical UV and the region one-hot, plus a learned
  *neural texture* per identity (Deferred Neural Rendering) sampled through the UV guide,
  so each pixel knows which point of the face it shows;
- "texture": the identity's own albedo (``pipeline/texture.py``) rendered through the
  frame's guides under the frame's light. With ``texture_base`` the decoder's colour is
  this render corrected by the network (a skip from the CG render to the output), so the
  network learns only what CG cannot carry: expression detail, the mouth, the eyes;
- "eyes": the irises where the eyes are open, from the tracked iris landmarks: where the
  performer looks.

Without guides (``guides=()``) the same decoders run unconditioned.

There are no skip connections from the encoder: everything the decoder knows about the
frame passes through the code (pose and expression, lighting) or comes from the guides
(geometry), which is what lets the source decoder render the plate's frame as the source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..common.profiles import GUIDE_NAMES
from ..common.profiles import PROFILES as PROFILE_SIZES

SOURCE, TARGET = 0, 1  # the decoders: the source person's and the plate performer's
NUM_REGIONS = 6  # background + the five of common/guides_file.REGION_LABELS
GUIDE_SETS = {"mesh": 3 + 2 + NUM_REGIONS,  # normals, uv, region one-hot
              "texture": 3,  # the albedo render, RGB
              "eyes": 1}  # the iris guide
OCCLUSION_GUIDE_SETS = ("mesh", "eyes")  # the geometry: the same for either identity
ALL_GUIDES = tuple(GUIDE_SETS)
assert ALL_GUIDES == GUIDE_NAMES  # the command line's names (common/profiles.py)
GUIDE_CHANNELS = sum(GUIDE_SETS.values())


@dataclass(frozen=True)
class SwapConfig:
    resolution: int = 128  # crop size the model works at
    base_channels: int = 32  # channels at full resolution; doubled per level, capped
    max_channels: int = 256
    levels: int = 4  # times the encoder halves the resolution
    code_channels: int = 128  # channels of the bottleneck code
    texture_size: int = 256  # neural texture size (per identity, square)
    texture_channels: int = 8
    identities: int = 2  # 0: source, 1: target (plate)
    guides: tuple[str, ...] = ALL_GUIDES  # which guide sets condition the decoders
    texture_base: bool = True  # the decoder corrects the texture render (with "texture")
    occlusion: bool = True  # an occlusion head: what stands in front of the face
    occlusion_channels: int = 16  # its width at full resolution
    # The head also sees the frame's geometry guides (mesh, eyes: where the face, its eyes
    # and mouth should be), and the face's own texture rendered under the frame's light
    # (what the face looks like there with nothing in front of it; the plate's at swap
    # time, never the source's).
    occlusion_guides: bool = True
    occlusion_sees_texture: bool = True

    @property
    def use_guides(self) -> bool:
        return bool(self.guides)

    @property
    def guide_channels(self) -> int:
        return sum(GUIDE_SETS[name] for name in self.guides)

    @property
    def occlusion_guide_sets(self) -> tuple[str, ...]:
        """The guide sets the occlusion head sees, of those the model has."""
        if not self.occlusion_guides:
            return ()
        wanted = OCCLUSION_GUIDE_SETS + (("texture",) if self.occlusion_sees_texture else ())
        return tuple(name for name in self.guides if name in wanted)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> SwapConfig:
        values = dict(values)
        if "use_guides" in values:  # checkpoints before the guide sets: mesh or nothing
            values["guides"] = ("mesh",) if values.pop("use_guides") else ()
            values.setdefault("texture_base", False)
        values.setdefault("occlusion", False)  # checkpoints before the occlusion head
        values.setdefault("occlusion_guides", False)  # and before it saw the guides
        values.setdefault("occlusion_sees_texture", False)  # or the face's own texture
        values["guides"] = tuple(values.get("guides", ALL_GUIDES))
        unknown = [name for name in values["guides"] if name not in GUIDE_SETS]
        if unknown:
            raise ValueError(f"unknown guides {unknown} (known: {', '.join(GUIDE_SETS)})")
        return SwapConfig(**values)


_R = {name: p.resolution for name, p in PROFILE_SIZES.items()}
PROFILES: dict[str, SwapConfig] = {
    "tiny": SwapConfig(resolution=_R["tiny"], base_channels=8, max_channels=32, levels=3,
                       code_channels=32, texture_size=64, texture_channels=4),
    "cpu": SwapConfig(resolution=_R["cpu"], base_channels=16, max_channels=128, levels=4,
                      code_channels=96, texture_size=256, texture_channels=8),
    "gpu": SwapConfig(resolution=_R["gpu"], base_channels=32, max_channels=384, levels=5,
                      code_channels=256, texture_size=512, texture_channels=16),
    "hq": SwapConfig(resolution=_R["hq"], base_channels=32, max_channels=512, levels=6,
                     code_channels=384, texture_size=1024, texture_channels=16),
}


def profile(name: str, **overrides) -> SwapConfig:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (one of {', '.join(PROFILES)})")
    return SwapConfig.from_dict({**asdict(replace(PROFILES[name], **overrides))})


def _channels(config: SwapConfig, level: int) -> int:
    return min(config.base_channels * 2 ** level, config.max_channels)


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        groups = 8 if cout % 8 == 0 else 1
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
            nn.GroupNorm(groups, cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.GroupNorm(groups, cout),
            nn.SiLU(),
        )


class Encoder(nn.Module):
    def __init__(self, config: SwapConfig):
        super().__init__()
        layers = [ConvBlock(3, _channels(config, 0))]
        for level in range(1, config.levels + 1):
            layers.append(ConvBlock(_channels(config, level - 1), _channels(config, level), 2))
        self.blocks = nn.Sequential(*layers)
        self.code = nn.Conv2d(_channels(config, config.levels), config.code_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.code(self.blocks(image))


class Decoder(nn.Module):
    """Renders one identity from a code, with guides and a neural texture at each scale."""

    def __init__(self, config: SwapConfig):
        super().__init__()
        self.config = config
        self.mesh = "mesh" in config.guides
        extra = config.guide_channels + (config.texture_channels if self.mesh else 0)
        self.blocks = nn.ModuleList()
        cin = config.code_channels
        for level in range(config.levels, -1, -1):
            cout = _channels(config, level)
            self.blocks.append(ConvBlock(cin + extra, cout))
            cin = cout
        self.to_rgb = nn.Conv2d(cin, 3, 1)
        self.to_mask = nn.Conv2d(cin, 1, 1)
        if self.mesh:
            self.texture = nn.Parameter(
                torch.randn(1, config.texture_channels, config.texture_size,
                            config.texture_size) * 0.1)
        # Where the texture render sits in the guides (after the mesh's channels).
        self.render_at = GUIDE_SETS["mesh"] if self.mesh else 0
        self.texture_base = config.texture_base and "texture" in config.guides

    def _conditioning(self, guides: torch.Tensor) -> torch.Tensor:
        if not self.mesh:
            return guides
        uv = guides[:, 3:5]  # 0..1, v up
        grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], dim=-1)
        texture = F.grid_sample(self.texture.expand(len(guides), -1, -1, -1), grid,
                                mode="bilinear", align_corners=False)
        coverage = guides[:, 5:6] < 0.5  # region one-hot: channel 0 is background
        return torch.cat([guides, texture * coverage], dim=1)

    def forward(self, code: torch.Tensor, guides: torch.Tensor | None):
        x = code
        conditioning = self._conditioning(guides) if self.config.use_guides else None
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            if conditioning is not None:
                size = x.shape[-1]
                scaled = conditioning if size == conditioning.shape[-1] else F.interpolate(
                    conditioning, size=(size, size), mode="bilinear", align_corners=False)
                x = torch.cat([x, scaled], dim=1)
            x = block(x)
        colour = self.to_rgb(x)
        if self.texture_base:
            render = guides[:, self.render_at:self.render_at + 3].clamp(0.02, 0.98)
            colour = colour + torch.log(render / (1 - render))
        return torch.sigmoid(colour), self.to_mask(x)


class OcclusionNet(nn.Module):
    """A small U-Net: from a crop, its face coverage and the frame's geometry guides (where
    the face, its eyes and mouth should be: a mouth where the cheek should be is in front
    of the face), the logits of what stands in front of the face (hands, hair, glasses, a
    microphone). Unlike the decoders it has skip connections: an occluder's outline is a
    detail of this very frame. It works at half the crop's resolution (a quarter of the
    cost; the matte is smoothed and warped to the plate anyway) and answers at full
    resolution."""

    def __init__(self, config: SwapConfig):
        super().__init__()
        width = config.occlusion_channels
        self.guide_slices = _guide_slices(config.guides, config.occlusion_guide_sets)
        inputs = 4 + sum(stop - start for start, stop in self.guide_slices)
        self.down = nn.ModuleList([ConvBlock(inputs, width), ConvBlock(width, width * 2, 2),
                                   ConvBlock(width * 2, width * 4, 2)])
        self.up = nn.ModuleList([ConvBlock(width * 6, width * 2), ConvBlock(width * 3, width)])
        self.out = nn.Conv2d(width, 1, 1)
        # Occluders are rare: start from "nothing in front of the face" (5 %), not 50 %.
        nn.init.constant_(self.out.bias, -3.0)

    def forward(self, image: torch.Tensor, coverage: torch.Tensor,
                guides: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, R, R) crop, (B, 1, R, R) face coverage and the model's guides (B, C, R, R)
        -> (B, 1, R, R) logits."""
        skips = []
        size = image.shape[-2:]
        parts = [image, coverage] + [guides[:, start:stop] for start, stop in self.guide_slices]
        x = F.avg_pool2d(torch.cat(parts, dim=1), 2)
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


def _guide_slices(guides: tuple[str, ...], wanted: tuple[str, ...]) -> list[tuple[int, int]]:
    """The channel ranges of the guide sets ``wanted`` in a guides tensor of ``guides``."""
    slices, start = [], 0
    for name in GUIDE_SETS:
        if name in guides:
            if name in wanted:
                slices.append((start, start + GUIDE_SETS[name]))
            start += GUIDE_SETS[name]
    return slices


class SwapModel(nn.Module):
    def __init__(self, config: SwapConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoders = nn.ModuleList(Decoder(config) for _ in range(config.identities))
        self.occlusion = OcclusionNet(config) if config.occlusion else None

    def forward(self, image: torch.Tensor, guides: torch.Tensor | None, identity: int):
        """(B, 3, R, R) crops in 0..1 and (B, GUIDE_CHANNELS, R, R) guides -> RGB in 0..1
        and mask logits of ``identity``'s face."""
        return self.decoders[identity](self.encoder(image), guides)


def guides_tensor(arrays: dict, guides: tuple[str, ...]) -> torch.Tensor:
    """Stored guide arrays (batch-first, channels last: uint8 normals, uint16 uv, uint8
    region, uint8 render, uint8 iris) to the network's (B, C, R, R) float tensor of the
    guide sets ``guides``, in GUIDE_SETS order."""
    region = torch.as_tensor(arrays["region"])
    parts = []
    if "mesh" in guides:
        normals = torch.as_tensor(arrays["normals"]).float() / 127.5 - 1
        normals = normals * (region > 0).unsqueeze(-1)
        uv = torch.as_tensor(arrays["uv"]).float() / 65535
        parts += [normals, uv, F.one_hot(region.long(), NUM_REGIONS).float()]
    if "texture" in guides:
        parts.append(torch.as_tensor(arrays["render"]).float() / 255)
    if "eyes" in guides:
        parts.append(torch.as_tensor(arrays["iris"]).float().unsqueeze(-1) / 255)
    if not parts:
        return torch.zeros(len(region), 0, *region.shape[1:])
    return torch.cat(parts, dim=-1).permute(0, 3, 1, 2).contiguous()
