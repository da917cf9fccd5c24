"""Normalizing flows: layers, priors, couplings, GLOW and RealNVP, bits/dim, architectures by name, NLL terms, speed."""
