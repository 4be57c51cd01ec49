"""Throughput and memory benchmarks of vxlaninspect on large synthetic captures."""
