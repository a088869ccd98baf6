#!/usr/bin/env bash
# The delivery benchmark: in one run on one machine, several hundred
# deliveries of /bin/true and of a 50 KB message to cat, three ways:
#   (a) floor     what Exim does without cagepipe: set gid/uid, exec (no container)
#   (b) cagepipe  the same launcher execs cagepipe, which enters a test container
#                 (the dynamic build, and the static PIE the packages ship)
#   (c) chain     what a sysadmin builds today: a shell joins the cgroups, then
#                 nsenter -t PID -a -r + setpriv with a full privilege drop
# Prints medians and p99, b/a and c/b, and cagepipe's peak RSS.
# Run as root: bench/run.sh [RUNS [SPACED_RUNS]]   (needs hyperfine, GNU time;
# installs them)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-500}
spaced=${2:-40}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
for tool in hyperfine:hyperfine /usr/bin/time:time setcap:libcap2-bin; do
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
cleanup() {
    testbed/container stop "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
    # Only an account this run created (and its home) is removed.
    if [ -n "$created_user" ]; then userdel --remove "$created_user" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

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
if [ -n "$static_bin" ]; then
    install -o root -g cagepipe -m 0750 "$static_bin" "$work/cagepipe-static"
    setcap "$(cat packaging/file-caps)" "$work/cagepipe-static"
else
    cp -a "$work/cagepipe" "$work/cagepipe-static"
    echo "bench: no static build (static C library missing); b-static is the dynamic binary" >&2
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
# The cgroup.procs files of the container's init, for the sysadmin chain.
procs=""
while IFS=: read -r id ctl path; do
    if [ "$id" = 0 ]; then
        mnt=$(awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo)
    else
        first=${ctl%%,*}
        mnt=$(awk -v c="$first" '$0 ~ / - cgroup / { n=split($NF, o, ","); for (i=1;i<=n;i++) if (o[i]==c) {print $5; exit} }' /proc/self/mountinfo)
    fi
    [ -n "$mnt" ] && procs="$procs $mnt$path/cgroup.procs"
done <"/proc/$pid/cgroup"

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
hyperfine -N --warmup 30 --runs $runs --export-json "$work/true.json" \\
    -n a-floor "$work/floor $uid $gid /bin/true" \\
    -n b-cagepipe "$work/floor $uid $cpgid $work/cagepipe --raw-pipe=|/bin/true" \\
    -n b-static "$work/floor $uid $cpgid $work/cagepipe-static --raw-pipe=|/bin/true" \\
    -n c-chain "/bin/sh $work/chain.sh /bin/true" >/dev/null
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
    -n c-chain "/bin/sh $work/chain.sh /bin/true" >/dev/null
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
for i in \$(seq 20); do
    /usr/bin/time -f %M "$work/floor" $uid $cpgid "$work/cagepipe" "--raw-pipe=|/bin/true" 2>&1 >/dev/null
done | sort -n | tail -1 >"$work/rss"
EOF
mkdir -p /etc/cagepipe
unshare --mount --propagation private /bin/sh "$work/inner.sh"

python3 - "$work" "$runs" "$spaced" <<'EOF'
import json, sys, statistics
work, runs, spaced = sys.argv[1], sys.argv[2], sys.argv[3]
def stats(path):
    out = {}
    for r in json.load(open(path))["results"]:
        t = sorted(r["times"])
        out[r["command"]] = (statistics.median(t) * 1e3, t[min(len(t) - 1, int(len(t) * 0.99))] * 1e3)
    return out
print(f"runs per case: {runs} back to back, {spaced} spaced 0.3 s apart")
print(f"{'payload':<12} {'case':<12} {'median ms':>10} {'p99 ms':>8}")
for label, path in (("/bin/true", "true.json"), ("cat 50 KB", "cat.json")):
    s = stats(f"{work}/{path}")
    for case, (med, p99) in s.items():
        print(f"{label:<12} {case:<12} {med:>10.2f} {p99:>8.2f}")
    a, b, bs, c = (s[k][0] for k in ("a-floor", "b-cagepipe", "b-static", "c-chain"))
    print(f"{label:<12} b/a = {b / a:.2f}   c/b = {c / b:.2f}   static: b/a = {bs / a:.2f}   c/b = {c / bs:.2f}")
for path in ("spaced.json", "spaced-legacy.json"):
    for case, (med, p99) in stats(f"{work}/{path}").items():
        print(f"{'spaced 0.3s':<12} {case:<24} {med:>6.2f} {p99:>8.2f}")
s = stats(f"{work}/rollout.json")
for case, (med, p99) in s.items():
    print(f"{'rollout':<12} {case:<24} {med:>6.2f} {p99:>8.2f}")
print(f"{'rollout':<12} uncontained/floor = {s['b-uncontained'][0] / s['a-floor'][0]:.2f}")
rss = open(f"{work}/rss").read().strip()
print(f"cagepipe peak RSS: {int(rss) / 1024:.1f} MB ({rss} KB, max of 20 deliveries)")
EOF
