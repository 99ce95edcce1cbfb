"""`synfin run`: Prometheus collectors over the kernel maps, the web server, the daemon."""
