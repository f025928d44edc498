"""A resolved stack: one matrix row made concrete for a Python, arch, chip and OS.

This is where package file names and install paths are filled in from the
templates of platforms.yaml; images, playbooks and validation read them from
here. The simulator does not: it knows the vendor's names and paths from
tests/sim/vendor.yaml, so that a wrong fact here fails a test.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import yaml
from packaging.version import Version

from .model import Platforms, Row


@dataclass(frozen=True)
class Stack:
    row: Row
    python: str
    arch: str
    chip: str
    os: str
    platforms: Platforms

    def _fill(self, template: str, root: str | None = None, **extra) -> str:
        hdk = self.row.hdk["version"]
        return template.format(cann=self.row.cann, arch=self.arch, root=root or self.platforms.install_root,
                               chip=self.chip_info["package_token"], kernel_dir=self.chip_info["opp_kernel_dir"],
                               hdk=hdk, hdk_file=hdk.lower(), cxx_abi=self.cxx_abi, **extra)

    @property
    def cxx_abi(self) -> int:
        """The C++ ABI of the row's torch wheel (1: C++11), which NNAL's ATB follows."""
        since = self.platforms.data["torch_cxx11_abi"]["since"][self.arch]
        return int(self.row.torch_version.release >= Version(since).release)

    @property
    def nnal_env_args(self) -> list[str]:
        """The arguments npuenv sources NNAL's set_env.sh with."""
        return [self._fill(a) for a in self.platforms.data["nnal_env"]["args"]]

    @property
    def packaging(self) -> dict:
        return self.platforms.packaging[self.row.packaging]

    @property
    def packages(self) -> dict[str, str]:
        """Vendor installer file names (the firmware's as a glob): driver, firmware, toolkit, kernels, nnal."""
        templates = dict(self.platforms.hdk["packages"])
        templates.update(self.packaging["packages"])
        for key, template in (self.chip_info.get("package_overrides") or {}).items():
            generation, _, name = key.rpartition(".")
            if generation in ("", self.row.packaging):
                templates[name] = template
        return {k: self._fill(v) for k, v in templates.items()}

    @property
    def paths(self) -> dict[str, str]:
        return self.paths_at()

    def paths_at(self, root: str | None = None) -> dict[str, str]:
        """Install paths, for the default install root or another (``--install-path``)."""
        out = {"install_root": root or self.platforms.install_root, **self.platforms.data["install_records"]}
        out.update({k: self._fill(v, root) for k, v in self.platforms.hdk["paths"].items()})
        out.update({k: self._fill(v, root) for k, v in self.packaging["paths"].items()})
        return out

    def environment(self, root: str | None = None, parts=("driver", "toolkit", "nnal")):
        """What the vendor's env scripts export for this stack.

        Returns (scalars, path lists); each path list is what sourcing the
        scripts in order (driver, toolkit, NNAL) puts in front of the variable.
        """
        paths = self.paths_at(root)
        home = self._fill(self.packaging["env"]["ASCEND_TOOLKIT_HOME"], root, **paths)
        sections = {
            "driver": ({}, self.platforms.hdk["env_paths"]),
            "toolkit": (self.packaging["env"], self.packaging["env_paths"]),
            "nnal": (self.platforms.data["nnal_env"]["env"], self.platforms.data["nnal_env"]["env_paths"]),
        }
        scalars: dict[str, str] = {}
        lists: dict[str, list[str]] = {}
        for part in parts:
            env, env_paths = sections[part]
            for key, template in env.items():
                scalars[key] = self._fill(template, root, home=home, **paths)
            for key, templates in env_paths.items():
                lists[key] = [self._fill(t, root, home=home, **paths) for t in templates] + lists.get(key, [])
        return scalars, lists

    @property
    def chip_info(self) -> dict:
        return dict(self.platforms.chips[self.chip])

    def to_dict(self) -> dict:
        row = self.row.to_dict()
        return {
            "torch_npu": row.pop("torch_npu"),
            "torch": row.pop("torch"),
            "torchvision": row.pop("torchvision"),
            "cann": row.pop("cann"),
            "python": self.python,
            "python_versions": row.pop("python"),
            "arch": self.arch,
            "chip": self.chip,
            "os": self.os,
            "base_image": self.platforms.operating_systems[self.os]["base_image"],
            "packages": self.packages,
            "paths": self.paths,
            "npus_per_node": self.chip_info["npus_per_node"],
            "dies_per_npu": self.chip_info["dies_per_npu"],
            "device_nodes": list(self.platforms.hdk["device_nodes"]),
            "install_flags": {k: " ".join(v) for k, v in self.platforms.data["install_flags"].items()
                              if k not in ("source", "needs_toolkit_env")},
            "needs_toolkit_env": list(self.platforms.data["install_flags"]["needs_toolkit_env"]),
            "nnal_env_args": self.nnal_env_args,
            "torch_requirement": self.row.torch_requirement(self.arch),
            **row,
        }

    def with_environment(self) -> dict:
        """``to_dict()`` plus what the vendor's env scripts export: the record the
        playbooks (npuenv_stack) and validation (its expected stack) work from."""
        scalars, paths = self.environment()
        return {**self.to_dict(), "environment": {"variables": scalars, "paths": paths}}

    def flat(self) -> dict[str, str]:
        """``{"packages_toolkit": "...", "hdk_min": "...", ...}``: scalars only, lists joined by spaces."""
        out: dict[str, str] = {}

        def walk(prefix: str, value):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}_{k}" if prefix else k, v)
            elif isinstance(value, (list, tuple)):
                out[prefix] = " ".join(map(str, value))
            else:
                out[prefix] = "" if value is None else str(value)

        walk("", self.to_dict())
        return out

    def export(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2, sort_keys=False)
        if fmt == "shell":
            return "\n".join(f"export NPUENV_{k.upper()}={shlex.quote(v)}" for k, v in self.flat().items())
        if fmt == "ansible":
            # Extra-vars for ansible-playbook -e @FILE: the whole stack under one variable.
            return yaml.safe_dump({"npuenv_stack": self.to_dict()}, sort_keys=False)
        raise ValueError(f"unknown export format {fmt!r}; use json, shell or ansible")


def shell_exports(scalars: dict[str, str], lists: dict[str, list[str]]) -> str:
    """``export`` lines for an environment: scalars as they are, path lists put
    in front of any value the variable already has."""
    lines = [f'export {k}="{v}"' for k, v in scalars.items()]
    for key, items in lists.items():
        lines.append(f'export {key}="{":".join(items)}${{{key}:+:${key}}}"')
    return "\n".join(lines) + "\n"
