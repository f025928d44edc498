#!/bin/bash
# Simulated latest manager of the CANN packages up to 8.3 (installed as
# <root>/ascend-toolkit/latest/var/manager.sh), after the vendor's
# scripts/package/latest_manager/scripts/manager_func.sh (hicann/runtime):
# latest/ is a directory of per-component links into the running version plus
# version.cfg, which records per package the running version and the installed
# ones in install order: <pkg>_running_version=[<inner>:<dir>],
# <pkg>_installed_version=[<inner>:<dir>][<inner>:<dir>] (tests/sim/vendor.yaml
# lifecycle.toolkit_ascend_toolkit).
#
#   manager.sh [--latest DIR] --package "P..." --version-dir V --version INNER package_installed
#   manager.sh [--latest DIR] --package "P..." --version-dir V [--recreate] package_uninstalled
#   manager.sh [--latest DIR] --version-dir V create_version_softlink
#   manager.sh [--latest DIR] remove_latest_softlink
set -u
LATEST="$(cd "$(dirname "$0")/.." 2>/dev/null && pwd)"
PACKAGES="" VDIR="" INNER="" RECREATE=n CMD=""
while [ $# -gt 0 ]; do
    case "$1" in
        --latest) LATEST="$2"; shift ;;
        --package) PACKAGES="$2"; shift ;;
        --version-dir) VDIR="$2"; shift ;;
        --version) INNER="$2"; shift ;;
        --recreate) RECREATE=y ;;
        *) CMD="$1" ;;
    esac
    shift
done
BASE="$(dirname "$LATEST")"
CFG="$LATEST/version.cfg"
# The toolkit's packages move together (one tree); the kernels package is opp_kernel.
TOOLKIT_PACKAGES="runtime compiler hccl opp toolkit"
# Entries of a version directory that latest holds as directories of links,
# as in the published `ll ascend-toolkit/latest/` (code index id 4926109241).
LINK_DIRS="python tools"

cfg_get() { [ -f "$CFG" ] && sed -n "s/^$1=//p" "$CFG" | tail -n1 || true; }
cfg_set() {
    [ -f "$CFG" ] || { mkdir -p "$LATEST"; echo "# version: 1.0" > "$CFG"; }
    if grep -q "^$1=" "$CFG"; then sed -i "s|^$1=.*|$1=$2|" "$CFG"; else echo "$1=$2" >> "$CFG"; fi
}
cfg_del() { [ -f "$CFG" ] && sed -i "/^$1=/d" "$CFG" || true; }
# "[a:b][c:d]" -> "a:b c:d"
pairs() { echo "$1" | grep -o '\[[^]]*\]' | tr -d '[]' || true; }
dir_of() { echo "${1#*:}"; }

# The names a package puts into latest, for version directory $2.
entries() {
    local pkg="$1" v="$BASE/$2" e name
    case "$pkg" in
        opp_kernel) [ -e "$v/opp_kernel" ] && echo opp_kernel ;;
        toolkit)
            for e in "$v"/* "$v"/.[!.]*; do
                [ -e "$e" ] || [ -L "$e" ] || continue
                name="$(basename "$e")"
                case "$name" in
                    opp_kernel|var|create_version_softlink.sh|cann_uninstall.sh|version.cfg) ;;
                    *) echo "$name" ;;
                esac
            done ;;
    esac
}

link_package() {   # link_package PKG VDIR
    local pkg="$1" v="$2" name target sub
    for name in $(entries "$pkg" "$v"); do
        rm -rf "${LATEST:?}/$name"
        if [ -L "$BASE/$v/$name" ]; then
            target="$(readlink "$BASE/$v/$name")"
            case "$target" in
                *-linux*) ln -s "$target" "$LATEST/$name" ;;     # bin -> <arch>-linux/bin, within latest
                *) ln -s "../$v/$target" "$LATEST/$name" ;;      # acllib -> ../<v>/runtime
            esac
        elif [ -d "$BASE/$v/$name" ] && { case "$name" in *-linux) true ;; *) [[ " $LINK_DIRS " == *" $name "* ]] ;; esac; }; then
            mkdir -p "$LATEST/$name"
            for sub in "$BASE/$v/$name"/*; do
                [ -e "$sub" ] || continue
                ln -s "../../$v/$name/$(basename "$sub")" "$LATEST/$name/$(basename "$sub")"
            done
        else
            ln -s "../$v/$name" "$LATEST/$name"
        fi
    done
}

unlink_package() {   # unlink_package PKG VDIR: the links the package made, even if its directory is gone
    local pkg="$1" v="$2" name
    case "$pkg" in
        opp_kernel) rm -f "$LATEST/opp_kernel" ;;
        toolkit)
            for name in "$LATEST"/* "$LATEST"/.[!.]*; do
                [ -e "$name" ] || [ -L "$name" ] || continue
                case "$(basename "$name")" in
                    opp_kernel|var|version.cfg|remove_latest_softlink.sh) ;;
                    *) rm -rf "$name" ;;
                esac
            done ;;
    esac
}

running_dir() { local p; p="$(pairs "$(cfg_get "$1_running_version")")"; [ -n "$p" ] && dir_of "$p" || true; }

make_running() {   # make_running PKG PAIR: relink PKG to the version of PAIR
    local pkg="$1" pair="$2" old
    old="$(running_dir "$pkg")"
    [ -z "$old" ] || unlink_package "$pkg" "$old"
    link_package "$pkg" "$(dir_of "$pair")"
    cfg_set "${pkg}_running_version" "[$pair]"
}

stop_running() {
    local pkg="$1" old
    old="$(running_dir "$pkg")"
    [ -z "$old" ] || unlink_package "$pkg" "$old"
    cfg_del "${pkg}_running_version"
}

installed_pairs() { pairs "$(cfg_get "$1_installed_version")"; }

package_installed() {
    local pkg pair="$INNER:$VDIR" list
    for pkg in $PACKAGES; do
        make_running "$pkg" "$pair"
        list="$(cfg_get "${pkg}_installed_version")"
        [[ "$list" == *"[$pair]"* ]] || cfg_set "${pkg}_installed_version" "$list[$pair]"
    done
    # A toolkit makes the kernels of another version incompatible (the simulated
    # kernels package needs the toolkit of its own version).
    if [[ " $PACKAGES " == *" toolkit "* ]] && [ -n "$(running_dir opp_kernel)" ] && [ "$(running_dir opp_kernel)" != "$VDIR" ]; then
        stop_running opp_kernel
    fi
    [ -f "$LATEST/remove_latest_softlink.sh" ] || {
        printf '#!/bin/bash\n# Removes the running links from latest (simulated; vendor: manager.sh remove_latest_softlink).\nexec bash "$(dirname "$(readlink -f "$0")")/var/manager.sh" remove_latest_softlink\n' \
            > "$LATEST/remove_latest_softlink.sh"
        chmod 550 "$LATEST/remove_latest_softlink.sh"
    }
}

package_uninstalled() {
    local pkg rest p first
    for pkg in $PACKAGES; do
        [ "$(running_dir "$pkg")" = "$VDIR" ] && stop_running "$pkg"
        rest=""
        for p in $(installed_pairs "$pkg"); do [ "$(dir_of "$p")" = "$VDIR" ] || rest="$rest[$p]"; done
        if [ -n "$rest" ]; then cfg_set "${pkg}_installed_version" "$rest"; else cfg_del "${pkg}_installed_version"; fi
    done
    if [ "$RECREATE" = y ]; then
        # The first installed version (install order) that fits: any for the toolkit,
        # the running toolkit's own for the kernels.
        for pkg in $PACKAGES; do
            [ -z "$(running_dir "$pkg")" ] || continue
            for p in $(installed_pairs "$pkg"); do
                if [ "$pkg" != opp_kernel ] || [ "$(dir_of "$p")" = "$(running_dir toolkit)" ]; then
                    make_running "$pkg" "$p"
                    break
                fi
            done
        done
    fi
    if ! grep -q "_installed_version=" "$CFG" 2>/dev/null; then
        # No version left: the bookkeeping goes, then latest itself.
        rm -rf "${LATEST:?}/var" "$CFG" "$LATEST/remove_latest_softlink.sh"
        for pkg in $TOOLKIT_PACKAGES opp_kernel; do unlink_package "$pkg" ""; done
        rmdir "$LATEST" 2>/dev/null || true
    fi
}

create_version_softlink() {
    local pkg p found=n
    for pkg in $TOOLKIT_PACKAGES opp_kernel; do
        for p in $(installed_pairs "$pkg"); do
            if [ "$(dir_of "$p")" = "$VDIR" ]; then make_running "$pkg" "$p"; found=y; fi
        done
    done
    [ "$found" = y ] || { echo "[ERROR] no package is installed in $BASE/$VDIR" >&2; return 1; }
    # kernels of another version stay only while they fit the toolkit now running
    if [ -n "$(running_dir opp_kernel)" ] && [ "$(running_dir opp_kernel)" != "$(running_dir toolkit)" ]; then
        stop_running opp_kernel
    fi
}

remove_latest_softlink() {
    local pkg
    for pkg in $TOOLKIT_PACKAGES opp_kernel; do stop_running "$pkg"; done
}

case "$CMD" in
    package_installed|package_uninstalled|create_version_softlink|remove_latest_softlink) "$CMD" ;;
    *) echo "usage: manager.sh [--package P] [--version-dir V] [--version INNER] [--recreate] COMMAND" >&2; exit 1 ;;
esac
