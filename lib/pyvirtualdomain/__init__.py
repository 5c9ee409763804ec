"""PyVirtualDomain: OCF resource agents for libvirt domains."""

__version__ = "0.1.0"
