"""host-local IPAM: range configuration, the on-disk lease store, the allocator."""
