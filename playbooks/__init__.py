"""Ansible content (site.yml, validate.yml, status.yml, and the roles and plugins as the npuenv.ascend
collection under collections/) and the small Python layer that runs it for `npuenv deploy` and `make deploy`."""
