import os
import sys
import zipfile
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


@pytest.fixture(autouse=True, scope="session")
def _artefact_cache(tmp_path_factory):
    """The validation artefacts the tests build are kept in a folder of the test run, not in the user's
    cache (validation/artefact.py); the npuenv processes the tests start inherit it."""
    from validation.artefact import CACHE_ENV
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("artefact-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(autouse=True)
def _no_fake_in_the_artefact_cache(_artefact_cache):
    """A test that fakes artefact.build beneath artefact.cached stores its fake under the real key, and a
    later test of the same worker is sent it: fail the test that did it, not the one that finds it."""
    yield
    from validation.artefact import cache_dir
    fakes = [p.name for p in cache_dir().glob("npuenv-validate-*.pyz") if not zipfile.is_zipfile(p)]
    assert not fakes, f"this test left a fake artefact in the controller's cache: {fakes}; fake artefact.cached"


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
