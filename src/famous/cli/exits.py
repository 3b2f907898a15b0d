"""Exit codes scripts can rely on (the README lists them)."""

OK = 0
ERROR = 1  # the request could not be carried out
USAGE = 2  # bad arguments (click's own code)
INCOMPATIBLE = 3  # this machine cannot run what was asked
NOT_FOUND = 4  # unknown model, engine or configuration key
INVALID_MANIFEST = 5  # a package's manifests are invalid
