"""Ansible content (site.yml, validate.yml, status.yml, and the roles and plugins as the npuenv.ascend
collection under collections/) and what `npuenv deploy` and `npuenv status` do with it: rollout.py (gated
batches) and status.py. They run Ansible through ansible_run and check the nodes with validation, both below
them."""
