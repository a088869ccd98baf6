#!/usr/bin/env bash
# The Docker backend's name -> id scan: Docker keeps a container's name only
# in /var/lib/docker/containers/<id>/config.v2.json, so cagepipe reads those
# files until one names the account's container. This times deliveries for
# an account whose container does not exist (every file is read: the worst
# case) with 0, 10, 100 and 1000 fake containers in a private, root-owned
# Docker root (`docker_root`), run the way Exim runs cagepipe (the release
# build with its file capabilities, as an unprivileged caller), and prints
# the median time per delivery and what each container adds.
#
# Run as root: bench/docker-scan.sh [RUNS]   (needs hyperfine; installs it)
# Touches nothing of a real Docker: its own root in /var/lib, its own
# account, both removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
for tool in hyperfine:hyperfine setcap:libcap2-bin jq:jq; do
    command -v "${tool%%:*}" >/dev/null || apt-get install -y --no-install-recommends "${tool#*:}" >/dev/null
done
cargo build --release --quiet --bin cagepipe

# /var/lib, like Docker's own root (a disk file system, not tmpfs); every
# directory above it is root's and not writable by others, as cagepipe
# demands of engine state.
work=$(mktemp -d /var/lib/cagepipe-bench-docker.XXXXXX)
chmod 0755 "$work"
user=cpbench-docker
created_user=""
cleanup() {
    rm -rf "$work"
    if [ -n "$created_user" ]; then userdel --remove "$created_user" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
getent group cagepipe >/dev/null || groupadd --system cagepipe
if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$user"
    created_user=$user
fi
uid=$(id -u "$user")
cpgid=$(getent group cagepipe | cut -d: -f3)
install -o root -g cagepipe -m 0750 target/release/cagepipe "$work/cagepipe"
setcap "$(cat packaging/file-caps)" "$work/cagepipe"
install -d -o "$user" -m 0755 "$work/out"

# A config.v2.json shaped like Docker 20.10's for a small container (about
# 4 KB; the name sits near the end, as Docker writes it).
config_json() { # config_json ID NAME
    local id=$1 name=$2
    cat <<EOF
{"StreamConfig":{},"State":{"Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"RemovalInProgress":false,"Dead":false,"Pid":$((RANDOM + 1000)),"ExitCode":0,"Error":"","StartedAt":"2026-12-02T10:00:00.123456789Z","FinishedAt":"0001-01-01T00:00:00Z","Health":null},"ID":"$id","Created":"2026-12-02T09:59:59.987654321Z","Managed":false,"Path":"/usr/sbin/php-fpm","Args":["--nodaemonize","--fpm-config","/etc/php/8.2/fpm/php-fpm.conf"],"Config":{"Hostname":"${id:0:12}","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"ExposedPorts":{"9000/tcp":{}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","PHP_INI_DIR=/usr/local/etc/php","PHP_VERSION=8.2.13","PHP_URL=https://www.php.net/distributions/php-8.2.13.tar.xz","PHP_SHA256=2629bba10117bf78e068d2c65da4b3a7b3f1cd3b6f3c3c3f3a8d1f0e0c0b0a09","HOME=/home/$name","CUSTOMER=$name"],"Cmd":["php-fpm"],"Image":"hosting/php:8.2","Volumes":{"/home/$name":{}},"WorkingDir":"/home/$name","Entrypoint":["docker-php-entrypoint"],"OnBuild":null,"Labels":{"com.example.customer":"$name","com.example.plan":"standard","maintainer":"hosting team"},"StopSignal":"SIGQUIT"},"Image":"sha256:4f0b3c8a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f00","ImageManifest":null,"NetworkSettings":{"Bridge":"","SandboxID":"9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b","HairpinMode":false,"LinkLocalIPv6Address":"","LinkLocalIPv6PrefixLen":0,"Networks":{"bridge":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c","EndpointID":"2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d","Gateway":"172.17.0.1","IPAddress":"172.17.0.2","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"02:42:ac:11:00:02","DriverOpts":null,"IPAMOperational":false}},"Service":null,"Ports":{"9000/tcp":null},"SandboxKey":"/var/run/docker/netns/9a8b7c6d5e4f","SecondaryIPAddresses":null,"SecondaryIPv6Addresses":null,"IsAnonymousEndpoint":false,"HasSwarmEndpoint":false},"LogPath":"/var/lib/docker/containers/$id/$id-json.log","Name":"/$name","Driver":"overlay2","OS":"linux","MountLabel":"","ProcessLabel":"","RestartCount":0,"HasBeenStartedBefore":true,"HasBeenManuallyStopped":false,"MountPoints":{"/home/$name":{"Source":"/home/$name","Destination":"/home/$name","RW":true,"Name":"","Driver":"","Type":"bind","Propagation":"rprivate","Spec":{"Type":"bind","Source":"/home/$name","Target":"/home/$name"},"SkipMountpointCreation":false}},"SecretReferences":null,"ConfigReferences":null,"AppArmorProfile":"docker-default","HostnamePath":"/var/lib/docker/containers/$id/hostname","HostsPath":"/var/lib/docker/containers/$id/hosts","ShmPath":"/var/lib/docker/containers/$id/mounts/shm","ResolvConfPath":"/var/lib/docker/containers/$id/resolv.conf","SeccompProfile":"","NoNewPrivileges":false,"LocalLogCacheMeta":{"HaveNotifyEnabled":false}}
EOF
}

counts=(0 10 100 1000)
for n in "${counts[@]}"; do
    root=$work/docker-$n
    install -d -m 0710 "$root" "$root/containers"
    for ((i = 0; i < n; i++)); do
        id=$(printf '%064x' $((i * 7919 + 104729)))
        install -d -m 0710 "$root/containers/$id"
        # Another customer's container each: the account has none.
        config_json "$id" "customer$i" >"$root/containers/$id/config.v2.json"
        chmod 0600 "$root/containers/$id/config.v2.json"
    done
    install -d -m 0755 "$work/conf-$n"
    printf '[container]\nbackend = "docker"\nname = "{user}"\ndocker_root = "%s"\n' "$root" >"$work/conf-$n/cagepipe.toml"
    chmod 0644 "$work/conf-$n/cagepipe.toml"
done
printf 'config.v2.json: %s bytes each\n' "$(wc -c <"$work/docker-10/containers/$(ls "$work/docker-10/containers" | head -1)/config.v2.json")"

# One private mount namespace per count, its configuration bound over
# /etc/cagepipe; hyperfine runs in it as the account (group cagepipe, as
# Exim's transport runs it) and starts cagepipe without a shell. Every
# delivery exits 75 (no container named after the account) after the scan.
for n in "${counts[@]}"; do
    unshare --mount --propagation private -- /bin/sh -ec '
        mount --bind "$1" /etc/cagepipe
        cd /
        exec setpriv --reuid="$2" --regid="$3" --clear-groups -- \
            hyperfine -N --ignore-failure --warmup 30 --runs "$4" --style none --export-json "$5" "$6 -- /bin/true"
    ' sh "$work/conf-$n" "$uid" "$cpgid" "$runs" "$work/out/$n.json" "$work/cagepipe" >/dev/null
    # The delivery really looked for a Docker container (and found none).
    out=$(unshare --mount --propagation private -- /bin/sh -c '
        mount --bind "$1" /etc/cagepipe && cd / &&
        exec setpriv --reuid="$2" --regid="$3" --clear-groups -- "$4" -- /bin/true
    ' sh "$work/conf-$n" "$uid" "$cpgid" "$work/cagepipe" 2>&1) && status=0 || status=$?
    [ "$status" = 75 ] && grep -q 'docker has no container named' <<<"$out" ||
        { echo "bench: unexpected delivery with $n containers (exit $status): $out" >&2; exit 1; }
done

printf '\n%s, kernel %s, %s runs each; a delivery for an account with no container (every config.v2.json read)\n' \
    "$(date -u +%Y-%m-%d)" "$(uname -r)" "$runs"
printf '%12s %12s %12s %16s\n' containers 'median ms' 'p99 ms' 'per container us'
base=$(jq '.results[0].median' "$work/out/0.json")
for n in "${counts[@]}"; do
    median=$(jq '.results[0].median' "$work/out/$n.json")
    p99=$(jq '.results[0].times | sort | .[(length * 99 / 100 | floor)]' "$work/out/$n.json")
    per=$(jq -rn --argjson m "$median" --argjson b "$base" --argjson n "$n" 'if $n == 0 then "-" else (($m - $b) / $n * 1e6 | . * 10 | round / 10) end')
    printf '%12s %12.3f %12.3f %16s\n' "$n" "$(jq -n "$median * 1000")" "$(jq -n "$p99 * 1000")" "$per"
done
