"""Command line of the simulator (test-side; the product never calls it).

  python -m tests.sim installers [row constraints] --out DIR [--hdk V]
  python -m tests.sim nodes --count N [--prefix P] [--chip C] [--state-dir DIR] [--podman]
  python -m tests.sim clean
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

import compat_matrix as cm
from compat_matrix import outputs
from npuenv.args import add_constraint_args, constraints_from

from . import installers, nodes
from .cann_runtime.build import build_runtime_for_wheel

DEFAULT_STATE_DIR = Path("out/sim-state")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("installers", help="write a row's simulated vendor installers")
    add_constraint_args(p)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--hdk", help="HDK version to build the driver and firmware for (default: the row's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--runtime-libs", type=Path, help="simulated CANN libraries for the toolkit and NNAL")
    g.add_argument("--runtime-for-wheel", type=Path, help="build the simulated CANN libraries for this torch_npu wheel")
    p = sub.add_parser("nodes", help=f"start simulated nodes PREFIX-0..N-1 (default {nodes.PREFIX}-0..N-1)")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--prefix", default=nodes.PREFIX, help="the nodes' names are PREFIX-0, PREFIX-1, ...")
    p.add_argument("--chip", default="910b")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--podman", action="store_true",
                   help="reach the nodes with podman's exec connection instead of SSH")
    sub.add_parser("clean", help="remove the simulated nodes this checkout made")
    sub.add_parser("demo", help="the whole pipeline on simulated nodes (make demo)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "installers":
            outputs.check_dir_output(args.out, "--out")
            stack = cm.resolve(cm.load_matrix(), constraints_from(args)).stack
            runtime = args.runtime_libs
            if args.runtime_for_wheel:
                runtime = Path(tempfile.mkdtemp(prefix="npu-sim-runtime-"))
                build_runtime_for_wheel(runtime, args.runtime_for_wheel)
            written = installers.make_installers(stack, args.out, hdk=args.hdk, runtime_libs=runtime)
            for path in written.values():
                print(path)
        elif args.cmd == "nodes":
            state_dir = args.state_dir.resolve()
            access = None if args.podman else nodes.SshAccess.create(state_dir / "ssh")
            names = nodes.start_nodes(args.count, state_dir, chip=args.chip, prefix=args.prefix, access=access)
            inventory = state_dir / "inventory.yml"
            inventory.write_text(yaml.safe_dump(nodes.inventory(names, access)))
            for name in names:
                print(name)
            print(f"inventory: {inventory} (add npuenv_row, npuenv_installer_cache and npuenv_wheelhouse to deploy)")
        elif args.cmd == "demo":
            from . import demo
            return demo.main()
        else:
            for name in nodes.remove_nodes():
                print(f"removed {name}")
    except nodes.NodeNameTaken as e:
        print(e, file=sys.stderr)
        return 2
    except cm.MatrixError as e:
        for problem in e.problems:
            print(problem if problem.line else problem.message, file=sys.stderr)
        return 2
    except (cm.UserError, cm.NoMatch) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
