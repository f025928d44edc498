"""Post-install validation of an Ascend host, fleet or image: the host matches its
matrix row, devices are visible and healthy, a model trains, collectives connect.

``vendor_tools`` reads the vendor's command output, one module per tool (npu-smi, hccn_tool, ...).
"""
