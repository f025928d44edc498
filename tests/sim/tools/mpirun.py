#!/usr/bin/env python3
"""A stand-in for MPICH's ``mpirun -n N PROGRAM ARGS`` on a simulated node: N
copies of PROGRAM with PMI_RANK / PMI_SIZE set, their output passed through, the
exit code the worst of theirs. Enough to launch the simulated hccl_test the way
the HCCL Test guide does; no MPI communication is simulated. Standalone (stdlib)."""
import os
import subprocess
import sys


def main(argv):
    if len(argv) < 3 or argv[0] not in ("-n", "-np") or not argv[1].isdigit():
        sys.stderr.write("usage: mpirun -n N program [args...]\n")
        return 2
    n, command = int(argv[1]), argv[2:]
    procs = [subprocess.Popen(command, env=dict(os.environ, PMI_RANK=str(r), PMI_SIZE=str(n)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(n)]
    codes = []
    for p in procs:  # rank 0 first, as MPI's forwarding of a quiet run shows it
        out, _ = p.communicate()
        sys.stdout.write(out)
        codes.append(p.returncode)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
