"""Bytes and typed records: what the probes write, decoded; recordings on disk."""
