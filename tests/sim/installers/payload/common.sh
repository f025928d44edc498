# Shared by every simulated package's install.sh: argument parsing, the
# vendor's log line styles, install-info files. package.env (written by the
# generator) sets KIND, VERSION, ARCH and the layout variables.
set -u
. ./package.env

ROOT="$DEFAULT_ROOT"
MODE="" QUIET=n FOR_ALL=n INSTALL_PATH_GIVEN=n RUN_USER=HwHiAiUser RUN_GROUP=HwHiAiUser
for arg in "$@"; do
    case "$arg" in
        --install|--full|--run|--devel) MODE=install ;;
        --upgrade) MODE=upgrade ;;
        --uninstall) MODE=uninstall ;;
        --check) MODE=check ;;
        --version) MODE=version ;;
        --quiet) QUIET=y ;;
        --install-for-all) FOR_ALL=y ;;
        --install-path=*) ROOT="${arg#--install-path=}"; INSTALL_PATH_GIVEN=y ;;
        --install-username=*) RUN_USER="${arg#--install-username=}" ;;
        --install-usergroup=*) RUN_GROUP="${arg#--install-usergroup=}" ;;
        --nox11|--chip=*|--whitelist=*) ;;
    esac
done
# LOG_DIR, INSTALL_INFO and CANN_INFO come from package.env (tests/sim/vendor.yaml records).

# Driver and firmware: "[Driver] [2025-12-24 14:54:18] [INFO]msg" (no space before msg).
# CANN packages:       "[Toolkit] [20230710-22:44:15] [INFO] msg".
log() {
    local level="$1"; shift
    local line
    if [ "$LOG_STYLE" = hdk ]; then
        line="[$LOG_TAG] [$(date '+%Y-%m-%d %H:%M:%S')] [$level]$*"
    else
        line="[$LOG_TAG] [$(date '+%Y%m%d-%H:%M:%S')] [$level] $*"
    fi
    mkdir -p "$LOG_DIR"
    echo "$line" >> "$LOG_DIR/$LOG_FILE"
    if [ "$level" = ERROR ]; then echo "$line" >&2; else echo "$line"; fi
}

die() { log ERROR "$*"; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "Permission denied. Please run the installation as the root user."
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
