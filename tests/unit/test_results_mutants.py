"""The results plugin's options as pytest's --help shows them (validation/node/results.py)."""
from __future__ import annotations

import pytest


def test_the_plugins_options_are_explained_in_pytests_help(capsys):
    assert pytest.main(["-p", "validation.node.results", "-p", "no:cacheprovider", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--npuenv-results=NPUENV_RESULTS write the JSON result here" in shown
    assert ("--npuenv-only=CHECK run only the check of this exact name (repeatable; validation/node/runner.py checks "
            "the names)") in shown
