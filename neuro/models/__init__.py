"""Reference networks."""
from .recurrent import (ENGINES, ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork, RunResult,
                        register_engine, w2_network)

__all__ = ["ENGINES", "ConstantDrive", "GivenDrive", "PoissonDrive", "RecurrentNetwork", "RunResult",
           "register_engine", "w2_network"]
