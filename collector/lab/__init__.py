"""`synfin lab`: test hosts in network namespaces and the scenarios played between them."""
