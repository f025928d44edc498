"""Run `npu-smi info` on the node and fail it when npu-smi cannot reach the
devices, lists no NPU chip, or names one in a failing health state: one task, where
a command task and an assert on its output cost the controller two workers per
host. The output is read in this worker with the product's parser
(validation.node.vendor_tools.npu_smi), as validation reads it."""
from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

COMMAND = "npu-smi info"
SHOWN = 2000  # of npu-smi's output, when it failed


def verdict(rc: int, output: str, failing: list) -> tuple[bool, str]:
    """(failed, message) for npu-smi info's exit code and output."""
    from validation.node.vendor_tools import common, npu_smi

    if rc != 0:
        return True, f"npu-smi info failed (rc {rc}): {output.strip()[-SHOWN:]}"
    try:
        chips = npu_smi.parse_npu_smi_info(output).chips
    except common.VendorOutputError as e:   # an error report, or no device table with chips
        return True, f"npu-smi info: {e}"
    bad = [c for c in chips if c.health in failing]
    if bad:
        return True, ("unhealthy NPUs after the install: "
                      + "; ".join(f"NPU {c.npu} chip {c.chip} is {c.health}" for c in bad)
                      + "; see `npu-smi info -t health -i <npu>` for the error codes")
    return False, f"{len(chips)} NPU chips healthy"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("failing",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        failing = self._task.args.get("failing")
        if not isinstance(failing, list) or not all(isinstance(s, str) for s in failing):
            raise AnsibleActionFail(f"npuenv_npu_health: failing {failing!r} is not a list of health states")
        answer = self._low_level_execute_command(COMMAND, sudoable=True)
        # With a terminal (sudo), what npu-smi says on stderr comes back on stdout.
        failed, msg = verdict(answer["rc"], answer.get("stdout", "") + answer.get("stderr", ""), failing)
        result.update(changed=False, failed=failed, msg=msg)
        return result
