#!/usr/bin/python
"""Persist kernel settings in a file of /etc/sysctl.d and set the live values
that differ: one module call for what were four tasks (write the file, read the
live values, preview, apply), each of which cost the controller a worker
process per host. The live values are read on every run: a restart or another
tool may have changed them since the file was written."""
from __future__ import annotations

DOCUMENTATION = r"""
module: npuenv_sysctl
short_description: Persist sysctl settings in a sysctl.d file and set the live values that differ
description:
  - Writes O(path) (a comment line, then one C(key = value) line per setting, in order) when its content or mode
    differs, then reads each setting's live value with C(sysctl -n) and sets those that differ with one
    C(sysctl -w); whitespace counts as one blank, as sysctl reads it. A key the kernel lacks reads as differing,
    and its write fails the task with sysctl's own message.
  - Supports check mode (nothing written or set; the result says what would be) and diff mode (the file).
options:
  settings: {description: "sysctl key -> value (keys like net.core.somaxconn).", type: dict, required: true}
  path: {description: The file that persists them (absolute)., type: path, required: true}
author: npuenv
"""

RETURN = r"""
set:
  description: key -> value of the live settings set (or that would be, in check mode).
  type: dict
  returned: always
file_changed:
  description: Whether the file was written (or would be).
  type: bool
  returned: always
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npuenv.ascend.plugins.module_utils.npuenv_atomic import compare, write

HEADER = "# Ansible managed (npuenv.ascend.npuenv_sysctl): a deploy overwrites changes made here\n"
MODE = 0o644
# What sysctl takes as a key (dots or slashes between its parts); no blank or '=' that would split `key=value`.
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")


def content(settings):
    """The file's text for ``settings``."""
    return HEADER + "".join(f"{key} = {value}\n" for key, value in settings.items())


def same(live, wanted):
    """Whether a live value is the wanted one, whitespace counting as one blank (as sysctl reads it)."""
    return live is not None and " ".join(live.split()) == " ".join(str(wanted).split())


def drift(settings, live):
    """{key: wanted value as text} of the settings whose live value (``live``: key -> text, None when
    it cannot be read) differs."""
    return {key: str(value) for key, value in settings.items() if not same(live.get(key), value)}


def main():
    module = AnsibleModule(argument_spec={"settings": {"type": "dict", "required": True},
                                          "path": {"type": "path", "required": True}},
                           supports_check_mode=True)
    settings, path = module.params["settings"], module.params["path"]
    bad = [k for k in settings if not _KEY.fullmatch(str(k))]
    if bad or not os.path.isabs(path):
        module.fail_json(msg=f"npuenv_sysctl: {bad[0]!r} is not a sysctl key" if bad else
                         f"npuenv_sysctl: {path!r} is not an absolute path")
    text = content(settings)
    before, file_changed = compare(path, text, MODE)
    if file_changed and not module.check_mode:
        try:
            write(path, text, MODE)
        except OSError as e:
            module.fail_json(msg=f"npuenv_sysctl: cannot write {path}: {e}")
    live = {}
    for key in settings:   # one call per key: sysctl skips a key it lacks, and one answer per line would shift
        rc, out, _ = module.run_command(["sysctl", "-n", "--", key])
        live[key] = out if rc == 0 else None
    differ = drift(settings, live)
    if differ and not module.check_mode:
        rc, out, err = module.run_command(["sysctl", "-w", "--"] + [f"{k}={v}" for k, v in differ.items()])
        if rc != 0:
            module.fail_json(msg=f"npuenv_sysctl: sysctl -w failed (exit {rc}): {(err or out).strip()}")
    diff = {"before_header": path, "after_header": path, "before": before or "", "after": text} if file_changed else {}
    module.exit_json(changed=file_changed or bool(differ), file_changed=file_changed, set=differ, diff=diff)


if __name__ == "__main__":
    main()
