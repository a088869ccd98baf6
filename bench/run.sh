#!/usr/bin/env bash
# The delivery benchmark: in one run on one machine, several hundred
# deliveries of /bin/true and of a 50 KB message to cat, three ways:
#   (a) floor     what Exim does without cagepipe: set gid/uid, exec (no container)
#   (b) cagepipe  the same launcher execs cagepipe, which enters a test container
#                 (the dynamic build, and the static PIE the packages ship)
#   (c) chain     what a sysadmin builds today: a shell joins the cgroups, then
#                 nsenter -t PID -a -r + setpriv with a full privilege drop
#   (d) wrapper   a do-nothing C wrapper (bench/wrapper.c: fork, exec, wait)
#                 under the same launcher, built against the same C library
#                 as cagepipe (dynamic glibc; static for the static PIE)
#   (e) exim      a whole Exim delivery of a .forward pipe (exim -odi, private
#                 configurations, the same .forward): a plain pipe transport
#                 against the cagepipe transport (the binary the packages
#                 ship: the static PIE), back to back and spaced
#   (f) enter     the kernel floor of entering (bench/enter.c): the same
#                 kernel steps as cagepipe into the same container (namespaces,
#                 root, cgroups, ids, bounding set, no_new_privs, capabilities)
#                 with no lookup and no check, installed and launched as
#                 cagepipe is (dynamic and static)
# and a delivery through each engine backend (oci/runc, lxc, cgroup, docker,
# podman with runc, machined with systemd-nspawn) next to the pidfile
# backend, into containers the benchmark starts itself (with daemons of its
# own: dockerd, dbus-daemon and systemd-machined, stopped at the end).
# Prints medians and p99, b/a, c/b, b/d, f/d, b/f, e(cagepipe)/e(plain), the
# system calls of one delivery (strace; cagepipe's and the floor's) and
# cagepipe's peak RSS.
# BASELINE=PATH adds another cagepipe binary (an older build, say) to the
# /bin/true rows, as b-baseline.
# Run as root: bench/run.sh [RUNS [SPACED_RUNS [EXIM_RUNS]]]   (needs
# hyperfine, GNU time, strace, a C compiler, exim4, runc, lxc, docker.io,
# podman, systemd-container, dbus-daemon; installs the small ones; an
# engine whose tools are missing is left out with a line on stderr)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-500}
spaced=${2:-40}
exim_runs=${3:-150}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
for tool in hyperfine:hyperfine /usr/bin/time:time setcap:libcap2-bin strace:strace cc:gcc; do
    command -v "${tool%%:*}" >/dev/null || apt-get install -y --no-install-recommends "${tool#*:}" >/dev/null
done

cargo build --release --quiet --bin cagepipe --example probe --example floor
# The binary the packages ship: the same program as a static PIE
# (packaging/build-static; no dynamic loader at exec), when the C library's
# static archive is there (libc6-dev on Debian, glibc-static on EL).
static_bin=$(packaging/build-static --quiet 2>/dev/null | tail -n 1) || static_bin=""
work=$(mktemp -d /run/cagepipe-bench.XXXXXX)
chmod 0755 "$work"
name=cagepipe-bench
user=cagepipe-bench
created_user=""
# Docker's and Podman's state (a data root of their own, on disk as theirs
# is), and what of the host's the daemons may make that was not there
# before the run (removed at the end if so).
engine_state=""
made=()
dockerd_pid=""
containerd_pid=""
podman_started=""
nspawn_pid=""
dbus_pid=""
machined_pid=""
cleanup() {
    testbed/container stop "$name" >/dev/null 2>&1 || true
    engines_cleanup
    daemons_cleanup
    rm -rf "$work"
    # Only an account this run created (and its home) is removed.
    if [ -n "$created_user" ]; then userdel --remove "$created_user" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# Interrupted: the same clean-up, through the exit.
trap 'exit 130' INT TERM HUP
engines_cleanup() {
    runc delete --force "$user" >/dev/null 2>&1 || true
    lxc-stop -n "$user" -P "$work/lxc" -k >/dev/null 2>&1 || true
    # liblxc's monitor leaves lxc.pivot behind in every hierarchy.
    for m in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); do rmdir "$m/lxc.pivot" 2>/dev/null || true; done
}

# End a process this run started (by its pid): TERM, then KILL if it is
# still there after 15 s.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
# The mounts at or below a directory, deepest first.
mounts_below() { findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d) == 1' | sort -r; }
# Remove a cgroup with everything below it in every hierarchy (only empty
# cgroups can go: one still in use stays).
remove_cgroup() {
    local h
    for h in /sys/fs/cgroup/*/; do
        if [ -d "$h$1" ]; then find "$h$1" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
}
# Note which of these do not exist yet (paths, or cgroup:NAME in any
# hierarchy): daemons_cleanup removes them at the end.
note_new() {
    local p
    for p in "$@"; do
        case $p in
            cgroup:*) ls -d /sys/fs/cgroup/*/"${p#cgroup:}" >/dev/null 2>&1 || made+=("$p") ;;
            *) [ -e "$p" ] || made+=("$p") ;;
        esac
    done
}
# Docker, Podman and machined: their containers, then their daemons, then
# what they made of the host's that was not there before.
daemons_cleanup() {
    local m mm
    if [ -n "$dockerd_pid" ]; then
        docker_cli rm -f "$user" >/dev/null 2>&1 || true
        stop_pid "$dockerd_pid"
        # dockerd stops its containerd; not when it had to be killed.
        stop_pid "$containerd_pid"
    fi
    if [ -n "$podman_started" ]; then
        podman "${podman_args[@]}" rm -f -t 0 "$user" >/dev/null 2>&1 || true
    fi
    if [ -n "$nspawn_pid" ]; then
        # The container's end ends nspawn.
        for m in $(cat "$(nspawn_payload)/cgroup.procs" 2>/dev/null); do kill -KILL "$m" 2>/dev/null || true; done
        stop_pid "$nspawn_pid"
        remove_cgroup "$user.scope"
    fi
    stop_pid "$machined_pid"
    stop_pid "$dbus_pid"
    # machined writes its records again when it stops.
    rm -f "/run/systemd/machines/$user" "/run/systemd/machines/unit:$user.scope"
    rm -rf "/run/systemd/nspawn/propagate/$user"
    for m in "${made[@]}"; do
        case $m in cgroup:*) remove_cgroup "${m#cgroup:}" ;; esac
    done
    if [ -n "$engine_state" ]; then
        for m in $(mounts_below "$engine_state/"); do umount -l "$m" 2>/dev/null || true; done
        rm -rf "$engine_state"
    fi
    for m in $(printf '%s\n' "${made[@]}" | grep '^/' | sort -r); do
        for mm in $(mounts_below "$m/"); do umount -l "$mm" 2>/dev/null || true; done
        rm -rf "$m"
    done
}

getent group cagepipe >/dev/null || groupadd --system cagepipe
if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$user"
    created_user=$user
fi
uid=$(id -u "$user")
gid=$(id -g "$user")
cpgid=$(getent group cagepipe | cut -d: -f3)

install -o root -g cagepipe -m 0750 target/release/cagepipe "$work/cagepipe"
setcap "$(cat packaging/file-caps)" "$work/cagepipe"
install -m 0755 target/release/examples/floor "$work/floor"
cc -O2 -o "$work/wrapper" bench/wrapper.c
cc -O2 -static-pie -o "$work/wrapper-static" bench/wrapper.c 2>/dev/null ||
    cc -O2 -static -o "$work/wrapper-static" bench/wrapper.c
# The kernel floor of entering, built the same two ways, installed with
# cagepipe's file capabilities.
cc -O2 -o "$work/enter.build" bench/enter.c
cc -O2 -static-pie -o "$work/enter-static.build" bench/enter.c 2>/dev/null ||
    cc -O2 -static -o "$work/enter-static.build" bench/enter.c
for b in enter enter-static; do
    install -o root -g cagepipe -m 0750 "$work/$b.build" "$work/$b"
    setcap "$(cat packaging/file-caps)" "$work/$b"
done
if [ -n "$static_bin" ]; then
    install -o root -g cagepipe -m 0750 "$static_bin" "$work/cagepipe-static"
    setcap "$(cat packaging/file-caps)" "$work/cagepipe-static"
else
    cp -a "$work/cagepipe" "$work/cagepipe-static"
    echo "bench: no static build (static C library missing); b-static is the dynamic binary" >&2
fi
baseline_row=""
if [ -n "${BASELINE:-}" ]; then
    install -o root -g cagepipe -m 0750 "$BASELINE" "$work/cagepipe-baseline"
    setcap "$(cat packaging/file-caps)" "$work/cagepipe-baseline"
    baseline_row="-n b-baseline \"$work/floor $uid $cpgid $work/cagepipe-baseline --raw-pipe=|/bin/true\""
fi
mkdir -m 0755 "$work/probe" "$work/conf" "$work/pids"
install -m 0755 target/release/examples/probe "$work/probe/probe"
printf '[container]\npidfile = "%s/{user}.pid"\n' "$work/pids" >"$work/conf/cagepipe.toml"
mkdir -m 0755 "$work/conf-legacy"
printf '[container]\npidfile = "%s/{user}.pid"\n[kernel]\ndisable = ["clone_into_cgroup"]\n' "$work/pids" \
    >"$work/conf-legacy/cagepipe.toml"
mkdir -m 0755 "$work/conf-rollout"
printf '[container]\npidfile = "%s/{user}.pid"\n[rollout]\ncontain = "none"\n' "$work/pids" \
    >"$work/conf-rollout/cagepipe.toml"
chmod 0644 "$work/conf/cagepipe.toml" "$work/conf-legacy/cagepipe.toml" "$work/conf-rollout/cagepipe.toml"
head -c 38400 /dev/urandom | base64 -w 76 | head -c 51200 >"$work/message.50k"

pid=$(testbed/container start "$name" --user "$user" --pidfile "$work/pids/$user.pid" \
    --bind-ro "$work/probe:/opt/cagepipe-probe")
# Where the hierarchy of a /proc/PID/cgroup line (ID, CONTROLLERS) is
# mounted, from our mount table.
mount_of() {
    if [ "$1" = 0 ]; then
        awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo
    else
        awk -v c="${2%%,*}" '$0 ~ / - cgroup / { n=split($NF, o, ","); for (i=1;i<=n;i++) if (o[i]==c) {print $5; exit} }' /proc/self/mountinfo
    fi
}
# The cgroup.procs files of the container's init, for the sysadmin chain;
# and for the floor of entering, what cagepipe joins: the cgroup v2
# directory the command is born in (clone3), and the v1 tasks files; a
# hierarchy where the container's cgroup is ours is not joined.
procs=""
joins=""
while IFS=: read -r id ctl path; do
    mnt=$(mount_of "$id" "$ctl")
    [ -n "$mnt" ] || continue
    procs="$procs $mnt$path/cgroup.procs"
    grep -qxF "$id:$ctl:$path" /proc/self/cgroup && continue
    if [ "$id" = 0 ]; then
        joins="$joins --into $mnt$path"
    else
        joins="$joins $mnt$path/tasks"
    fi
done <"/proc/$pid/cgroup"
enter_args="$pid $uid $gid$joins --"

# The engines' containers, as their own tools start them (no registry): a
# root file system of the payloads and the libraries they load.
root="$work/rootfs"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc}
for b in /bin/sleep /bin/true /bin/cat; do
    cp "$b" "$root/bin/"
    for lib in $(ldd "$b" | grep -o '/[^ ]*'); do mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; done
done
chmod -R a+rX "$root"
# /usr and os-release: systemd-nspawn refuses a tree without them. Docker
# gets the tree as an image, before runc and LXC make their mount points.
mkdir -p "$root/usr"
echo "ID=cagepipe-bench" >"$root/etc/os-release"
tar -C "$root" -c . >"$work/rootfs.tar"
engines=(pidfile)
engines_cleanup
if command -v runc >/dev/null; then
    mkdir -p "$work/runc"
    (cd "$work/runc" && runc spec)
    python3 - "$work/runc/config.json" "$root" "$user" <<'PY'
import json, sys
path, root, name = sys.argv[1:]
spec = json.load(open(path))
spec["root"] = {"path": root, "readonly": True}
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/sleep", "infinity"]
spec["hostname"] = name
spec["linux"]["namespaces"].append({"type": "cgroup"})
json.dump(spec, open(path, "w"))
PY
    if (cd "$work/runc" && runc run -d "$user" </dev/null >/dev/null 2>"$work/runc/log"); then
        engines+=(oci)
        printf '[container]\nbackend = "oci"\n' >"$work/conf-oci.toml"
    else
        echo "bench: runc did not start: $(cat "$work/runc/log")" >&2
    fi
fi
if command -v lxc-start >/dev/null; then
    mkdir -p "$work/lxc/$user"
    printf 'lxc.uts.name = %s\nlxc.rootfs.path = dir:%s\nlxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep infinity\nlxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\n' \
        "$user" "$root" >"$work/lxc/$user/config"
    if lxc-start -n "$user" -P "$work/lxc" -f "$work/lxc/$user/config" -d </dev/null >/dev/null 2>&1; then
        for _ in $(seq 100); do
            [ -n "$(lxc-info -n "$user" -P "$work/lxc" -p -H 2>/dev/null)" ] && break
            sleep 0.05
        done
        engines+=(lxc)
        printf '[container]\nbackend = "lxc"\n' >"$work/conf-lxc.toml"
    else
        echo "bench: lxc-start failed" >&2
    fi
fi
# Docker: a dockerd of the bench's own (its data root in $engine_state, on
# disk as Docker's is; no bridge, no firewall rules), the tree imported as
# an image. Its runtime state is where cagepipe reads it, below /run/docker
# (dockerd's default), so a dockerd already running here would share it:
# then there is no docker row.
engine_state=$(mktemp -d /var/lib/cagepipe-bench-engines.XXXXXX)
chmod 0755 "$engine_state"
docker_cli() { docker -H "unix://$work/docker.sock" "$@"; }
other_dockerd() {
    local p exe
    exe=$(readlink -f "$(command -v dockerd)")
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$exe" ] && return 0
    done
    return 1
}
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    echo "bench: no dockerd or docker: the docker row is left out" >&2
elif other_dockerd; then
    echo "bench: another dockerd is running (it would share /run/docker): the docker row is left out" >&2
else
    note_new /run/docker /etc/docker cgroup:docker
    dockerd --data-root "$engine_state/docker" --iptables=false --ip6tables=false --bridge=none \
        -H "unix://$work/docker.sock" --pidfile "$work/docker.pid" </dev/null >/dev/null 2>"$work/dockerd.log" &
    dockerd_pid=$!
    for _ in $(seq 200); do
        docker_cli info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.1
    done
    # The containerd this dockerd started (not a stale pidfile's number).
    containerd_pid=$(cat /run/docker/containerd/containerd.pid 2>/dev/null) || containerd_pid=""
    if [ -n "$containerd_pid" ] && [ "$(ps -o ppid= -p "$containerd_pid" | tr -d ' ')" != "$dockerd_pid" ]; then
        containerd_pid=""
    fi
    if docker_cli import - cagepipe-bench <"$work/rootfs.tar" >/dev/null 2>"$work/docker.log" &&
        docker_cli run -d --name "$user" --hostname "$user" --network none cagepipe-bench /bin/sleep infinity \
            >/dev/null 2>>"$work/docker.log"; then
        engines+=(docker)
        printf '[container]\nbackend = "docker"\ndocker_root = "%s"\n' "$engine_state/docker" >"$work/conf-docker.toml"
    else
        echo "bench: docker did not start a container: $(tail -n 3 "$work/docker.log" "$work/dockerd.log")" >&2
    fi
fi
# Podman, rootful, with runc (crun refuses a hybrid cgroup host); its
# storage in $engine_state: the name in its containers.json, the init in
# runc's state below /run/runc. Both ulimits must be given (Podman's
# defaults need more than a test machine may allow).
podman_args=(--root "$engine_state/podman" --runroot "$work/podman-run" --tmpdir "$work/podman-tmp" --runtime runc)
if ! command -v podman >/dev/null || ! command -v conmon >/dev/null || ! command -v runc >/dev/null; then
    echo "bench: no podman, conmon or runc: the podman row is left out" >&2
else
    note_new /dev/shm/libpod_lock /run/libpod /run/containers /var/lib/containers /run/runc cgroup:libpod_parent
    cp -a "$root" "$work/rootfs-podman"
    nofile=$(ulimit -Hn)
    if [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ]; then nofile=20000; fi
    nproc=$(ulimit -Hu)
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; then nproc=4096; fi
    podman_started=1
    # Every option before --rootfs: podman reads none after it.
    if podman "${podman_args[@]}" run -d --name "$user" --hostname "$user" --network none \
        --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
        --rootfs "$work/rootfs-podman" /bin/sleep infinity </dev/null >/dev/null 2>"$work/podman.log"; then
        engines+=(podman)
        printf '[container]\nbackend = "podman"\npodman_root = "%s"\n' "$engine_state/podman" >"$work/conf-podman.toml"
    else
        echo "bench: podman did not start a container: $(tail -n 3 "$work/podman.log")" >&2
    fi
fi
# machined: a private system bus with systemd-machined on it, and
# systemd-nspawn registering the machine from a cgroup named like a unit
# (--keep-unit; the container goes to <unit>/payload), as a service manager
# would start it.
nspawn_hierarchies() {
    local h
    if [ -e /sys/fs/cgroup/systemd/cgroup.procs ] || [ -e /sys/fs/cgroup/unified/cgroup.procs ]; then
        for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
            if [ -e "$h/cgroup.procs" ]; then echo "$h"; fi
        done
    else
        echo /sys/fs/cgroup
    fi
}
nspawn_payload() { echo "$(nspawn_hierarchies | tail -n 1)/$user.scope/payload"; }
machined=/lib/systemd/systemd-machined
if ! command -v systemd-nspawn >/dev/null || ! command -v dbus-daemon >/dev/null || ! command -v busctl >/dev/null ||
    [ ! -x "$machined" ]; then
    echo "bench: no systemd-nspawn, systemd-machined, dbus-daemon or busctl: the machined row is left out" >&2
else
    note_new /run/systemd /run/systemd/machines /run/systemd/nspawn
    rm -f "/run/systemd/machines/$user" "/run/systemd/machines/unit:$user.scope"
    mkdir -m 0700 "$work/bus"
    bus="unix:path=$work/bus/socket"
    printf '%s\n' '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"' \
        ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">' \
        "<busconfig><type>system</type><listen>$bus</listen><auth>EXTERNAL</auth>" \
        '<policy context="default"><allow user="root"/><allow own="*"/><allow send_destination="*"/>' \
        '<allow receive_sender="*"/></policy></busconfig>' >"$work/bus/bus.conf"
    dbus-daemon --config-file="$work/bus/bus.conf" --nofork --nopidfile </dev/null >/dev/null 2>&1 &
    dbus_pid=$!
    for _ in $(seq 100); do
        [ -S "$work/bus/socket" ] && break
        sleep 0.05
    done
    DBUS_SYSTEM_BUS_ADDRESS=$bus "$machined" </dev/null >/dev/null 2>"$work/machined.log" &
    machined_pid=$!
    for _ in $(seq 100); do
        busctl --address="$bus" list 2>/dev/null | grep -q org.freedesktop.machine1 && break
        sleep 0.05
    done
    cp -a "$root" "$work/rootfs-nspawn"
    nspawn_procs=""
    for h in $(nspawn_hierarchies); do
        mkdir -p "$h/$user.scope"
        nspawn_procs="$nspawn_procs $h/$user.scope/cgroup.procs"
    done
    # shellcheck disable=SC2016 # expanded by the inner shell
    DBUS_SYSTEM_BUS_ADDRESS=$bus CGROUPS=$nspawn_procs /bin/sh -c 'for f in $CGROUPS; do echo $$ >"$f"; done; exec "$@"' \
        sh systemd-nspawn --keep-unit --private-network -q -M "$user" -D "$work/rootfs-nspawn" /bin/sleep infinity \
        </dev/null >/dev/null 2>"$work/nspawn.log" &
    nspawn_pid=$!
    for _ in $(seq 200); do
        grep -q '^LEADER=' "/run/systemd/machines/$user" 2>/dev/null && break
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.05
    done
    # Registered, and the payload runs (nspawn registers its child before
    # that child has set up the container and exec'd).
    leader=$(sed -n 's/^LEADER=//p' "/run/systemd/machines/$user" 2>/dev/null) || leader=""
    for _ in $(seq 200); do
        [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = sleep ] && break
        sleep 0.05
    done
    if [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = sleep ]; then
        engines+=(machined)
        printf '[container]\nbackend = "machined"\n' >"$work/conf-machined.toml"
    else
        echo "bench: systemd-nspawn did not register with machined: $(tail -n 3 "$work/nspawn.log" "$work/machined.log")" >&2
    fi
fi
# The test container's own cgroup (v2), found by the cgroup backend.
cg=$(sed -n 's|^0::/||p' "/proc/$pid/cgroup")
if [ -n "$cg" ]; then
    engines+=(cgroup)
    printf '[container]\nbackend = "cgroup"\ncgroup = "%s"\n' "$cg" >"$work/conf-cgroup.toml"
fi
for e in "${engines[@]}"; do
    [ "$e" = pidfile ] && continue
    mkdir -m 0755 "$work/conf-$e"
    mv "$work/conf-$e.toml" "$work/conf-$e/cagepipe.toml"
    chmod 0644 "$work/conf-$e/cagepipe.toml"
done

# A whole Exim delivery: the user's .forward pipes to /bin/true; one
# private configuration with a plain pipe transport, one with cagepipe's.
home=$(getent passwd "$user" | cut -d: -f6)
printf '|/bin/true\n' >"$home/.forward"
chown "$user:" "$home/.forward"
exim_ids=$(getent passwd Debian-exim | cut -d: -f3,4)
exim_ok=""
if command -v exim4 >/dev/null && [ -n "$exim_ids" ]; then
    for kind in plain cagepipe; do
        mkdir -p "$work/exim-$kind/spool" "$work/exim-$kind/log"
        chown "${exim_ids%%:*}:${exim_ids##*:}" "$work/exim-$kind/spool" "$work/exim-$kind/log"
        if [ "$kind" = plain ]; then
            transport='  driver = pipe\n  return_fail_output\n'
        else
            transport="  driver = pipe\n  force_command\n  command = $work/cagepipe-static --raw-pipe=\$address_pipe\n  group = cagepipe\n  temp_errors = 75:73\n  return_fail_output\n"
        fi
        printf "spool_directory = %s/spool\nlog_file_path = %s/log/%%slog\nprimary_hostname = mail.example.test\ndomainlist local_domains = localhost\nnever_users = root\nkeep_environment =\nbegin routers\nuserforward:\n  driver = redirect\n  domains = +local_domains\n  check_local_user\n  file = \$home/.forward\n  pipe_transport = the_pipe\nbegin transports\nthe_pipe:\n$transport" \
            "$work/exim-$kind" "$work/exim-$kind" >"$work/exim-$kind.conf"
        chmod 0644 "$work/exim-$kind.conf"
    done
    printf 'From: sender@example.org\nTo: %s@localhost\nSubject: bench\n\nbody\n' "$user" >"$work/mail.txt"
    exim_ok=1
else
    echo "bench: no exim4: the whole-delivery rows are left out" >&2
fi

cat >"$work/chain.sh" <<EOF
for f in $procs; do echo \$\$ > "\$f"; done
exec nsenter -t $pid -a -r setpriv --reuid=$uid --regid=$gid --init-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "\$@"
EOF

# cagepipe reads its configuration from /etc/cagepipe: give it the bench one
# in a private mount namespace, and run hyperfine there.
cat >"$work/inner.sh" <<EOF
set -e
mount --bind "$work/conf" /etc/cagepipe
cd "$work"
# In five rounds taking turns, pooled: a disturbance of a few seconds (the
# engines' daemons settling, another job) then falls on every case alike
# instead of on whichever case hyperfine was running.
for round in 1 2 3 4 5; do
    hyperfine -N --warmup 10 --runs $(((runs + 4) / 5)) --export-json "$work/true-\$round.json" \\
        -n a-floor "$work/floor $uid $gid /bin/true" \\
        -n b-cagepipe "$work/floor $uid $cpgid $work/cagepipe --raw-pipe=|/bin/true" \\
        -n b-static "$work/floor $uid $cpgid $work/cagepipe-static --raw-pipe=|/bin/true" \\
        -n c-chain "/bin/sh $work/chain.sh /bin/true" \\
        -n d-wrapper "$work/floor $uid $cpgid $work/wrapper /bin/true" \\
        -n d-static "$work/floor $uid $cpgid $work/wrapper-static /bin/true" \\
        -n f-enter "$work/floor $uid $cpgid $work/enter $enter_args /bin/true" \\
        -n f-static "$work/floor $uid $cpgid $work/enter-static $enter_args /bin/true" $baseline_row >/dev/null
done
# Debian 12's hyperfine has no --input: the message is redirected by the
# shell hyperfine starts, whose own start-up it measures and subtracts.
hyperfine --warmup 30 --runs $runs --export-json "$work/cat.json" \\
    -n a-floor "$work/floor $uid $gid /bin/cat <$work/message.50k" \\
    -n b-cagepipe "$work/floor $uid $cpgid $work/cagepipe '--raw-pipe=|/bin/cat' <$work/message.50k" \\
    -n b-static "$work/floor $uid $cpgid $work/cagepipe-static '--raw-pipe=|/bin/cat' <$work/message.50k" \\
    -n c-chain "/bin/sh $work/chain.sh /bin/cat <$work/message.50k" >/dev/null
# Spaced deliveries (an idle server): cgroup.procs moves wait for an RCU
# grace period then; cagepipe avoids them unless clone_into_cgroup is off.
hyperfine -N --prepare "sleep 0.3" --runs $spaced --export-json "$work/spaced.json" \\
    -n b-cagepipe "$work/floor $uid $cpgid $work/cagepipe --raw-pipe=|/bin/true" \\
    -n c-chain "/bin/sh $work/chain.sh /bin/true" \\
    -n d-wrapper "$work/floor $uid $cpgid $work/wrapper /bin/true" \\
    -n f-enter "$work/floor $uid $cpgid $work/enter $enter_args /bin/true" >/dev/null
# Each engine backend next to the pidfile backend, into the same user's
# containers (the pidfile one is the test container): in five rounds that
# take turns, so that a change of load on a shared machine does not fall
# on one engine's runs. Each engine's container differs (namespaces,
# cgroups), so each engine is also timed through a pidfile naming its own
# container's init (found by cagepipe --dry-run with the engine's
# configuration, in a directory as deep as the pidfile row's): the
# difference between the two is the engine's lookup alone.
for e in ${engines[*]}; do
    [ "\$e" = pidfile ] && continue
    mount --bind "$work/conf-\$e" /etc/cagepipe
    init=\$($work/cagepipe --user $user --dry-run --format json '--raw-pipe=|/bin/true' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target"]["pid"])')
    umount /etc/cagepipe
    mkdir -m 0755 "$work/pids-\$e" "$work/conf-pidfile-\$e"
    echo "\$init" >"$work/pids-\$e/$user.pid"
    printf '[container]\\npidfile = "%s/{user}.pid"\\n' "$work/pids-\$e" >"$work/conf-pidfile-\$e/cagepipe.toml"
    chmod 0644 "$work/pids-\$e/$user.pid" "$work/conf-pidfile-\$e/cagepipe.toml"
done
for round in 1 2 3 4 5; do
    for e in ${engines[*]}; do
        for via in \$e pidfile-\$e; do
            [ "\$via" = pidfile-pidfile ] && continue
            [ "\$via" = pidfile ] || mount --bind "$work/conf-\$via" /etc/cagepipe
            hyperfine -N --warmup 10 --runs $(((runs + 4) / 5)) --export-json "$work/engine-\$via-\$round.json" \\
                -n "\$via" "$work/floor $uid $cpgid $work/cagepipe --raw-pipe=|/bin/true" >/dev/null
            [ "\$via" = pidfile ] || umount /etc/cagepipe
        done
    done
done
# The system calls of one delivery, from cagepipe's exec to the command's
# (and the parent's until it ends).
for b in cagepipe cagepipe-static; do
    strace -f -T -qq -e signal=none -o "$work/strace-\$b" "$work/floor" $uid $cpgid "$work/\$b" "--raw-pipe=|/bin/true"
done
for b in enter enter-static; do
    strace -f -T -qq -e signal=none -o "$work/strace-\$b" "$work/floor" $uid $cpgid "$work/\$b" $enter_args /bin/true
done
# And of one delivery through each engine and through the pidfile naming
# its container: what the lookup costs in calls.
for e in ${engines[*]}; do
    [ "\$e" = pidfile ] && continue
    for via in \$e pidfile-\$e; do
        mount --bind "$work/conf-\$via" /etc/cagepipe
        strace -f -T -qq -e signal=none -o "$work/strace-engine-\$via" "$work/floor" $uid $cpgid "$work/cagepipe-static" "--raw-pipe=|/bin/true"
        umount /etc/cagepipe
    done
done
if [ -n "$exim_ok" ]; then
    # -odi re-executes Exim for the delivery, which keeps its privilege
    # under -C only for a configuration in Exim's trusted list.
    mkdir "$work/etc-exim4"
    cp -a /etc/exim4/. "$work/etc-exim4/"
    printf '%s\n' "$work/exim-plain.conf" "$work/exim-cagepipe.conf" >"$work/etc-exim4/trusted_configs"
    chmod 0644 "$work/etc-exim4/trusted_configs"
    mount --bind "$work/etc-exim4" /etc/exim4
    # Plain and cagepipe take turns, three rounds, as the engines do.
    for round in 1 2 3; do
        for kind in plain cagepipe; do
            hyperfine --warmup 5 --runs $(((exim_runs + 2) / 3)) --export-json "$work/exim-\$kind-\$round.json" \\
                -n "e-\$kind" "exim4 -C $work/exim-\$kind.conf -odi -oi -f sender@example.org $user@localhost <$work/mail.txt" >/dev/null
            hyperfine --prepare "sleep 0.3" --runs $(((spaced + 2) / 3)) --export-json "$work/exim-\$kind-spaced-\$round.json" \\
                -n "e-\$kind" "exim4 -C $work/exim-\$kind.conf -odi -oi -f sender@example.org $user@localhost <$work/mail.txt" >/dev/null
        done
    done
    for kind in plain cagepipe; do
        echo "\$kind \$(grep -c ' => ' "$work/exim-\$kind/log/mainlog") delivered, \$(grep -c ' [*=][*=] ' "$work/exim-\$kind/log/mainlog") failed or deferred"
    done >"$work/exim-delivered"
    umount /etc/exim4
fi
mount --bind "$work/conf-legacy" /etc/cagepipe
hyperfine -N --prepare "sleep 0.3" --runs $spaced --export-json "$work/spaced-legacy.json" \\
    -n b-cagepipe-cgroup.procs "$work/floor $uid $cpgid $work/cagepipe --raw-pipe=|/bin/true" >/dev/null
# An account [rollout] does not contain yet: on the host, plus the look
# into its container for the syslog line's if_contained=.
mount --bind "$work/conf-rollout" /etc/cagepipe
hyperfine -N --warmup 30 --runs $runs --export-json "$work/rollout.json" \\
    -n a-floor "$work/floor $uid $gid /bin/true" \\
    -n b-uncontained "$work/floor $uid $cpgid $work/cagepipe --raw-pipe=|/bin/true" >/dev/null
umount /etc/cagepipe
for b in cagepipe cagepipe-static; do
    for i in \$(seq 20); do
        /usr/bin/time -f %M "$work/floor" $uid $cpgid "$work/\$b" "--raw-pipe=|/bin/true" 2>&1 >/dev/null
    done | sort -n | tail -1 >"$work/rss-\$b"
done
EOF
mkdir -p /etc/cagepipe
unshare --mount --propagation private /bin/sh "$work/inner.sh"

python3 - "$work" "$runs" "$spaced" "$exim_runs" "${engines[*]}" <<'EOF'
import json, os, sys, statistics
work, runs, spaced, exim_runs, engines = sys.argv[1:6]
def stats(*paths):
    # Each case's times pooled over the rounds (files) given.
    times, cpus, out = {}, {}, {}
    for path in paths:
        for r in json.load(open(path))["results"]:
            times.setdefault(r["command"], []).extend(r["times"])
            cpus.setdefault(r["command"], []).append(r["user"] + r["system"])
    for case, t in times.items():
        t.sort()
        out[case] = (statistics.median(t) * 1e3, t[min(len(t) - 1, int(len(t) * 0.99))] * 1e3)
        cpu[case] = statistics.mean(cpus[case]) * 1e3
    return out
# CPU time (user + system, mean, the process and all it waited for): less
# at the mercy of other jobs on a shared machine than the wall-clock time.
cpu = {}
print(f"Linux {os.uname().release}, load average before the report {' '.join(open('/proc/loadavg').read().split()[:3])}")
print(f"runs per case: {runs} back to back, {spaced} spaced 0.3 s apart, {exim_runs} Exim deliveries")
print(f"{'payload':<12} {'case':<12} {'median ms':>10} {'p99 ms':>8} {'CPU ms':>8}")
for label, paths in (("/bin/true", [f"true-{r}.json" for r in range(1, 6)]), ("cat 50 KB", ["cat.json"])):
    s = stats(*(f"{work}/{p}" for p in paths))
    for case, (med, p99) in s.items():
        print(f"{label:<12} {case:<12} {med:>10.2f} {p99:>8.2f} {cpu[case]:>8.2f}")
    a, b, bs, c = (s[k][0] for k in ("a-floor", "b-cagepipe", "b-static", "c-chain"))
    print(f"{label:<12} b/a = {b / a:.2f}   c/b = {c / b:.2f}   static: b/a = {bs / a:.2f}   c/b = {c / bs:.2f}")
    if "d-wrapper" in s:
        d, ds = s["d-wrapper"][0], s["d-static"][0]
        print(f"{label:<12} b/d = {b / d:.2f}   static: b/d = {bs / ds:.2f}   "
              f"CPU: b/d = {cpu['b-cagepipe'] / cpu['d-wrapper']:.2f}   static: b/d = {cpu['b-static'] / cpu['d-static']:.2f}")
    if "f-enter" in s:
        d, ds, f, fs = s["d-wrapper"][0], s["d-static"][0], s["f-enter"][0], s["f-static"][0]
        print(f"{label:<12} f/d = {f / d:.2f}   b/f = {b / f:.2f}   static: f/d = {fs / ds:.2f}   b/f = {bs / fs:.2f}   "
              f"CPU static: f/d = {cpu['f-static'] / cpu['d-static']:.2f}   b/f = {cpu['b-static'] / cpu['f-static']:.2f}")
for path in ("spaced.json", "spaced-legacy.json"):
    sp = stats(f"{work}/{path}")
    for case, (med, p99) in sp.items():
        print(f"{'spaced 0.3s':<12} {case:<24} {med:>6.2f} {p99:>8.2f}")
    if "d-wrapper" in sp:
        print(f"{'spaced 0.3s':<12} b/d = {sp['b-cagepipe'][0] / sp['d-wrapper'][0]:.2f}", end="")
        if "f-enter" in sp:
            print(f"   f/d = {sp['f-enter'][0] / sp['d-wrapper'][0]:.2f}   b/f = {sp['b-cagepipe'][0] / sp['f-enter'][0]:.2f}", end="")
        print()
s = stats(f"{work}/rollout.json")
for case, (med, p99) in s.items():
    print(f"{'rollout':<12} {case:<24} {med:>6.2f} {p99:>8.2f}")
print(f"{'rollout':<12} uncontained/floor = {s['b-uncontained'][0] / s['a-floor'][0]:.2f}")
def pooled(paths, name):
    t = sorted(x for p in paths for r in json.load(open(p))["results"] for x in r["times"])
    return statistics.median(t) * 1e3, t[min(len(t) - 1, int(len(t) * 0.99))] * 1e3
def pooled_cpu(paths):
    # hyperfine's user and system times are means per run of each round.
    rs = [r for p in paths for r in json.load(open(p))["results"]]
    return statistics.mean(r["user"] + r["system"] for r in rs) * 1e3
def engine_row(via):
    paths = [f"{work}/engine-{via}-{r}.json" for r in range(1, 6)]
    return pooled(paths, via) + (pooled_cpu(paths),)
base = engine_row("pidfile")
for e in engines.split():
    med, p99, cpu_e = engine_row(e)
    line = f"{'engine':<12} {e:<24} {med:>6.2f} {p99:>8.2f}   CPU {cpu_e:.2f}"
    if e != "pidfile":
        pm, _, pc = engine_row(f"pidfile-{e}")
        line += (f"   {med - base[0]:+.2f} ms against the test container's pidfile;"
                 f" against a pidfile naming this container: {med - pm:+.2f} ms (CPU {cpu_e - pc:+.2f})")
    print(line)
if os.path.exists(f"{work}/exim-plain-1.json"):
    for suffix, label in (("", "exim"), ("-spaced", "exim spaced")):
        p = pooled([f"{work}/exim-plain{suffix}-{r}.json" for r in (1, 2, 3)], "e-plain")
        c = pooled([f"{work}/exim-cagepipe{suffix}-{r}.json" for r in (1, 2, 3)], "e-cagepipe")
        print(f"{label:<12} {'e-plain':<24} {p[0]:>6.2f} {p[1]:>8.2f}")
        print(f"{label:<12} {'e-cagepipe':<24} {c[0]:>6.2f} {c[1]:>8.2f}   e(cagepipe)/e(plain) = {c[0] / p[0]:.2f}")
    print("exim main logs: " + "; ".join(open(f"{work}/exim-delivered").read().split("\n")).strip("; "))
def syscalls(path, binary):
    # From cagepipe's exec: its own calls to the end, its child's until the
    # command's exec. Also the time strace saw in each kind of call (-T)
    # until the command's exec, the parent's waiting for it left out
    # (strace slows every call: only the ranking means something).
    parent = child = None
    n = 0
    spent = {}
    def note(pid, name, rest):
        if child == "done" or (pid == parent and child is not None and not name.startswith("clone")):
            return
        t = rest.rstrip()
        if t.endswith(">") and "<" in t:
            try:
                spent[name] = spent.get(name, 0.0) + float(t.rsplit("<", 1)[1][:-1])
            except ValueError:
                pass
    for line in open(path):
        pid, _, rest = line.partition(" ")
        rest = rest.lstrip()
        if parent is None:
            if rest.startswith(f'execve("{binary}"'):
                parent = pid
            continue
        if rest.startswith("<..."):
            name = rest[4:].split()[0]
            if pid in (parent, child):
                note(pid, name, rest)
            continue
        if rest.startswith(("+++", "---")):
            continue
        name = rest.split("(", 1)[0]
        if pid == parent:
            n += 1
            note(pid, name, rest)
            if child is None and rest.startswith(("clone", "fork")) and "= " in rest:
                r = rest.rsplit("= ", 1)[1].split()[0]
                if r.isdigit():
                    child = r
        elif child is None or pid == child:
            child = pid
            if rest.startswith("execve(") and '"/bin/true"' in rest:
                child = "done"
                continue
            n += 1
            note(pid, name, rest)
    return n, spent
for b in ("cagepipe", "cagepipe-static", "enter", "enter-static"):
    n, spent = syscalls(f"{work}/strace-{b}", f"{work}/{b}")
    top = sorted(spent.items(), key=lambda kv: -kv[1])[:8]
    what = " (f, the kernel floor of entering)" if b.startswith("enter") else ""
    print(f"system calls of one delivery ({b}){what}: {n}; most time under strace: "
          + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in top))
for e in engines.split():
    if e == "pidfile":
        continue
    n, _ = syscalls(f"{work}/strace-engine-{e}", f"{work}/cagepipe-static")
    m, _ = syscalls(f"{work}/strace-engine-pidfile-{e}", f"{work}/cagepipe-static")
    print(f"system calls of one delivery through {e} (static): {n}, {n - m:+d} against a pidfile naming its container")
for b in ("cagepipe", "cagepipe-static"):
    rss = open(f"{work}/rss-{b}").read().strip()
    print(f"peak RSS ({b}): {int(rss) / 1024:.2f} MB ({rss} KB, max of 20 deliveries)")
EOF