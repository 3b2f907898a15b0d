"""The gateway on Ray Serve: each model a Ray Serve application whose replicas pick and
launch their own node's best engine (``famous serve --ray ADDRESS``)."""
