#!/bin/sh
# Build the compute-bridge VM guest from Debian packages:
#   OUTDIR/vmlinuz         Debian cloud kernel (linux-image-*-cloud-amd64)
#   OUTDIR/initrd.img      busybox + dropbear + virtio/fw_cfg modules + init
#   OUTDIR/kernel-version  e.g. 6.1.0-57-cloud-amd64
#   OUTDIR/stamp           what it was built from (a rerun with the same
#                          inputs does nothing)
#
# Needs (installed by apt, as CI does): busybox-static, dropbear-bin, cpio,
# gzip, and apt-get/dpkg-deb for the kernel package. Needs no root: the
# kernel package is fetched with `apt-get download` (no install) and
# unpacked with `dpkg-deb -x`; cpio records every file as owned by root.
#
# Env: CB_GUEST_KERNEL_PKG  kernel package (default: what the
#                           linux-image-cloud-amd64 meta-package depends on)
#      CB_GUEST_INIT        init script (default: guest-init beside this file)
set -eu
LC_ALL=C
export LC_ALL

[ $# -eq 1 ] || {
	echo "usage: $0 OUTDIR" >&2
	exit 2
}
out=$1
here=$(cd "$(dirname "$0")" && pwd)
init=${CB_GUEST_INIT:-$here/guest-init}
need() {
	command -v "$1" >/dev/null 2>&1 || {
		echo "build-guest: $1 is missing: apt-get install -y $2" >&2
		exit 1
	}
}
need apt-get apt
need dpkg-deb dpkg
need cpio cpio
need gzip gzip
[ -x /bin/busybox ] || {
	echo "build-guest: /bin/busybox is missing: apt-get install -y busybox-static" >&2
	exit 1
}
need dropbear dropbear-bin
need dropbearconvert dropbear-bin
need dropbearkey dropbear-bin
[ -r "$init" ] || {
	echo "build-guest: no init script at $init" >&2
	exit 1
}

pkg=${CB_GUEST_KERNEL_PKG:-$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')}
[ -n "$pkg" ] || {
	echo "build-guest: cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2
	exit 1
}
kver_pkg=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
stamp="kernel=$pkg=$kver_pkg
init=$(sha256sum <"$init" | cut -d' ' -f1)
busybox=$(sha256sum </bin/busybox | cut -d' ' -f1)
dropbear=$(sha256sum <"$(command -v dropbear)" | cut -d' ' -f1)
script=$(sha256sum <"$0" | cut -d' ' -f1)"
if [ -f "$out/stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] &&
	[ "$(cat "$out/stamp")" = "$stamp" ]; then
	echo "build-guest: $out is up to date ($pkg)"
	exit 0
fi

mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cb-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# The kernel and its modules, without installing the package.
(cd "$tmp" && apt-get download "$pkg" >/dev/null 2>"$tmp/apt.err") || {
	cat "$tmp/apt.err" >&2
	exit 1
}
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/k"
kver=$(ls "$tmp/k/lib/modules")
[ -f "$tmp/k/boot/vmlinuz-$kver" ] || {
	echo "build-guest: $pkg has no boot/vmlinuz-$kver" >&2
	exit 1
}
# The package ships no modules.dep (depmod runs at install): make one.
/bin/busybox depmod -b "$tmp/k" "$kver"

r=$tmp/root
mkdir -p "$r/bin" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/tmp" "$r/root" "$r/home" "$r/var/log"
ln -s bin "$r/sbin"
ln -s ../run "$r/var/run"
cp /bin/busybox "$r/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
done
install -m 755 "$init" "$r/init"

# dropbear, dropbearconvert and dropbearkey with the libraries ldd lists.
for b in "$(command -v dropbear)" "$(command -v dropbearconvert)" "$(command -v dropbearkey)"; do
	cp "$b" "$r/bin/"
	ldd "$b" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
done
# Debian's /lib64 is a real directory: the dynamic loader path must resolve.
[ -e "$r/lib64/ld-linux-x86-64.so.2" ] || {
	echo "build-guest: the dynamic loader was not copied" >&2
	exit 1
}

# Modules init loads, with what modules.dep says they need. A module the
# kernel has built in (modules.builtin) needs nothing; tdx_guest (the TD
# guest's /dev/tdx_guest, for TDREPORTs) is taken when the kernel has it.
md=$tmp/k/lib/modules/$kver
for m in qemu_fw_cfg virtio_pci virtio_net virtio_blk button evdev tdx_guest; do
	# Files may spell the name with '-' (tdx-guest.ko) and be compressed.
	re=$(echo "$m" | sed 's/_/[-_]/g')
	if line=$(grep -E "/$re\.ko(\.[a-z]+)?:" "$md/modules.dep"); then
		for f in $(echo "$line" | tr -d ':'); do
			mkdir -p "$r/lib/modules/$kver/$(dirname "$f")"
			cp "$md/$f" "$r/lib/modules/$kver/$f"
		done
	elif grep -qE "/$re\.ko$" "$md/modules.builtin" 2>/dev/null; then
		:
	elif [ "$m" != tdx_guest ]; then
		echo "build-guest: $pkg has no module $m, built in or not" >&2
		exit 1
	fi
done
cp "$md/modules.builtin" "$r/lib/modules/$kver/" 2>/dev/null || true
/bin/busybox depmod -b "$r" "$kver"

# Reproducible: fixed mtimes, inode numbers and gzip header, so the same
# inputs give the same bytes (a TD guest's initrd is measured, RTMR[2]).
find "$r" -exec touch -h -d @0 {} +
(cd "$r" && find . | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -6 -n >"$tmp/initrd.img"
cp "$tmp/k/boot/vmlinuz-$kver" "$tmp/vmlinuz"
# Replace the outputs only when all of them are ready.
mv -f "$tmp/vmlinuz" "$out/vmlinuz"
mv -f "$tmp/initrd.img" "$out/initrd.img"
echo "$kver" >"$out/kernel-version"
printf '%s\n' "$stamp" >"$out/stamp"
echo "build-guest: $out: vmlinuz-$kver ($(du -k "$out/vmlinuz" | cut -f1) KiB), initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB)"
