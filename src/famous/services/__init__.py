"""Use cases the CLI and the gateway share: each ties the components together for one job."""
