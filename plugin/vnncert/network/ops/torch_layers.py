"""Kept for `engines/relaxed.py`, which imports the Conv step from here: the torch Steps now live
with their ops (`ops/<op>.py`, shared base in `ops/torch_base.py`). Remove once nothing imports it."""
from .conv import steps as _conv_steps

Conv = _conv_steps.Conv
