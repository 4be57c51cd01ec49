"""Fuzz targets for the capture reader, the decoder and the scan; each script says how to run it."""
