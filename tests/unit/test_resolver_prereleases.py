"""A specifier admits pre-releases whatever packaging's default: pyproject.toml allows packaging >= 24,
and packaging 24.x and 25.x leave a pre-release out of `Version in SpecifierSet(spec)` unless the set
says prereleases=True (checked in throwaway venvs with packaging 24.0 and 25.0: `Version("2.13.0rc1") in
SpecifierSet(">=2.12")` is False there, True with prereleases=True); packaging 26 admits it either way.
So the tests here answer `in` as packaging 24 and 25 do, which the venv's packaging 26 would not show."""
from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compat_matrix import resolver


class SpecifierSet24(SpecifierSet):
    """`in` as packaging 24.x and 25.x answer it: a pre-release is contained only when the set's
    prereleases is True (given, or implied by a specifier that names a pre-release)."""

    def __contains__(self, item) -> bool:
        return self.contains(item)

    def contains(self, item, prereleases=None, installed=None) -> bool:
        version = item if isinstance(item, Version) else Version(str(item))
        if prereleases is None:
            prereleases = self.prereleases
        if version.is_prerelease and not prereleases:
            return False
        return super().contains(version, prereleases=True)


def test_the_stand_in_answers_as_packaging_24_did():
    assert Version("2.13.0rc1") not in SpecifierSet24(">=2.12")
    assert Version("2.13.0rc1") in SpecifierSet24(">=2.12", prereleases=True)
    assert Version("2.13.0rc1") in SpecifierSet24(">=2.13.0rc1")
    assert Version("2.13.0") in SpecifierSet24(">=2.12")


def test_a_specifier_admits_a_pre_release_row_on_the_oldest_packaging(monkeypatch):
    monkeypatch.setattr(resolver, "SpecifierSet", SpecifierSet24)
    # torch_npu 2.1.0rc1 is a row of its own (tests/unit/test_resolver_rules.py)
    assert resolver.version_matches(">=2.0,<2.2", "2.1.0rc1") is True
    assert resolver.version_matches("!=2.9.0", "2.1.0rc1") is True
    assert resolver.version_matches(">=2.2", "2.1.0rc1") is False
    assert resolver.version_matches(">=2.0", "2.1.0") is True
