# Shared by every simulated package's install.sh: argument parsing, the
# vendor's log line styles, install-info files, questions, and the simulator's
# power-cut fault. package.env (written by the generator) sets KIND, VERSION,
# ARCH and the layout variables.
set -u
. ./package.env

ROOT="$DEFAULT_ROOT"
MODE="" MODES=0 NARGS=0 QUIET=n FOR_ALL=n FORCE=n INSTALL_PATH_GIVEN=n USER_GIVEN=n GROUP_GIVEN=n
RUN_USER=HwHiAiUser RUN_GROUP=HwHiAiUser
for arg in "$@"; do
    NARGS=$((NARGS + 1))   # the driver counts every parameter (args_parse.sh: i)
    case "$arg" in
        --install|--full|--run|--devel) MODE=install; MODES=$((MODES + 1)) ;;
        --upgrade) MODE=upgrade; MODES=$((MODES + 1)) ;;
        --uninstall) MODE=uninstall ;;
        --check) MODE=check ;;
        --version) MODE=version ;;
        --quiet) QUIET=y ;;
        --force) FORCE=y ;;
        --install-for-all) FOR_ALL=y ;;
        --install-path=*) ROOT="${arg#--install-path=}"; INSTALL_PATH_GIVEN=y ;;
        --install-username=*) RUN_USER="${arg#--install-username=}"; USER_GIVEN=y ;;
        --install-usergroup=*) RUN_GROUP="${arg#--install-usergroup=}"; GROUP_GIVEN=y ;;
        --nox11|--chip=*|--whitelist=*) ;;
    esac
done
# LOG_DIR, INSTALL_INFO and CANN_INFO come from package.env (tests/sim/vendor.yaml records).

# Driver and firmware: "[Driver] [2025-12-24 14:54:18] [INFO]msg" (no space before msg).
# CANN packages:       "[Toolkit] [20230710-22:44:15] [INFO] msg".
# NNAL's ATB:          "[cann-atb] [20250101-10:00:00] [INFO] msg" (ascend-transformer-boost scripts/install.sh print).
log() {
    local level="$1"; shift
    local line
    case "$LOG_STYLE" in
        hdk) line="[$LOG_TAG] [$(date '+%Y-%m-%d %H:%M:%S')] [$level]$*" ;;
        *) line="[$LOG_TAG] [$(date '+%Y%m%d-%H:%M:%S')] [$level] $*" ;;
    esac
    mkdir -p "$LOG_DIR"
    echo "$line" >> "$LOG_DIR/$LOG_FILE"
    if [ "$level" = ERROR ]; then echo "$line" >&2; else echo "$line"; fi
}

die() { log ERROR "$*"; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "Permission denied. Please run the installation as the root user."
}

# The vendor's y/n questions, skipped by --quiet. A real installer asks again
# on any other answer, also at end of input; the simulator takes end of input
# as "n", so that a run without --quiet and without a terminal stops instead of
# looping (hicann/runtime install.sh, hicann/driver driver_install.sh).
ask() {   # ask QUESTION [LEVEL]
    [ "$QUIET" = y ] && return 0
    log "${2:-INFO}" "$1"
    local yn
    while read -r yn; do
        case "$yn" in
            y) return 0 ;;
            n) break ;;
            *) log ERROR "ERR_NO:0x0002;ERR_DES:input error, please input again!" ;;
        esac
    done
    log INFO "stop installation!"
    exit 0
}

# The simulator's power cut (tests/sim/faults.py power_cut): when the control
# file names this package and this point, the node loses power here. Every
# process of the node but its init is killed at once (a process cannot kill its
# PID namespace's init), which ends a podman node's init with its main process
# and so the container: its restart policy brings it back as after a reboot.
# What was written before this point stays; nothing after it is written.
# The file is consumed first, so the next run completes.
power_cut() {
    local control
    control="$(dirname "$STATE_PATH")/power_cut"
    [ -f "$control" ] && [ "$(cat "$control")" = "$KIND $1" ] || return 0
    rm -f "$control"
    sync
    kill -KILL -1 2>/dev/null
    kill -KILL "$BASHPID"
}

# Read KEY from a KEY=VALUE file (empty when absent).
info_get() { [ -f "$1" ] && sed -n "s/^$2=//p" "$1" | tail -n1 || true; }

# Set KEY=VALUE in a KEY=VALUE file, keeping the other keys and their order.
info_set() {
    local file="$1" key="$2" value="$3"
    mkdir -p "$(dirname "$file")"
    touch "$file"
    if grep -q "^$key=" "$file"; then
        sed -i "s|^$key=.*|$key=$value|" "$file"
    else
        echo "$key=$value" >> "$file"
    fi
}

info_del() { [ -f "$1" ] && sed -i "/^$2=/d" "$1" || true; }

# A file of the package (version.info, set_env.sh) with @ROOT@ filled in: copy_filled SRC DEST
copy_filled() { mkdir -p "$(dirname "$2")"; sed "s|@ROOT@|$ROOT|g" "$1" > "$2"; }

# Keep the package's own installer in DIR and write an uninstall script at
# WRAPPER that runs it (the vendor ships each package's scripts inside its
# install tree): keep_installer DIR WRAPPER [ARGS for install.sh --uninstall]
keep_installer() {
    local dir="$1" wrapper="$2"; shift 2
    mkdir -p "$dir" "$(dirname "$wrapper")"
    cp install.sh common.sh "$dir/"
    # The installed tree keeps the package's scripts, not its .run archive nor the archive's
    # file name (images are searched for installer names to prove none was copied into a layer).
    grep -v '^PACKAGE_FILE=' package.env > "$dir/package.env"
    [ ! -f latest_manager.sh ] || cp latest_manager.sh "$dir/"
    printf '#!/bin/bash\n# %s uninstall script (simulated): the package'"'"'s own installer with --uninstall.\ncd "%s" && exec bash ./install.sh --uninstall %s "$@"\n' \
        "$KIND" "$dir" "$*" > "$wrapper"
    chmod 550 "$wrapper" "$dir/install.sh"
}

# Sortable form of a CANN/HDK version: 8.0.RC3 < 8.0.0 < 8.1.RC1.
version_key() {
    local v="$1" major minor third sub
    IFS=. read -r major minor third sub _ <<< "$v"
    case "$third" in
        RC*|rc*) third="${third#??}" ;;
        *) third=$((100 + third)) ;;
    esac
    printf '%03d%03d%03d%03d' "$major" "$minor" "$third" "${sub:-0}"
}
