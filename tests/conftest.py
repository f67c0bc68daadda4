import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _threads_and_seed():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
