"""A plain PyTorch GLOW, written the way public PyTorch implementations write it, as the same-run baseline of bench.py.

The architecture is that of `flownb.flows.models.Glow` (L levels of squeeze, K steps of ActNorm → LU 1×1 convolution →
affine coupling with a conv3×3 → ReLU → conv1×1 → ReLU → zero-initialised conv3×3 network, split with a learned
prior, learned top prior): the same convolutions on the same shapes, except that the coupling convolutions carry
a bias instead of ActNorm and the top prior is a zero-initialised convolution of zeros, as public implementations
write it (1.66 M parameters against the library's 1.62 M at width 128). What it does not have is what the library
adds for speed: ActNorm folded into the coupling convolutions, the batch split over the CPU cores, fused Adam.
Timing it in the same process as the library measures the library's gain without the machine's drift, and
relates today's machine to the one the reference figures were measured on.
"""
import math
import torch
from torch import nn
import torch.nn.functional as F


class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, 1, 1)); self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.ready = False

    def forward(self, x):
        if not self.ready:
            with torch.no_grad():
                self.loc.copy_(-x.mean((0, 2, 3), keepdim=True))
                self.logs.copy_(-torch.log(x.std((0, 2, 3), keepdim=True) + 1e-6))
            self.ready = True
        return (x + self.loc) * torch.exp(self.logs), x.shape[2] * x.shape[3] * self.logs.sum()


class InvConvLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        P, L, U = torch.linalg.lu(torch.linalg.qr(torch.randn(c, c))[0])
        s = U.diagonal()
        self.register_buffer("P", P); self.register_buffer("sign", torch.sign(s))
        self.register_buffer("mask", torch.triu(torch.ones(c, c), 1)); self.register_buffer("eye", torch.eye(c))
        self.L = nn.Parameter(L); self.U = nn.Parameter(torch.triu(U, 1)); self.log_s = nn.Parameter(s.abs().log())

    def forward(self, x):
        w = self.P @ (self.L * self.mask.T + self.eye) @ (self.U * self.mask + torch.diag(self.sign * torch.exp(self.log_s)))
        return F.conv2d(x, w[:, :, None, None]), x.shape[2] * x.shape[3] * self.log_s.sum()


class ZeroConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3); self.conv.weight.data.zero_(); self.conv.bias.data.zero_()
        self.scale = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x):
        return self.conv(F.pad(x, [1, 1, 1, 1], value=1)) * torch.exp(self.scale * 3)


class Coupling(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c // 2, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True), ZeroConv(hidden, c))

    def forward(self, x):
        a, b = x.chunk(2, 1)
        log_s, t = self.net(a).chunk(2, 1)
        s = torch.sigmoid(log_s + 2)
        return torch.cat([a, (b + t) * s], 1), torch.log(s).flatten(1).sum(1)


def gaussian_log_p(x, mean, log_sd):
    return (-0.5 * math.log(2 * math.pi) - log_sd - 0.5 * (x - mean) ** 2 / torch.exp(2 * log_sd)).flatten(1).sum(1)


class Block(nn.Module):
    def __init__(self, c, depth, hidden, split):
        super().__init__()
        c4 = 4 * c
        self.flows = nn.ModuleList(m for _ in range(depth) for m in (ActNorm(c4), InvConvLU(c4), Coupling(c4, hidden)))
        self.split = split
        self.prior = ZeroConv(c4 // 2, c4) if split else ZeroConv(c4, 2 * c4)

    def forward(self, x):
        B, C, H, W = x.shape
        x = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, H // 2, W // 2)
        logdet = 0
        for f in self.flows:
            x, ld = f(x); logdet = logdet + ld
        if self.split:
            x, z = x.chunk(2, 1)
            mean, log_sd = self.prior(x).chunk(2, 1)
            return x, logdet, gaussian_log_p(z, mean, log_sd)
        mean, log_sd = self.prior(torch.zeros_like(x)).chunk(2, 1)
        return x, logdet, gaussian_log_p(x, mean, log_sd)


class PlainGlow(nn.Module):
    def __init__(self, in_channels=3, levels=3, depth=8, hidden=128):
        super().__init__()
        chans = [in_channels * 2 ** i for i in range(levels)]   # 3, 6, 12: half of each level's channels go on
        self.blocks = nn.ModuleList(Block(c, depth, hidden, split=i < levels - 1) for i, c in enumerate(chans))

    def log_prob(self, x):
        h, total = x - 0.5, 0
        for b in self.blocks:
            h, logdet, log_p = b(h); total = total + logdet + log_p
        return total


def plain_bits_per_dim(model, x, generator):
    "Bits/dim of 8-bit images x in [0,1] with uniform dequantization noise."
    D = x[0].numel()
    y = (x * 255 + torch.rand(x.shape, generator=generator)) / 256
    return (D * math.log(256) - model.log_prob(y)) / (D * math.log(2))


def plain_pgd_step(model, x, x_adv, eps, alpha, generator):
    "One ℓ∞ PGD step on the bits/dim (parameters frozen by the caller)."
    x_adv = x_adv.detach().requires_grad_(True)
    g, = torch.autograd.grad(plain_bits_per_dim(model, x_adv, generator).sum(), x_adv)
    return torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
