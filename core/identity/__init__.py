"""Identity, the polyseme resolver: one stable, tenant-keyed id per real-world person or company."""
