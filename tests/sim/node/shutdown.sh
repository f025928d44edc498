#!/bin/bash
# The simulated node's power control: `shutdown -r` restarts the node's
# container (podman's restart policy brings it back, and boot runs again),
# which is what a reboot is to the software on it. Halting is not simulated.
case " $* " in
    *" -r "*|*" --reboot "*) ;;
    *) echo "shutdown: only a reboot (-r) is simulated on this node" >&2; exit 1 ;;
esac
setsid bash -c 'sleep 1; kill -TERM 1' >/dev/null 2>&1 < /dev/null &
echo "Reboot scheduled"
