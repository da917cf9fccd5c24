"""Normalizing flows: layers, priors, couplings, GLOW and RealNVP, their likelihood in bits/dim, architectures by name."""
