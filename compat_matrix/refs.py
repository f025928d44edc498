"""Names a user gives that reach a container engine: image references and container names.

Both the image build (images/) and the torch_npu builder image (torch_npu_pkg/) check them, so they
live below both. A name that passes starts with no '-', so it cannot reach an engine as an option."""
from __future__ import annotations

import re

from .errors import UserError

# An image reference as docker and podman read it (the distribution project's
# grammar): [registry[:port]/]path[:tag][@digest], the path in lower case. It
# never starts with '-', so it cannot reach an engine as an option.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
IMAGE_REF_RE = re.compile(rf"{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
                          rf"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?")
# A container name as podman and docker accept it.
CONTAINER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def check_image_ref(ref: str, option: str) -> str:
    if not IMAGE_REF_RE.fullmatch(ref) or len(ref) > 255:
        raise UserError(f"{option} {ref!r} is not a valid image reference; write [registry/]name[:tag], e.g. "
                        f"localhost/npuenv-torch-npu:2.13.0 or registry.example:5000/team/npu:latest")
    return ref


def check_container_name(name: str, option: str) -> str:
    if not CONTAINER_NAME_RE.fullmatch(name):
        raise UserError(f"{option} {name!r} is not a container name; use letters, digits and _.- "
                        f"(starting with a letter or digit)")
    return name
