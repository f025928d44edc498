"""Ansible as npuenv runs it: the project's settings under the user's own, the inventory read and
checked before a run, the ansible-playbook options a command hands on, one session per command.
`npuenv deploy` and `npuenv status` (playbooks/) and validation's ansible:// and ssh:// targets run
their playbooks through it; it sits below both."""
