"""Filters that read the vendor tools' output with the product's parsers
(validation.node.vendor_tools.npu_smi), so the playbooks and validation agree."""
from __future__ import annotations

import dataclasses

from ansible.errors import AnsibleFilterError


def _parse(parser, text):
    from validation.node.vendor_tools import common, npu_smi

    try:
        result = getattr(npu_smi, parser)(text)
    except common.VendorOutputError as e:
        raise AnsibleFilterError(f"{parser}: {e}") from None
    return dataclasses.asdict(result) if dataclasses.is_dataclass(result) else result


def npu_smi_info(text):
    """`npu-smi info` output -> {version, chips: [{npu, chip, health, ...}], processes}."""
    return _parse("parse_npu_smi_info", text)


def identity_probe(root):
    """The command (argv) that prints the machine-id and SSH host keys of the host it runs on (under ``root``)."""
    from validation.node import identity

    return identity.probe_argv(root)


def identity_refusal(outputs):
    """{host: the identity probe's output} -> why these hosts cannot be rolled out
    together, '' when each is a machine of its own: inventory names that share a
    machine-id or an SSH host key, or (among two hosts or more) hosts with neither."""
    from validation.node import identity

    found = {host: identity.parse(text) for host, text in outputs.items()}
    clashes = identity.clashes(found)
    if clashes:
        return f"inventory names that reach one machine: {'; '.join(clashes)}; {identity.FIX}"
    unknown = identity.unknown(found) if len(found) > 1 else []
    if unknown:
        return (f"{', '.join(unknown)}: no /{identity.MACHINE_ID_FILE} and no SSH host key in "
                f"/{identity.HOST_KEY_DIR}, so nothing tells it apart from the other hosts; give it a machine-id "
                f"(systemd-machine-id-setup)")
    return ""


# Runs a staged installer only when it is the file the controller verified: its sha256 is checked
# on the node right before it runs (in the same task, rather than a stat task and an assert task
# per installer). With an env script (NNAL's installer needs the toolkit's), that is sourced
# first, with no arguments of its own. Everything is an argument, nothing part of the text.
VERIFIED_RUN = (
    'env_script=$1 file=$2 sum=$3; shift 3; installer=("$file" "$@"); set --\n'
    'have=$(sha256sum < "$file" 2>/dev/null) && have=${have%% *} || have=missing\n'
    'if [ "$have" != "$sum" ]; then\n'
    '  echo "${file##*/} on the node does not match the controller\'s copy (SHA256 $have, expected $sum)" >&2\n'
    '  exit 97\n'
    'fi\n'
    'if [ -n "$env_script" ]; then . "$env_script" || exit; fi\n'
    'exec "${installer[@]}"\n')


def verified_run(path, sha256, flags, env_script=""):
    """The argv that runs the staged installer ``path`` with ``flags`` once its sha256 is checked
    (exit 97 and a message naming both checksums when it differs)."""
    return ["/bin/bash", "-c", VERIFIED_RUN, "npuenv-installer", env_script or "", path, sha256, *flags]


class FilterModule:
    def filters(self):
        return {
            "npuenv_verified_run": verified_run,
            "npuenv_identity_probe": identity_probe,
            "npuenv_identity_refusal": identity_refusal,
            "npuenv_npu_smi_info": npu_smi_info,
        }
