"""The vxlaninspect command line (installed as ``vxlaninspect.cli``)."""
