"""Exit codes scripts can rely on (the README lists them), named for commands that exit
without an error to raise (``famous engines`` prints its table, then exits INCOMPATIBLE).

They are read from ``famous.errors.EXIT_CODES``, the one table that maps errors to codes.
"""

from famous import errors as _errors

OK = 0
ERROR = _errors.EXIT_CODES[_errors.FamousError]  # the request could not be carried out
USAGE = _errors.EXIT_CODES[_errors.InvalidInput]  # bad arguments (click's own code)
INCOMPATIBLE = _errors.EXIT_CODES[_errors.Incompatible]  # this machine cannot run it
NOT_FOUND = _errors.EXIT_CODES[_errors.NotFound]  # unknown model, engine or configuration key
INVALID_MANIFEST = _errors.EXIT_CODES[_errors.InvalidManifest]  # invalid package manifests
