"""The node side of validation: what the artefact (validation/artefact.py) carries to a host and runs
there with the host's own python3. runner.py is its entry; the suite, the workloads, the facts and
the vendor tools' parsers, and the result model that both sides read.

It imports only itself and compat_matrix (a contract in pyproject.toml): the controller's modules,
one folder up, import it, never the other way.
"""
