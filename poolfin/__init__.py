"""The `poolfin` command and what it drives: the local stack and its supervisor, the demo, the
benchmark, status, and the clients an ERP, a funder or an operator uses. Not a service: it
imports the four services (through `registry`) and no service imports it."""
