"""What the validation artefact holds, named once for the controller that packs it
(validation/artefact.py) and the node that unpacks it (runner.py)."""

# Third-party top-level packages and modules the node imports from the archive itself (zipimport: a
# few hundred files it need not write), all pure Python: pytest, its own dependencies (pluggy,
# iniconfig, packaging, pygments), testinfra, PyYAML's pure-Python loader (compat_matrix reads the
# vendor layout from platforms.yaml) and pytest's `py` compatibility shim.
LIBRARIES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "testinfra", "yaml")
MODULES = ("py",)
# Ours, unpacked on the node: pytest collects the suite from files, the workloads run as files and
# compat_matrix reads its data from files. Only the node side of validation travels.
OURS = ("compat_matrix", "validation.node")
# The stack a host is compared with when no lock names one, and the locks the hosts are checked
# against, by digest ({compat_matrix.lock.FORMAT_KEY: ..., "locks": {...}}): each node takes the entry
# of its own arch and OS (runner.py --lock DIGEST).
STACK_NAME = "npuenv-stack.json"
LOCKS_NAME = "npuenv-locks.json"
# The archive's own copy in the unpacked tree (the libraries are imported from it).
LIBRARY_ARCHIVE = "npuenv-validate.pyz"
