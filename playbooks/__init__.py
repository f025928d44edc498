"""Ansible content (site.yml, validate.yml, roles, plugins) and the small
Python layer that runs it for `npuenv deploy` and `make deploy`."""
