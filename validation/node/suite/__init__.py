"""The post-install validation suite (pytest-testinfra): quick, standard and
full levels, run by validation.run against hosts, containers and images."""
