"""Build and run compiled networks in Lava (lava-nc 0.10, ``Loihi2SimCfg(select_tag='fixed_pt')``).

Run by :mod:`neuro.hardware_targets.loihi.lava` as a script inside the Lava virtual environment
(Python 3.10, numpy < 2); it imports neither neuro nor torch::

    python lava_worker.py IN.npz OUT.npz

``IN.npz`` holds ``spec`` (JSON text) and the arrays it names. The spec lists independent networks
(sources, LIF populations, connections) and the number of steps; all of them are built into one
process graph (joined by all-zero ``Dense`` links, which add nothing) so that Lava starts once.
Sources are ``RingBuffer`` processes replaying spikes [n, T]; each population's ``v`` and ``s_out``
are recorded by two ``Monitor`` processes (one probe each). ``OUT.npz`` gets ``<population key>.s`` and ``.v`` [T, n] and
``seconds`` (wall time of the Lava run).
"""
import json
import sys
import time

import numpy as np


def main(src: str, dst: str) -> None:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import csr_matrix

    arrays = np.load(src)
    spec = json.loads(str(arrays["spec"]))
    steps = int(spec["steps"])
    procs, monitors, firsts = {}, [], []
    for net in spec["networks"]:
        for s in net["sources"]:
            procs[s["key"]] = RingBuffer(data=arrays[s["key"]].astype(np.int32))
        for p in net["populations"]:
            procs[p["key"]] = LIF(shape=(p["n"],), du=p["du"], dv=p["dv"], vth=p["vth"],
                                  bias_mant=arrays[p["bias_mant"]].astype(np.int32),
                                  bias_exp=arrays[p["bias_exp"]].astype(np.int32), name=p["key"])
            mv, ms = Monitor(), Monitor()  # one probe per Monitor
            mv.probe(procs[p["key"]].v, steps)
            ms.probe(procs[p["key"]].s_out, steps)
            monitors.append((p["key"], mv, ms))
        firsts.append(procs[net["populations"][0]["key"]])
        for c in net["connections"]:
            w = arrays[c["weights"]].astype(np.int32)
            kw = dict(weight_exp=int(c["weight_exp"]), num_weight_bits=int(c["num_weight_bits"]))
            if c["delays"] is not None:
                d = arrays[c["delays"]].astype(int)  # DelayDense checks dtype == int
                conn = (DelaySparse(weights=csr_matrix(w), delays=csr_matrix(np.where(w != 0, d, 0)), **kw)
                        if c["sparse"] else DelayDense(weights=w, delays=d, **kw))
            else:
                conn = Sparse(weights=csr_matrix(w), **kw) if c["sparse"] else Dense(weights=w, **kw)
            procs[c["pre"]].s_out.connect(conn.s_in)
            conn.a_out.connect(procs[c["post"]].a_in)
    for a, b in zip(firsts, firsts[1:]):  # join the networks into one process graph; zero weights add nothing
        link = Dense(weights=np.zeros((b.a_in.shape[0], a.s_out.shape[0]), dtype=np.int32))
        a.s_out.connect(link.s_in)
        link.a_out.connect(b.a_in)
    t0 = time.perf_counter()
    firsts[0].run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    seconds = time.perf_counter() - t0
    out = {"seconds": np.array(seconds)}
    for key, mv, ms in monitors:
        out[f"{key}.v"] = np.asarray(mv.get_data()[key]["v"]).astype(np.int64)
        out[f"{key}.s"] = np.asarray(ms.get_data()[key]["s_out"]).astype(np.int8)
    firsts[0].stop()
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
