"""Tests run on tiny tensors: one thread avoids thread contention that makes them ~30x slower."""

import torch

torch.set_num_threads(1)
