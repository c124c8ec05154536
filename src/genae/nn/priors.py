"""Priors over latent codes for adversarial autoencoders (Makhzani et al. 2015, Fig. 2-4).

An adversarial autoencoder never evaluates its prior's density: it only needs samples. With a
label-incorporated prior it also needs, for each label, samples from that label's *region* of
the prior, and for metrics the region a code falls in. Every prior here offers:

* `sample(n, generator)`: n codes from the whole prior;
* `sample_region(labels, generator)`: one code per label, from that label's region;
* `region_of(z)`: the nearest region of each code (for `prior_region_agreement`);
* `log_prob(z)`: the log-density, where the prior has one (for density plots).

Priors register by name in `PRIORS`; `make_prior(name, dim, regions)` builds one.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from genae.config import require
from genae.errors import ConfigError
from genae.nn.divergences import LOG_2PI

PRIORS: dict[str, type[Prior]] = {}


def register_prior(cls: type[Prior]) -> type[Prior]:
    PRIORS[cls.name] = cls
    return cls


def make_prior(name: str, dim: int, regions: int = 10) -> Prior:
    """The prior `name` over `dim`-dimensional codes, split into `regions` label regions."""
    require(name in PRIORS, "prior", f"one of {sorted(PRIORS)}", name)
    if regions < 1:
        raise ConfigError(f"prior_regions: expected an integer >= 1, got {regions}")
    return PRIORS[name](dim, regions)


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, normal: bool, device=None
) -> torch.Tensor:
    """Noise drawn on the generator's own device when a generator is given (so seeded samples
    are the same wherever the model runs), else on `device` (no copy per training step)."""
    where = generator.device if generator is not None else (device or torch.device("cpu"))
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, device=where)


class Prior:
    """Base class: a distribution over R^dim divided into `regions` label regions."""

    name: ClassVar[str]

    def __init__(self, dim: int, regions: int) -> None:
        self.dim = dim
        self.regions = regions

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """n codes (n, dim) from the whole prior, on `device` (default CPU)."""
        labels = (_rand((n,), generator, False, device) * self.regions).long()
        labels = labels.clamp_(max=self.regions - 1).to(device or "cpu")
        return self.sample_region(labels, generator)

    def sample_region(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One code per label (int64, (n,)), drawn from that label's region, on the labels'
        device."""
        raise NotImplementedError

    def region_of(self, z: torch.Tensor) -> torch.Tensor:
        """The index of the region nearest to each code (n,)."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row; priors without a closed-form density raise NotImplementedError."""
        raise NotImplementedError

    @property
    def has_density(self) -> bool:
        return type(self).log_prob is not Prior.log_prob

    def extent(self) -> float:
        """A half-width that holds nearly all of the prior's mass (for plot limits)."""
        return 3.0


def _sector_of(z: torch.Tensor, regions: int) -> torch.Tensor:
    """Which of `regions` equal angular sectors of the (z0, z1) plane each code lies in."""
    angle = torch.atan2(z[:, 1], z[:, 0]) % (2 * math.pi)
    return (angle / (2 * math.pi) * regions).long().clamp_(max=regions - 1)


@register_prior
class NormalPrior(Prior):
    """N(0, I). Label regions (dim >= 2) are equal angular sectors of the first two coordinates,
    so each region still carries its share of the Gaussian (a pie slice); in 1-D, quantile bins."""

    name = "normal"

    def sample(self, n, generator=None, device=None):
        return _rand((n, self.dim), generator, True, device).to(device or "cpu")

    def sample_region(self, labels, generator=None):
        dev = labels.device
        z = _rand((len(labels), self.dim), generator, True, dev).to(dev)
        u = _rand((len(labels),), generator, False, dev).to(dev)
        if self.dim == 1:
            # Inverse CDF of a uniform draw inside the label's equal-mass bin.
            u = ((labels.float() + u) / self.regions).clamp(1e-6, 1 - 1e-6)
            return (math.sqrt(2) * torch.erfinv(2 * u - 1)).unsqueeze(1)
        # Rotate the first two coordinates into the label's sector: the radius keeps its
        # chi(2) law and the angle becomes uniform within the sector.
        radius = z[:, :2].norm(dim=1)
        angle = (labels.float() + u) * (2 * math.pi / self.regions)
        z[:, 0], z[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
        return z

    def region_of(self, z):
        if self.dim == 1:
            u = 0.5 * (1 + torch.erf(z[:, 0] / math.sqrt(2)))
            return (u * self.regions).long().clamp_(0, self.regions - 1)
        return _sector_of(z, self.regions)

    def log_prob(self, z):
        return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


@register_prior
class UniformPrior(Prior):
    """Uniform on the box [-1, 1]^dim; label regions are equal slabs along the first axis."""

    name = "uniform"

    def sample(self, n, generator=None, device=None):
        return (_rand((n, self.dim), generator, False, device) * 2 - 1).to(device or "cpu")

    def sample_region(self, labels, generator=None):
        dev = labels.device
        z = _rand((len(labels), self.dim), generator, False, dev).to(dev) * 2 - 1
        u = _rand((len(labels),), generator, False, dev).to(dev)
        z[:, 0] = -1 + 2 * (labels.float() + u) / self.regions
        return z

    def region_of(self, z):
        return ((z[:, 0] + 1) / 2 * self.regions).floor().long().clamp_(0, self.regions - 1)

    def log_prob(self, z):
        inside = (z.abs() <= 1).all(-1)
        return torch.where(inside, -self.dim * math.log(2.0), -math.inf)

    def extent(self) -> float:
        return 1.2


@register_prior
class SwissRollPrior(Prior):
    """A 2-D swiss roll: the position t in [0, 1] along the roll sets angle and radius; label k
    owns the k-th of `regions` equal segments of t. Codes get a little Gaussian thickness."""

    name = "swiss-roll"
    turns = 1.75  # how far the roll winds (in full turns)
    thickness = 0.08

    def __init__(self, dim: int, regions: int) -> None:
        if dim != 2:
            raise ConfigError(f"latent_dim: the swiss-roll prior is 2-D, got latent_dim {dim}")
        super().__init__(dim, regions)
        # A dense polyline along the roll for the nearest-segment lookup in `region_of`.
        self._curve_t = torch.linspace(0, 1, 2000)
        self._curve = self._at(self._curve_t)

    def _at(self, t: torch.Tensor) -> torch.Tensor:
        # sqrt(t) spacing makes the density along the arc roughly even (arc length ~ r dr).
        r = torch.sqrt(t) * 2.5 + 0.25
        angle = 2 * math.pi * self.turns * torch.sqrt(t)
        return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)

    def sample_region(self, labels, generator=None):
        dev = labels.device
        u = _rand((len(labels),), generator, False, dev).to(dev)
        noise = _rand((len(labels), 2), generator, True, dev).to(dev)
        return self._at((labels.float() + u) / self.regions) + self.thickness * noise

    def region_of(self, z):
        curve = self._curve.to(z.device)
        nearest = torch.cdist(z[:, :2].float(), curve).argmin(dim=1)
        t = self._curve_t.to(z.device)[nearest]
        return (t * self.regions).long().clamp_(max=self.regions - 1)

    def extent(self) -> float:
        return 3.2


@register_prior
class MixturePrior(Prior):
    """An equal-weight mixture of `regions` Gaussians, one per label.

    In 2-D the components sit on a circle, each stretched along its radius (the paper's
    petals); with dim >= regions each sits on its own axis (the simplex vertices scaled); else
    on the positive and negative axes (up to 2 * dim components).
    """

    name = "mixture"
    radius = 4.0
    radial_std = 0.8
    tangential_std = 0.25
    axis_std = 0.5

    def __init__(self, dim: int, regions: int) -> None:
        super().__init__(dim, regions)
        k = torch.arange(regions, dtype=torch.float32)
        if dim == 2:
            angle = 2 * math.pi * k / regions
            radial = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
            tangential = torch.stack([-torch.sin(angle), torch.cos(angle)], dim=1)
            self.means = self.radius * radial
            # Columns of each component's scale matrix: z = mean + scale @ eps.
            self.scales = torch.stack(
                [self.radial_std * radial, self.tangential_std * tangential], dim=2
            )
        elif dim >= regions or regions <= 2 * dim:
            axis = torch.arange(regions) % dim
            sign = 1.0 - 2.0 * (torch.arange(regions) // dim).float()
            self.means = torch.zeros(regions, dim)
            self.means[torch.arange(regions), axis] = self.radius * sign
            self.scales = self.axis_std * torch.eye(dim).expand(regions, dim, dim).clone()
        else:
            raise ConfigError(
                f"prior_regions: a mixture of {regions} components needs latent_dim 2 or at "
                f"least {math.ceil(regions / 2)}, got latent_dim {dim}"
            )
        self._inv_scales = torch.linalg.inv(self.scales)
        self._log_det = torch.linalg.slogdet(self.scales).logabsdet

    def sample_region(self, labels, generator=None):
        eps = _rand((len(labels), self.dim), generator, True, labels.device).to(labels.device)
        means, scales = self.means.to(eps.device), self.scales.to(eps.device)
        return means[labels] + torch.einsum("nij,nj->ni", scales[labels], eps)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mean_k, S_k S_k^T) for every component k: (n, regions)."""
        means, inv = self.means.to(z.device), self._inv_scales.to(z.device)
        eps = torch.einsum("kij,nkj->nki", inv, z.unsqueeze(1) - means)
        return -0.5 * (self.dim * LOG_2PI + eps.pow(2).sum(-1)) - self._log_det.to(z.device)

    def region_of(self, z):
        return self.component_log_prob(z).argmax(dim=1)

    def log_prob(self, z):
        return torch.logsumexp(self.component_log_prob(z), dim=1) - math.log(self.regions)

    def extent(self) -> float:
        return self.radius + 3 * max(self.radial_std, self.axis_std)
