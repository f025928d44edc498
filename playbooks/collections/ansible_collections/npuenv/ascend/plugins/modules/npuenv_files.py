#!/usr/bin/python
"""Write a few small files on a node, making their folders, or remove them: one
module call for what would be a folder task and a copy task per file (each
task costs the controller a worker process per host). npuenv's deploy records,
its in-progress marker and the wheelhouse manifest are written with it."""
from __future__ import annotations

DOCUMENTATION = r"""
module: npuenv_files
short_description: Write small text files (their folders made) or remove them, changing only what differs
description:
  - Each file is written whole (through a temporary file in its folder and a rename, so that a reader never sees
    half of it) when its content or mode differs, or removed with C(state=absent); missing folders are made with
    mode 0755.
  - Supports check mode and diff mode.
options:
  files:
    description:
      - "Each: C(path) (absolute, no C(..)), and C(content) (text; C(mode) default 0644), or C(state: absent)."
    type: list
    elements: dict
    required: true
author: npuenv
"""

RETURN = r"""
changed_paths:
  description: The files written or removed (or that would be, in check mode).
  type: list
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npuenv.ascend.plugins.module_utils.npuenv_atomic import compare, read, write


class Refused(ValueError):
    """An entry that names no absolute path or gives neither content nor state: absent."""


def apply(files, check_mode):
    """Write or remove each file where it differs: (the paths changed, their diffs); nothing is
    written in check mode."""
    changed, diffs = [], []
    for entry in files:
        path = entry.get("path")
        if not isinstance(path, str) or not os.path.isabs(path) or ".." in path.split("/"):
            raise Refused(f"npuenv_files: {path!r} is not an absolute path without '..'")
        if entry.get("state") == "absent":
            if os.path.lexists(path):
                changed.append(path)
                diffs.append({"before_header": path, "after_header": path, "before": read(path) or "", "after": ""})
                if not check_mode:
                    os.unlink(path)
            continue
        content = entry.get("content")
        if not isinstance(content, str):
            raise Refused(f"npuenv_files: {path}: give its content (text) or state: absent")
        mode = int(str(entry.get("mode", "0644")), 8)
        before, differs = compare(path, content, mode)
        if not differs:
            continue
        changed.append(path)
        diffs.append({"before_header": path, "after_header": path, "before": before or "", "after": content})
        if not check_mode:
            write(path, content, mode)
    return changed, diffs


def main():
    module = AnsibleModule(argument_spec={"files": {"type": "list", "elements": "dict", "required": True}},
                           supports_check_mode=True)
    try:
        changed, diffs = apply(module.params["files"], module.check_mode)
    except Refused as e:
        module.fail_json(msg=str(e))
    except OSError as e:
        module.fail_json(msg=f"npuenv_files: {e}")
    module.exit_json(changed=bool(changed), changed_paths=changed, diff=diffs)


if __name__ == "__main__":
    main()
