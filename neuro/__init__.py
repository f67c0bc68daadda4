"""neuro: spiking and neuromorphic computing in PyTorch."""
__version__ = "0.1.0"
