#!/bin/sh
# Run once in the freshly bootstrapped root (chroot): make it boot under QEMU and run the
# checks. Part of the cached root's fingerprint (tests/vm/runner.py).
set -e
echo synfin-vm > /etc/hostname
# debootstrap writes no hosts file: without it "localhost" goes to DNS (Prometheus' target).
printf '127.0.0.1 localhost synfin-vm\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
echo "/dev/vda / ext4 rw 0 1" > /etc/fstab
# QEMU's user network: its DNS (systemd-resolved cannot be debootstrapped here).
echo "nameserver 10.0.2.3" > /etc/resolv.conf
cat > /etc/systemd/network/10-any.network <<'NET'
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
NET
systemctl enable systemd-networkd.service >/dev/null 2>&1 || true
# The share and the disk are modules in Debian's kernels: the initramfs must carry them.
printf '%s\n' 9p 9pnet 9pnet_virtio virtio_pci virtio_blk virtio_net >> /etc/initramfs-tools/modules
update-initramfs -u -k all >/dev/null 2>&1
update-ca-certificates >/dev/null 2>&1 || true
passwd -d root >/dev/null
systemctl enable synfin-vm-test.service >/dev/null 2>&1
