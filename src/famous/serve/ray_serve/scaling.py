"""How many replicas Ray Serve runs of a model: a fixed count (``--replicas``), or autoscaling
on ongoing requests between ``--min-replicas`` and ``--max-replicas``.

With autoscaling, Ray owns the idle policy: replicas above the minimum go after the gateway's
keep-alive, and with a minimum of 0 the last one too (scale to zero); the next request then
waits at Serve's proxy while Ray starts a replica (its node's engine) for it. Ray decides from
the ongoing requests it saw over a look-back window, then waits its down-scale delay: famous
splits the keep-alive between the two, so a replica goes about ``keep-alive`` seconds after
its last request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from famous.errors import InvalidInput

#: Ray Serve's own default of ongoing requests per replica
DEFAULT_TARGET_ONGOING = 2.0
#: requests Serve hands one replica at once when the engine's slots are not configured
#: (Serve's own default, 5, would queue the 6th stream at the proxy however many slots the
#: engine batches over: llama-server has up to 8 by itself, vLLM hundreds)
DEFAULT_MAX_ONGOING = 32
#: configuration keys that say how many requests an engine batches at once
SLOT_KEYS = ("parallel", "n_parallel", "np", "max_num_seqs", "max-num-seqs")
#: seconds a higher load must last before Ray adds a replica (Ray's default is 30)
UPSCALE_DELAY_S = 3.0
#: the longest look-back window famous asks for (Ray's default)
MAX_LOOK_BACK_S = 30.0
#: seconds between the reports of ongoing requests to Serve's autoscaler (famous's nodes
#: set Ray's push intervals to it: ``resources.SERVE_ENVIRONMENT``); Ray wants a look-back
#: window longer than it
METRICS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Scaling:
    """``replicas`` when fixed; else the autoscaling bounds and target, and the keep-alive
    (seconds; negative: replicas above the minimum stay as long as Ray's default)."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing: float | None = None
    keep_alive: float = 300.0

    @property
    def autoscaling(self) -> bool:
        return (self.min_replicas, self.max_replicas, self.target_ongoing) != (None,) * 3

    @property
    def bounds(self) -> tuple[int, int]:
        low = self.min_replicas if self.min_replicas is not None else 1
        high = self.max_replicas if self.max_replicas is not None else max(low, 1)
        return low, high

    def describe(self) -> str:
        if not self.autoscaling:
            return f"{self.replicas} replica(s)"
        low, high = self.bounds
        target = self.target_ongoing or DEFAULT_TARGET_ONGOING
        return f"{low} to {high} replica(s), autoscaling at {target:g} ongoing request(s) each"


def scaling_options(
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    target_ongoing: float | None,
    keep_alive: float,
) -> Scaling:
    """The ``--replicas`` / ``--min-replicas`` / ``--max-replicas`` /
    ``--target-ongoing-requests`` options, checked (InvalidInput names the option)."""
    auto = (min_replicas, max_replicas, target_ongoing) != (None,) * 3
    if replicas is not None and auto:
        raise InvalidInput(
            "give either --replicas N (a fixed count) or --min-replicas/--max-replicas "
            "(autoscaling), not both"
        )
    if replicas is not None and replicas < 1:
        raise InvalidInput(f"--replicas must be at least 1, got {replicas}")
    if min_replicas is not None and min_replicas < 0:
        raise InvalidInput(f"--min-replicas must be 0 or more, got {min_replicas}")
    if max_replicas is not None and max_replicas < 1:
        raise InvalidInput(f"--max-replicas must be at least 1, got {max_replicas}")
    if target_ongoing is not None and target_ongoing <= 0:
        raise InvalidInput(f"--target-ongoing-requests must be above 0, got {target_ongoing}")
    scaling = Scaling(replicas or 1, min_replicas, max_replicas, target_ongoing, keep_alive)
    low, high = scaling.bounds
    if auto and low > high:
        raise InvalidInput(f"--min-replicas ({low}) must not exceed --max-replicas ({high})")
    if auto and low == 0 and keep_alive < 0:
        raise InvalidInput(
            "--min-replicas 0 scales a model to zero after its keep-alive, but --keep-alive is "
            "negative (never unload): give --keep-alive SECONDS"
        )
    return scaling


def max_ongoing(configuration: dict[str, Any], scaling: Scaling) -> int:
    """Requests Serve hands one replica at once: the engine's slots where its configuration
    names them, else ``DEFAULT_MAX_ONGOING``; never below the autoscaling target."""
    slots = next((configuration[k] for k in SLOT_KEYS if configuration.get(k) is not None), None)
    count = int(slots) if slots is not None else DEFAULT_MAX_ONGOING
    return max(count, math.ceil(scaling.target_ongoing or 1))


def deployment_scaling(scaling: Scaling) -> dict[str, Any]:
    """The options of ``serve.deployment`` that say how many replicas run: ``num_replicas``,
    or an ``autoscaling_config`` (one replica starts with the model even when the minimum is
    0, so the gateway learns what the engines can do; it goes after the keep-alive)."""
    if not scaling.autoscaling:
        return {"num_replicas": scaling.replicas}
    low, high = scaling.bounds
    config: dict[str, Any] = {
        "min_replicas": low,
        "max_replicas": high,
        "initial_replicas": max(low, 1),
        "target_ongoing_requests": scaling.target_ongoing or DEFAULT_TARGET_ONGOING,
        "upscale_delay_s": UPSCALE_DELAY_S,
        "metrics_interval_s": METRICS_INTERVAL_S,
    }
    if scaling.keep_alive >= 0:
        look_back = min(MAX_LOOK_BACK_S, max(2 * METRICS_INTERVAL_S, scaling.keep_alive / 2))
        delay = max(0.0, scaling.keep_alive - look_back)
        config["look_back_period_s"] = look_back
        config["downscale_delay_s"] = delay
        config["downscale_to_zero_delay_s"] = delay
    return {"autoscaling_config": config}


class KeepAliveRefused(InvalidInput):
    """A request's ``keep_alive`` that Ray's autoscaling of the model cannot honour."""

    param = "keep_alive"
    code = "keep_alive_not_honoured"


def check_keep_alive(name: str, keep: float, scaling: Scaling) -> None:
    """A request's ``keep_alive`` (Ollama's) for a model Ray autoscales down to zero.

    Ray Serve fixes a deployment's down-scale delay when the model is deployed (famous
    derives it from ``--keep-alive``): it removes the last replica that long after the last
    request, whatever a request says. A shorter ``keep_alive`` is honoured by the gateway,
    which unloads the model (deletes its application) once it was idle that long; a longer
    or negative one cannot be, and is refused (KeepAliveRefused) rather than ignored. With a
    minimum of one replica or more, or a fixed count, Ray keeps the model loaded and every
    keep_alive is honoured by the gateway."""
    low, _ = scaling.bounds
    if not scaling.autoscaling or low > 0 or scaling.keep_alive < 0:
        return
    if keep < 0 or keep > scaling.keep_alive:
        asked = "forever" if keep < 0 else f"{keep:g} s"
        raise KeepAliveRefused(
            f"keep_alive {asked}: {name!r} autoscales on Ray down to zero replicas, and Ray "
            f"Serve removes its last replica {scaling.keep_alive:g} s after the last request "
            "(the deployment's down-scale delay, fixed when the model is deployed, not per "
            f"request); a keep_alive of at most {scaling.keep_alive:g} s applies (the gateway "
            "unloads the model sooner), or restart the gateway with a longer --keep-alive, or "
            "with --min-replicas 1 to keep a replica"
        )
