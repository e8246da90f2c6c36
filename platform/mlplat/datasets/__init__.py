"""Datasets generated at run time (nothing is downloaded): `generated:NAME` sources."""
