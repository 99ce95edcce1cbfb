"""synfin: TCP handshakes and teardowns, observed with eBPF and named as the textbook does."""
