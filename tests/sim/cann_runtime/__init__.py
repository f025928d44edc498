"""Simulated CANN runtime: the shared libraries torch_npu links against (see build.py)."""
