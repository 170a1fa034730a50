"""Diagnostics: how much to trust a pick (stability over seeds and samples, linearity around the weights)."""
