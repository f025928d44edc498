"""A simulated Ascend (Atlas) host for tests: the NPU hardware as a state file,
the vendor's installers, npu-smi and hccn_tool, and nodes as podman containers.

Nothing in the product imports this package; the product talks to the
interfaces (files, commands, libraries) that this package provides.
"""
