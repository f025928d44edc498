"""Parsers for the Ascend vendor tools' text output, one module per tool:

- ``common``: the errors every parser raises (VendorOutputError, VendorToolFailure), ToolError,
  Unread and the small helpers they share
- ``npu_smi``: ``npu-smi`` (the info table, its key/value outputs, mapping, topology)
- ``kernel_log``: the Ascend driver's lines of ``dmesg``
- ``hccn_tool``: ``hccn_tool`` and ``/etc/hccn.conf``
- ``hccl_test``: the ``hccl_test`` binaries' result table
"""
