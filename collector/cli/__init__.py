"""The `synfin` command line: a thin click layer over the packages that do the work."""
