#!/bin/bash
# Self-extracting vendor package (simulated), in the shape of the makeself
# archives Huawei ships: this header verifies the payload's size and SHA256,
# unpacks it to a temporary directory and runs its install.sh with the
# remaining arguments. Header options and messages follow the vendor's
# makeself header; see tests/sim/installers/__init__.py.
LABEL="@LABEL@"
PAYLOAD_OFFSET=$((10#@OFFSET@))  # decimal, zero-padded to a fixed width
PAYLOAD_SIZE=@SIZE@
PAYLOAD_SHA256="@SHA256@"
HELP_OPTIONS="@OPTIONS@"

ms_help() {
    cat >&2 <<HELP
Usage: $0 [options]
Options:
  --help | -h                       Print this message
  --info                            Print embedded info : title, default target directory, embedded script ...
  --list                            Print the list of files in the archive
  --check                           Checks integrity and version dependency of the archive
  --quiet                           Quiet install mode, skip human-computer interactions
  --nox11                           Do not spawn an xterm
  --noexec                          Do not run embedded script
  --extract=<path>                  Extract directly to a target directory (absolute or relative)
                                    Usually used with --noexec to just extract files without running
  --tar arg1 [arg2 ...]             Access the contents of the archive through the tar command
$(printf '%b' "$HELP_OPTIONS")
HELP
}

payload() { tail -c +"$((PAYLOAD_OFFSET + 1))" "$0"; }

verify() {
    local size actual
    size=$(( $(stat -c %s "$0") - PAYLOAD_OFFSET ))
    if [ "$size" -ne "$PAYLOAD_SIZE" ]; then
        echo " Unexpected archive size." >&2
        exit 2
    fi
    [ "$quiet" = y ] || printf 'Verifying archive integrity...  100%%  ' >&2
    actual=$(payload | sha256sum | cut -d' ' -f1)
    if [ "$actual" != "$PAYLOAD_SHA256" ]; then
        [ "$quiet" = y ] || echo >&2
        echo "Error in SHA256 checksums: $actual is different from $PAYLOAD_SHA256" >&2
        exit 2
    fi
    [ "$quiet" = y ] || { printf ' SHA256 checksums are OK.' >&2; echo " All good."; }
}

quiet=n noexec=n target="" check=n
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) ms_help; exit 0 ;;
        --info)
            echo "Identification: $LABEL"
            echo "Target directory: ."
            echo "Uncompressed size: $(( PAYLOAD_SIZE / 1024 )) KB"
            echo "Compression: gzip"
            echo "Script run after extraction: ./install.sh"
            exit 0 ;;
        --list) echo "Target directory: ."; payload | tar tzvf -; exit 0 ;;
        --tar) shift; payload | tar "$1" - "${@:2}"; exit 0 ;;
        -q|--quiet) quiet=y; args+=("--quiet") ;;
        --nox11) ;;
        --noexec) noexec=y ;;
        --extract=*) target="${1#--extract=}" ;;
        --check) check=y; args+=("--check") ;;
        *)
            opt="${1%%=*}"
            if ! printf '%b' "$HELP_OPTIONS" | grep -qE -- "^ *${opt}( |=|$)"; then
                ms_help
                exit 1
            fi
            args+=("$1") ;;
    esac
    shift
done

verify
keep=y
if [ -z "$target" ]; then
    keep=n
    target="$(mktemp -d "${TMPDIR:-/tmp}/selfgz$$XXXXXX")"
elif [ ! -d "$target" ]; then
    [ "$quiet" = y ] || echo "Creating directory $target" >&2
    mkdir -p "$target" || { echo "Cannot create target directory $target" >&2; exit 1; }
fi
[ "$quiet" = y ] || printf 'Uncompressing %s  100%%  \n' "$LABEL"
if ! payload | tar xzf - -C "$target"; then
    echo "Unable to decompress $0" >&2
    exit 1
fi
res=0
if [ "$noexec" = n ]; then
    (cd "$target" && RUN_PACKAGE="$(basename "$0")" ./install.sh "${args[@]}")
    res=$?
fi
[ "$keep" = y ] || rm -rf "$target"
exit "$res"
