"""Limits shared by the norm package's entry point and its Triton kernels."""

# the Triton kernels hold a whole row in registers: wider rows go to the reference path under "auto"
MAX_TRITON_DIM = 16384
