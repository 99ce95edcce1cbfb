"""Everything that touches the running kernel: bcc, BTF, tracefs, /proc and /sys."""
