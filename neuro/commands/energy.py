"""``neuro energy``: count the operations of a saved spiking model on an input and price them.

    neuro energy MODEL_DIR --input spikes.npy --targets 45nm,loihi1,spinnaker2,gpu [--json] [--plot energy.png]
    neuro energy W2_DIR --steps 1000 --targets 45nm,loihi1
    neuro energy CONVERTED_LM_DIR --input text.txt [--ann FLOAT_LM_DIR] [--max-chars 256]

MODEL_DIR holds a SpikingSequential (fed ``--input``, a .npy or .safetensors tensor [T, B, ...], run
in step mode 'm' under an :class:`~neuro.energy.OpCounter`; its ANN twin with ReLU is counted on the
time-mean input for ``ann_energy_j``) or a RecurrentNetwork (run for ``--steps``, counted from its
spikes), or a language model (a converted SpikingTransformer or SpikingRWKV, a float TransformerLM
or RWKVLM, or a SpikeGPT; fed the characters of a .txt ``--input`` and reported per token, with the
float original counted for ``ann_energy_j``; see :mod:`neuro.energy.language` for how each family
reads a text: Transformers in windows of their context, RWKV streamed with its state carried).
Targets: names of built-in energy models or paths of .json/.toml model files.
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = "count synaptic ops, neuron updates and memory traffic of a saved model and price them on hardware models"


def add_arguments(p):
    p.add_argument("model", type=Path, help="saved model folder (SpikingSequential, RecurrentNetwork, or a converted "
                                            "or float language model: Transformer, RWKV, SpikeGPT)")
    p.add_argument("--input", type=Path, default=None,
                   help="input tensor [T, B, ...] (.npy or .safetensors) for a feed-forward model")
    p.add_argument("--steps", type=int, default=1000, help="steps to run a RecurrentNetwork (default 1000)")
    p.add_argument("--targets", default="45nm,loihi1,spinnaker2,gpu",
                   help="comma-separated energy models: built-in names or .json/.toml files "
                        "(default 45nm,loihi1,spinnaker2,gpu)")
    p.add_argument("--engine", default="auto", help="RecurrentNetwork engine (default auto)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write the energy plots to this image file")
    p.add_argument("--ann", type=Path, default=None,
                   help="language models: the float original's model folder, counted for ann_energy_j "
                        "(default: a float model of the same architecture)")
    p.add_argument("--max-chars", type=int, default=256,
                   help="language models: characters of --input to run (default 256)")


def load_input(path: Path):
    """A float tensor from a .npy file or the single tensor of a .safetensors file."""
    import numpy as np
    import torch

    from ..core.errors import FormatError

    if not path.is_file():
        raise FormatError(str(path), None, None, "no such input file")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise FormatError(str(path), None, None, f"cannot be read as .npy: {e}") from e
        x = torch.from_numpy(np.ascontiguousarray(arr))
    elif path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
                if len(keys) != 1:
                    raise FormatError(str(path), None, None, f"must hold exactly one tensor, holds {keys}")
                x = f.get_tensor(keys[0])
        except FormatError:
            raise
        except Exception as e:
            raise FormatError(str(path), None, None, f"cannot be read as safetensors: {e}") from e
    else:
        raise FormatError(str(path), None, None, "must be a .npy or .safetensors file")
    if x.dtype == torch.bool or not x.is_floating_point():
        x = x.to(torch.float32)
    return x


def _first_width(model):
    """(kind, expected per-step feature shape) of the first synapse, for the input check."""
    from ..synapses.conv import Conv2d
    from ..synapses.linear import Linear
    from ..synapses.sparse import SparseLinear

    for m in model.modules():
        if isinstance(m, Linear):
            return m.in_features, m.weight.dtype
        if isinstance(m, SparseLinear):
            return m.n_in, m.values.dtype
        if isinstance(m, Conv2d):
            return None, m.weight.dtype
    return None, None


def report_for(model, x=None, steps: int = 1000, targets="45nm", engine: str = "auto"):
    """The EnergyReport of ``model`` on input ``x`` (SpikingSequential) or for ``steps`` (RecurrentNetwork)."""
    import torch

    from ..core.errors import ParameterError, ShapeError
    from ..energy import EnergyReport, OpCounter, ann_twin, count_recurrent, get_models
    from ..models import RecurrentNetwork, SpikingSequential

    models = get_models(targets)
    if isinstance(model, RecurrentNetwork):
        res = model.run(steps, engine=engine)
        return EnergyReport(count_recurrent(model, res), models), None
    if not isinstance(model, SpikingSequential):
        from ..core.errors import UnsupportedLayerError

        raise UnsupportedLayerError([("model", type(model).__name__)], context="neuro energy (needs a "
                                    "SpikingSequential or a RecurrentNetwork)")
    if x is None:
        raise ParameterError("neuro energy", "input", None, "a .npy or .safetensors tensor [T, B, ...] for a SpikingSequential")
    counter = OpCounter(model, multistep=True)  # unsupported layers fail here, before anything runs
    width, dtype = _first_width(model)
    if x.dim() < 3 or (width is not None and x.shape[-1] != width):
        want = f"[T, B, {width}]" if width is not None else "[T, B, ...]"
        raise ShapeError("neuro energy", f"input has shape {tuple(x.shape)}, the model expects {want}")
    x = x.to(dtype or torch.float32)
    model.set_step_mode("m")
    model.reset()
    with torch.no_grad(), counter:
        out = model(x)
    twin = ann_twin(model)  # the ANN original: same weights, ReLU, fed the input rates
    with torch.no_grad(), OpCounter(twin, multistep=False) as ac:
        twin(x.mean(0))
    ann_counts = ac.counts("ANN twin")
    return EnergyReport(counter.counts(), models, ann=ann_counts), out


def _is_language_model(model) -> bool:
    from ..energy.language import language_kind

    return language_kind(model) is not None


def run(args) -> int:
    from ..io import load_model

    model = load_model(args.model)
    if _is_language_model(model):
        from ..core.errors import ParameterError
        from ..data.text import load_text

        if args.input is None or args.input.suffix != ".txt":
            raise ParameterError("neuro energy", "--input", args.input and str(args.input),
                                 "a UTF-8 .txt file for a language model")
        ann = load_model(args.ann) if args.ann is not None else None
        from ..energy.language import language_model_report

        report = language_model_report(model, load_text(args.input), args.targets, ann, args.max_chars)
    else:
        x = load_input(args.input) if args.input is not None else None
        report, _ = report_for(model, x, args.steps, args.targets, args.engine)
    if args.plot is not None:
        from ..energy.plots import energy_figure
        from ..viz import save_figure

        save_figure(energy_figure(report), args.plot)
    if args.json:
        d = report.to_dict()
        if args.plot is not None:
            d["plot"] = str(args.plot)
        print(json.dumps(d))
    else:
        print(report.table())
        if args.plot is not None:
            print(f"plots: {args.plot}")
    return 0
