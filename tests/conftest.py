import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.sim.inputs import reachable  # noqa: E402,F401 (the tests import it from here)


@pytest.fixture(autouse=True)
def _no_npuenv_option_variables(monkeypatch):
    """The NPUENV_* variables that set options (compat_matrix.cli_options.ENV_OPTIONS) of whoever runs the
    tests change no test: a test that wants one sets it."""
    from compat_matrix.cli_options import ENV_OPTIONS
    for env in ENV_OPTIONS.values():
        monkeypatch.delenv(env.var, raising=False)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
