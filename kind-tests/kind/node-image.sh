#!/usr/bin/env bash
# Assembles a kind node image for this project's TEST ENVIRONMENT, where no
# registry can be reached: kind's own node image cannot be pulled, and `kind build
# node-image` needs kind's base image and a registry for the control plane. It is
# made from what the real-node lab runs (make deps builds it):
#   - a Debian 12 root file system made with debootstrap: systemd, and containerd
#     and runc from Debian's packages, as the lab's nodes have them;
#   - kubelet, kubeadm and kubectl built from Go modules ($WIREMESH_CACHE/bin), and
#     the reference CNI plugins kind's image carries (loopback, host-local, portmap);
#   - the control-plane images hack/build-images.sh builds (kube-apiserver,
#     kube-controller-manager, kube-scheduler, kube-proxy, etcd, pause, CoreDNS),
#     imported into the node's containerd store (not unpacked: the CRI plugin
#     unpacks an image when a container first needs it), as kind's own build does;
#   - kind's node files (its entrypoint, systemd units, kubelet drop-ins, scripts)
#     from the kind module Go downloaded, and /kind/version.
# What differs from kind's own image, for this machine only, and why:
#   - containerd runs runc through the lab's runc shim and keeps oom_score_adj at
#     or above its own: root here lacks CAP_SYS_RESOURCE (see lab/runc-shim);
#   - the node's /proc/sys is read-only but for net/ (per network namespace), and
#     the host-wide settings the kubelet writes at start (vm.overcommit_memory,
#     kernel.panic, ...) are files of the node's own: a node never changes the
#     machine's settings. Debian's own sysctl.d defaults (host-wide) are left out;
#   - net.ipv4.ip_forward=1 in the node's own network namespace: a new namespace
#     takes the host's setting, which is on where Docker runs (Docker turns it on)
#     and off here (this daemon must not touch it), and a node that routes pods
#     needs it, as kubeadm's preflight checks (kind skips that check);
#   - nothing in it for names: a node resolves through Docker's embedded resolver
#     as on any kind cluster (kind's kubeconfigs name the control plane by its
#     container name, which only that resolver knows), and the test environment's
#     daemon sends every other name to an address nobody answers (dockerd.sh --dns),
#     so no name is ever looked up outside the machine.
#
# The result is a Docker image (in the test environment's own daemon, see
# dockerd.sh) tagged wiremesh-kind-node:KUBEVERSION-KEY, KEY a hash of every input:
# the package list, this script, kind's node files, the binaries' and images'
# build stamps. An image with that tag is reused, so a warm run costs a second;
# the debootstrap root file system is kept as a tarball under
# $WIREMESH_CACHE/kind, keyed by its package list. Prints the image's tag.
#
# Usage: kind-tests/kind/node-image.sh   (root; DOCKER_HOST set; kind installed by kind-env.sh)
set -euo pipefail
umask 022

cache="${WIREMESH_CACHE:-${HOME}/.cache/wiremesh}"
bin="$cache/bin"
kcache="$cache/kind"
work="$kcache/work"
run="${WIREMESH_KIND_RUN:-/run/wiremesh-kind}"
mirror="${WIREMESH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
# What kind's base image installs (images/base/Dockerfile) but for the storage and
# fuse tools, containerd and runc from Debian instead of kind's own builds (bash,
# mount and util-linux are in every Debian system).
packages=(systemd containerd runc iptables nftables iproute2 conntrack ethtool kmod libseccomp2
  ca-certificates procps)

say() { echo "kind-node-image: $*" >&2; }
die() { say "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, device files in the root file system)"
[[ -n "${DOCKER_HOST:-}" ]] || die "DOCKER_HOST is not set (kind-tests/kind/dockerd.sh start)"
for tool in debootstrap docker containerd ctr go; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH (kind-tests/kind/kind-env.sh deps installs it)"
done
for tool in kubelet kubeadm kubectl wiremesh-runc-shim cni-plugins/loopback cni-plugins/host-local cni-plugins/portmap; do
  [[ -x "$bin/$tool" ]] || die "$bin/$tool is missing: run make deps"
done
images_txt="$cache/images/images.txt"
[[ -f "$images_txt" ]] || die "$images_txt is missing: run make deps"

kind_version="$(cat "$kcache/kind.version" 2>/dev/null)" || die "kind is not installed (kind-env.sh deps)"
kind_files="$(go env GOMODCACHE)/sigs.k8s.io/kind@$kind_version/images/base/files"
[[ -f "$kind_files/usr/local/bin/entrypoint" ]] || die "kind's node files are missing at $kind_files"
k8s_version="$("$bin/kubelet" --version | awk '{print $2}')"
[[ "$k8s_version" == v1.* ]] || die "cannot read the kubelet's version"

# The control-plane images: every image the lab imports but its own two (the
# wiremesh and probe images are loaded with `kind load`, as a user does).
mapfile -t control_plane < <(awk '$1 ~ /^registry\.k8s\.io\// {print $1 " " $2}' "$images_txt")
((${#control_plane[@]} >= 7)) || die "$images_txt lists ${#control_plane[@]} control-plane images, not 7"

mkdir -p "$kcache" "$work" "$run"
exec 9>"$kcache/lock"
flock 9

# --- the root file system (debootstrap), cached by its package list ------------
rootfs_key="$(printf '%s\n' "$suite" "$mirror" "${packages[@]}" | sha256sum | cut -c1-16)"
rootfs_tar="$kcache/rootfs-$rootfs_key.tar"
# debootstrap mounts /proc and /sys inside the tree while it installs: a tree left by
# a failed run is unmounted before anything removes it.
unmount_under() {
  local m
  { findmnt -rno TARGET || true; } | { grep -F "$1/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
}
if [[ ! -f "$rootfs_tar" ]]; then
  say "debootstrap $suite (${packages[*]}) ..."
  start=$SECONDS
  unmount_under "$work/rootfs"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include="$(
    IFS=,
    echo "${packages[*]}"
  )" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { unmount_under "$work/rootfs"; tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  unmount_under "$work/rootfs"
  # Package lists and downloaded packages are no part of a node.
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  rm -f "$kcache"/rootfs-*.tar
  tar --numeric-owner -C "$work/rootfs" -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$work/rootfs"
  say "debootstrap done in $((SECONDS - start)) s"
fi

# --- the node image, keyed by every input ---------------------------------------
stamp_of() { cat "$cache/stamps/$1" 2>/dev/null || stat -L -c '%s %Y' "$bin/$1"; }
key="$(
  {
    echo "$rootfs_key $kind_version $k8s_version"
    sha256sum "${BASH_SOURCE[0]}"
    (cd "$kind_files" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    for t in kubelet kubeadm kubectl wiremesh-runc-shim cni-plugins; do echo "$t $(stamp_of "$t")"; done
    for line in "${control_plane[@]}"; do
      read -r ref file <<<"$line"
      echo "$ref $(stat -L -c '%s %Y' "$file")"
    done
  } | sha256sum | cut -c1-12
)"
tag="wiremesh-kind-node:$k8s_version-$key"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

say "assembling $tag ..."
start=$SECONDS
stage="$work/node"
rm -rf "$stage"
mkdir -p "$stage"
tar --numeric-owner -C "$stage" -xf "$rootfs_tar"

# kind's node files, laid out as kind's base Dockerfile copies them.
install -m 755 "$kind_files"/usr/local/bin/* "$stage/usr/local/bin/"
mkdir -p "$stage/kind/bin" "$stage/etc/systemd/system/kubelet.service.d" "$stage/etc/sysctl.d" "$stage/etc/default"
install -m 644 "$kind_files/kind/README.txt" "$stage/kind/"
install -m 755 "$kind_files"/kind/bin/* "$stage/kind/bin/"
install -m 644 "$kind_files/etc/crictl.yaml" "$stage/etc/"
install -m 644 "$kind_files"/etc/sysctl.d/* "$stage/etc/sysctl.d/"
install -m 644 "$kind_files"/etc/systemd/system/*.service "$kind_files"/etc/systemd/system/*.slice "$stage/etc/systemd/system/"
install -m 644 "$kind_files"/etc/systemd/system/kubelet.service.d/* "$stage/etc/systemd/system/kubelet.service.d/"
# kind's units start containerd from /usr/local/bin (its own build); Debian's is in /usr/bin.
ln -sf /usr/bin/containerd "$stage/usr/local/bin/containerd"

# What kind's Dockerfile does to systemd: no units but its own, no kmsg, systemd as init.
rm -f "$stage"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service
rm -f "$stage"/lib/systemd/system/multi-user.target.wants/* "$stage"/etc/systemd/system/*.wants/*
rm -f "$stage"/lib/systemd/system/local-fs.target.wants/* "$stage"/lib/systemd/system/basic.target.wants/*
rm -f "$stage"/lib/systemd/system/sockets.target.wants/*udev* "$stage"/lib/systemd/system/sockets.target.wants/*initctl*
echo "ReadKMsg=no" >>"$stage/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "$stage/sbin/init"
mkdir -p "$stage/etc/systemd/system/multi-user.target.wants"
for unit in kubelet containerd undo-mount-hacks; do
  ln -sf "/etc/systemd/system/$unit.service" "$stage/etc/systemd/system/multi-user.target.wants/$unit.service"
done
ln -sf /dev/null "$stage/etc/systemd/system/systemd-binfmt.service"
mkdir -p "$stage/etc/kubernetes/manifests"
# Debian's defaults for host-wide settings (kernel.pid_max, kernel.sysrq, fs.protected_*).
rm -f "$stage"/usr/lib/sysctl.d/*.conf

# Kubernetes, as `kind build node-image` places it (kind's kubelet unit runs /usr/bin/kubelet).
for t in kubelet kubeadm kubectl; do install -m 755 "$bin/$t" "$stage/usr/bin/$t"; done
mkdir -p "$stage/opt/cni/bin"
for p in loopback host-local portmap; do install -m 755 "$bin/cni-plugins/$p" "$stage/opt/cni/bin/$p"; done
printf '%s' "$k8s_version" >"$stage/kind/version"

# The test environment's part (see the opening comment).
install -m 755 "$bin/wiremesh-runc-shim" "$stage/usr/local/bin/wiremesh-runc-shim"
cat >"$stage/etc/containerd/config.toml" <<'EOF'
# containerd of a wiremesh TEST kind node (containerd 1.6 from Debian), after kind's
# own config.toml; kind's entrypoint may rewrite the snapshotter line.
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  tolerate_missing_hugepages_controller = true
  # Root on these test machines lacks CAP_SYS_RESOURCE: a container's oom_score_adj
  # stays at or above containerd's own instead of asking the kernel for less.
  restrict_oom_score_adj = true
  disable_apparmor = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
    # The lab's test-only shim in front of runc: it drops CAP_SYS_RESOURCE from
    # privileged containers, which root here cannot grant.
    BinaryName = "/usr/local/bin/wiremesh-runc-shim"
EOF
printf '# wiremesh kind TEST node: this namespace routes pods (see kind-tests/kind/node-image.sh)\nnet.ipv4.ip_forward=1\n' \
  >"$stage/etc/sysctl.d/20-wiremesh-kind-forward.conf"
cat >"$stage/usr/local/bin/wiremesh-kind-entrypoint" <<'EOF'
#!/bin/bash
# wiremesh kind TEST node: keeps the node from changing the machine's settings,
# then runs kind's entrypoint. A privileged container sees the host's /proc/sys;
# the host-wide settings the kubelet writes at start become files of the node's
# own, and the rest of /proc/sys but net/ (per network namespace) turns read-only.
set -o errexit -o nounset -o pipefail
copies=/kind/sysctl
mkdir -p "$copies"
for key in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  [[ -f "/proc/sys/$key" ]] || continue
  cat "/proc/sys/$key" >"$copies/${key//\//.}"
done
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
for copy in "$copies"/*; do
  key="${copy##*/}"
  mount --bind "$copy" "/proc/sys/${key//.//}"
done
exec "$@"
EOF
chmod 755 "$stage/usr/local/bin/wiremesh-kind-entrypoint"

# The control-plane images, into the node's containerd store: a containerd of the
# host's, started here with the node's /var/lib/containerd as its root and stopped
# by its pid once the imports are done.
ctrd_run="$run/import"
rm -rf "$ctrd_run"
mkdir -p "$ctrd_run"
cat >"$ctrd_run/config.toml" <<EOF
version = 2
root = "$stage/var/lib/containerd"
state = "$ctrd_run/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctrd_run/containerd.sock"
EOF
containerd --config "$ctrd_run/config.toml" >"$ctrd_run/containerd.log" 2>&1 &
ctrd_pid=$!
stop_containerd() {
  if [[ -n "${ctrd_pid:-}" ]]; then
    kill -TERM "$ctrd_pid" 2>/dev/null || true
    wait "$ctrd_pid" 2>/dev/null || true
    ctrd_pid=''
  fi
  rm -rf "$ctrd_run"
}
trap stop_containerd EXIT
for ((i = 0; i < 100; i++)); do
  ctr -a "$ctrd_run/containerd.sock" version >/dev/null 2>&1 && break
  kill -0 "$ctrd_pid" 2>/dev/null || { cat "$ctrd_run/containerd.log" >&2; die "containerd for the import exited"; }
  sleep 0.1
done
for line in "${control_plane[@]}"; do
  read -r ref file <<<"$line"
  ctr -a "$ctrd_run/containerd.sock" -n k8s.io images import --all-platforms --no-unpack --digests "$file" >/dev/null ||
    die "importing $ref ($file) failed"
done
imported="$(ctr -a "$ctrd_run/containerd.sock" -n k8s.io images ls -q | grep -c '^registry\.k8s\.io/.*:' || true)"
stop_containerd
trap - EXIT
((imported >= ${#control_plane[@]})) || die "the node's containerd lists $imported images, not ${#control_plane[@]}"

# `docker import` takes no STOPSIGNAL: a one-line build on the imported tree adds
# it (systemd stops on SIGRTMIN+3), with no context and nothing to pull.
tar --numeric-owner -C "$stage" -cf - . | docker import \
  --change 'ENV container=docker' \
  --change 'ENTRYPOINT ["/usr/local/bin/wiremesh-kind-entrypoint", "/usr/local/bin/entrypoint", "/sbin/init"]' \
  - "$tag-rootfs" >/dev/null
rm -rf "$stage"
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$tag-rootfs" | DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >/dev/null 2>"$work/build.log" ||
  { cat "$work/build.log" >&2; die "docker build (STOPSIGNAL) failed"; }
docker rmi "$tag-rootfs" >/dev/null
# Older node images of this test environment go (their volumes went with their clusters).
docker image ls --format '{{.Repository}}:{{.Tag}}' wiremesh-kind-node | grep -vx "$tag" | xargs -r docker rmi >/dev/null 2>&1 || true
say "$tag assembled in $((SECONDS - start)) s"
echo "$tag"
