"""anyrestore: blind all-in-one image restoration (RAM, AdaptIR, ABAIR) on shared parts."""

__version__ = "0.1.0"
