"""The documentation of the npuenv_pack action (plugins/action/npuenv_pack.py), which runs on the
controller and is what Ansible calls by this name: ansible-doc reads a module's file for it."""

DOCUMENTATION = r"""
module: npuenv_pack
short_description: Pack folders of the controller into tar archives, with their sha256, in a private folder
description:
  - Makes a private folder under C(under) and writes there one tar archive per folder of C(folders)
    (its files owned by root), taking each archive's sha256 as it is written. Returns C(path), the private
    folder, and C(archives), each with C(folder), C(path) and C(sha256).
  - With C(remove), removes a private folder it made instead.
  - Runs on the controller only; changes nothing on the host.
options:
  folders:
    description: The controller's folders to pack.
    type: list
    elements: str
  under:
    description: The controller's folder under which the private folder is made.
    type: str
  remove:
    description: A private folder made by this action, to remove.
    type: str
"""
