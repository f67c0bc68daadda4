"""Reference networks: recurrent populations (W2) and feed-forward containers."""
from .recurrent import (ENGINES, ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork, RunResult,
                        register_engine, w2_network)
from .sequential import Flatten, SpikingSequential

__all__ = ["ENGINES", "ConstantDrive", "GivenDrive", "PoissonDrive", "RecurrentNetwork", "RunResult",
           "register_engine", "w2_network", "Flatten", "SpikingSequential"]
