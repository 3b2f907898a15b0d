"""Typed, strict schemas of model packages and engine manifests.

YAML keys are kebab-case (``model-card``, ``vendor-id``); Python attributes are snake_case.
Every model forbids unknown keys, so a typo is an error naming the file, line and field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from famous.manifests.records import EngineLogic, PackageLogic, ShapeLogic
from famous.units import parse_hex_id, parse_size

Format = Literal["gguf", "safetensors", "pytorch", "mlx", "openvino", "onnx", "tflite", "pte"]
Capability = Literal["text", "vision", "audio", "tools", "thinking", "embedding", "rerank", "code"]
Architecture = Literal["amd64", "arm64", "armhf", "i386", "riscv64", "ppc64el", "s390x"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _to_kebab(name: str) -> str:
    return name.replace("_", "-")


HexId = Annotated[int, BeforeValidator(parse_hex_id), PlainSerializer(lambda v: f"0x{v:04x}")]
Bytes = Annotated[int, BeforeValidator(parse_size)]


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=_to_kebab, populate_by_name=True, frozen=True
    )


def _specifier_list(value: Any) -> list[str]:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet  # only manifests with one

    items = [value] if isinstance(value, str | int | float) else value
    if not isinstance(items, list):
        raise ValueError("expected a list of version specifiers such as ['>=7.0']")
    out = []
    for item in items:
        text = str(item).strip()
        if text and text[0].isdigit():
            text = f"=={text}"
        try:
            SpecifierSet(text)
        except InvalidSpecifier:
            raise ValueError(
                f"{item!r} is not a version specifier (use forms like '>=7.0', '==8.6', '<9')"
            ) from None
        out.append(text)
    return out


SpecifierList = Annotated[list[str], BeforeValidator(_specifier_list)]


class CpuDevice(Strict):
    """A CPU requirement. x86 uses manufacturer-id and flags; arm64 implementer/part/features."""

    type: Literal["cpu"]
    architecture: Architecture
    manufacturer_id: str | None = None
    flags: list[str] = Field(default_factory=list)
    implementer_id: HexId | None = None
    part_number: list[HexId] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)

    @field_validator("part_number", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]


class PciDevice(Strict):
    """A GPU, NPU or any PCI device (``type: pci``, e.g. a root complex) the engine needs."""

    type: Literal["gpu", "npu", "pci"]
    bus: Literal["pci", "soc"] = "pci"
    vendor_id: HexId | None = None
    device_id: list[HexId] = Field(default_factory=list)
    vram: Bytes | None = None
    compute_capability: SpecifierList | None = None
    microarchitecture: list[str] = Field(default_factory=list)
    discrete: bool | None = None

    @field_validator("device_id", "microarchitecture", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]


DeviceRequirement = Annotated[CpuDevice | PciDevice, Field(discriminator="type")]


class Devices(Strict):
    """Every ``allof`` device must be present; at least one ``anyof`` device when listed."""

    allof: list[DeviceRequirement] = Field(default_factory=list)
    anyof: list[DeviceRequirement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Devices:
        if not self.allof and not self.anyof:
            raise ValueError("devices needs at least one device under allof or anyof")
        return self


class ModelShape(Strict, ShapeLogic):
    """What the memory estimate needs: KV cache = 2 × layers × context × kv-heads × head-dim.

    A mixture-of-experts model keeps every expert in memory (``parameters`` sizes it) but reads
    only ``active-parameters`` per token, which is what bounds its decode speed.
    """

    parameters: int = Field(gt=0, description="parameter count")
    active_parameters: int | None = Field(
        default=None, gt=0, description="parameters one token reads (mixture-of-experts)"
    )
    layers: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    context: int = Field(gt=0, description="default context length famous serves")
    max_context: int | None = Field(default=None, gt=0, description="longest the model supports")
    architecture: str | None = Field(default=None, description="config.json model_type")

    @model_validator(mode="after")
    def _active_within_total(self) -> ModelShape:
        if self.active_parameters is not None and self.active_parameters > self.parameters:
            raise ValueError(
                f"active-parameters {self.active_parameters} exceeds parameters {self.parameters}"
            )
        return self


class ModelOption(Strict):
    """One downloadable variant of the model: a repo, a format, a quantization."""

    repo: str = Field(description="Hugging Face repo id, ORG/NAME")
    format: Format
    quantization: str = Field(description="Q4_K_M, Q8_0, bf16, int4-awq, …")
    files: list[str] = Field(description="glob patterns of the files to fetch, resolved at pull")
    size: Bytes = Field(description="bytes on disk (weights); resolved exactly at pull time")
    kv_bytes: float = Field(default=2.0, gt=0, description="bytes per KV element (f16 = 2)")
    shape: ModelShape | None = Field(default=None, description="overrides the model's shape")

    @field_validator("repo")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value):
            raise ValueError(f"{value!r} is not a Hub repo id (ORG/NAME)")
        return value


class ModelManifest(Strict):
    """``model.yaml``: what the model is, and every variant an engine may fetch."""

    name: str
    description: str
    model_card: str | None = None
    license: str
    capabilities: list[Capability] = Field(min_length=1)
    shape: ModelShape
    options: dict[str, ModelOption] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use lower case letters, digits, '.', '_' and '-'")
        return value


class EnvironmentRule(Strict):
    """Variables an engine's process needs on some devices only, e.g. RDNA2 parts that
    ROCm ships no kernels for run gfx1030's with ``HSA_OVERRIDE_GFX_VERSION=10.3.0``."""

    microarchitecture: list[str] = Field(min_length=1, description="the device's gfx target")
    variables: dict[str, str] = Field(min_length=1)


class EngineManifest(Strict, EngineLogic):
    """``engines/<name>/engine.yaml``: one way to run the model on some class of hardware."""

    name: str
    summary: str = Field(max_length=56)
    description: str
    vendor: str
    experimental: bool = False
    runtime: str = Field(description="runtime adapter: llamacpp, vllm, mlx, openvino, …")
    devices: Devices
    memory: Bytes | None = Field(default=None, description="minimum RAM besides the model")
    disk: Bytes | None = Field(default=None, description="minimum free disk besides the model")
    model_options: list[str] = Field(min_length=1)
    default_model_option: str
    configuration: dict[str, str | int | float | bool] = Field(default_factory=dict)
    environment: list[EnvironmentRule] = Field(
        default_factory=list, description="variables set when the matched device is listed"
    )

    @model_validator(mode="after")
    def _default_listed(self) -> EngineManifest:
        if self.default_model_option not in self.model_options:
            raise ValueError(
                f"default-model-option {self.default_model_option!r} is not one of "
                f"model-options {self.model_options}"
            )
        return self


class ModelPackage(BaseModel, PackageLogic):
    """A model manifest with its engines, as loaded from one package directory."""

    model_config = ConfigDict(frozen=True)

    model: ModelManifest
    engines: dict[str, EngineManifest]
    source: str = Field(description="where it was loaded from: a directory, or 'hub:ORG/NAME'")
