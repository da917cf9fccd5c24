"""Attacks on a flow's likelihood: PGD in pixel units, their evaluation, their audit, and OOD detection under attack."""
