"""Reference networks: recurrent populations (W2) and feed-forward containers."""
from .recurrent import (ENGINES, ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork, RunResult,
                        register_engine, w2_network)
from .sequential import Flatten, SpikingSequential

__all__ = ["ENGINES", "ConstantDrive", "GivenDrive", "PoissonDrive", "RecurrentNetwork", "RunResult",
           "register_engine", "w2_network", "Flatten", "SpikingSequential"]
from .transformer import TransformerConfig, TransformerLM, config_for, evaluate_lm, generate  # noqa: E402
__all__ += ["TransformerConfig", "TransformerLM", "config_for", "evaluate_lm", "generate"]
from .rwkv import RWKVConfig, RWKVLM  # noqa: E402
__all__ += ["RWKVConfig", "RWKVLM"]
from .spikegpt import SpikeGPT, SpikeGPTConfig  # noqa: E402
__all__ += ["SpikeGPT", "SpikeGPTConfig"]
