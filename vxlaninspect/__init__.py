"""vxlaninspect: find the overlay networks and services that leak cleartext in packet captures."""

__version__ = "0.1.0"
