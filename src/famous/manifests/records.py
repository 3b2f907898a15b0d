"""Validated manifests as plain records: what the read-only commands read instead of pydantic.

``famous.manifests.schema`` is the one definition of a package: it validates the YAML. Once
a package has validated, its data is snapshotted (``famous.manifests.snapshot``) and read
back here into records with the same attribute names, and the same derived properties
(the ``*Logic`` mixins below, which declare no fields, are shared by the pydantic models and
the records), so the
matchmaker and the views read either the same way without importing pydantic.
"""

from __future__ import annotations

from typing import Any


class ShapeLogic:
    """Derived values of a model shape (``parameters``, ``active_parameters``)."""

    @property
    def active(self) -> int:
        """Parameters a token reads: all of a dense model's, the routed experts' of an MoE."""
        return self.active_parameters or self.parameters


class EngineLogic:
    """Derived values of an engine manifest."""

    @property
    def uses_gpu(self) -> bool:
        return any(d.type in ("gpu", "npu") for d in (*self.devices.allof, *self.devices.anyof))


class PackageLogic:
    """Lookups on a package (a model manifest with its engines)."""

    @property
    def name(self) -> str:
        return self.model.name

    def option(self, name: str) -> Any:
        return self.model.options[name]

    def shape_of(self, option: str) -> Any:
        return self.model.options[option].shape or self.model.shape


class Record:
    """Read-only attributes over one validated mapping; equal when the data is."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __plain__(self) -> Any:
        """The validated model's JSON form (``to_plain``), where the snapshot kept it."""
        if "json_form" not in self.__dict__:
            raise TypeError(f"{type(self).__name__} has no JSON form in its snapshot")
        return self.__dict__["json_form"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class ShapeRecord(Record, ShapeLogic):
    pass


class RequirementRecord(Record):
    """A device requirement (``type`` tells a cpu from a gpu / npu / pci one)."""


class DevicesRecord(Record):
    pass


class OptionRecord(Record):
    pass


class ModelRecord(Record):
    pass


class EnvironmentRecord(Record):
    pass


class EngineRecord(Record, EngineLogic):
    pass


class PackageRecord(Record, PackageLogic):
    pass


#: Id fields the schema prints as hex ("0x10de") even in a Python-mode dump.
_HEX_IDS = ("implementer_id", "vendor_id")
_HEX_ID_LISTS = ("part_number", "device_id")


def _requirement(data: dict[str, Any]) -> RequirementRecord:
    from famous.units import parse_hex_id

    fields = dict(data)
    for key in _HEX_IDS:
        if fields.get(key) is not None:
            fields[key] = parse_hex_id(fields[key])
    for key in _HEX_ID_LISTS:
        if key in fields:
            fields[key] = [parse_hex_id(v) for v in fields[key]]
    return RequirementRecord(**fields)


def _shape(data: dict[str, Any] | None) -> ShapeRecord | None:
    return None if data is None else ShapeRecord(**data)


def _engine(data: dict[str, Any], json_form: dict[str, Any]) -> EngineRecord:
    devices = data["devices"]
    return EngineRecord(
        **{
            **data,
            "json_form": json_form,
            "devices": DevicesRecord(
                allof=[_requirement(r) for r in devices["allof"]],
                anyof=[_requirement(r) for r in devices["anyof"]],
            ),
            "environment": [EnvironmentRecord(**e) for e in data["environment"]],
        }
    )


def _model(data: dict[str, Any]) -> ModelRecord:
    options = {
        name: OptionRecord(**{**o, "shape": _shape(o["shape"])})
        for name, o in data["options"].items()
    }
    return ModelRecord(**{**data, "shape": _shape(data["shape"]), "options": options})


def package_record(data: dict[str, Any]) -> PackageRecord:
    """A package from its snapshot: ``ModelPackage.model_dump()`` (Python names and values)
    with ``engines_json``, each engine as ``to_plain`` prints it (what show-engine shows)."""
    return PackageRecord(
        model=_model(data["model"]),
        engines={
            name: _engine(e, data["engines_json"][name]) for name, e in data["engines"].items()
        },
        source=data["source"],
    )
