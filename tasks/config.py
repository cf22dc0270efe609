"""What every recipe section is built from: the section decorator, strict number types and ConfigError.

A recipe section is a frozen dataclass whose fields carry `metadata={"help": ...}`; `config_section`
also tells pydantic (which validates a whole recipe once, at the boundary) to refuse unknown keys.
`Int` and `Float` are strict: `true` is not a number, and a float accepts an int and YAML 1.1's `5e-6`
(PyYAML reads it as a string). A field that must not change an artifact's version says so with
`metadata={"versioned": False}` (see `data_contracts.versioning.versioned`, the one reader).
Nothing here knows a stage.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, ConfigDict, Strict

from data_contracts.errors import UserError

_YAML_11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
Section = TypeVar("Section")


def _yaml_float(value: Any) -> Any:
    """`5e-6` written without a dot is a string to PyYAML; everyone writes learning rates so."""
    return float(value) if isinstance(value, str) and _YAML_11_FLOAT.fullmatch(value.strip()) else value


Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(_yaml_float), Strict()]


def config_section(cls: type[Section]) -> type[Section]:
    """A frozen dataclass that pydantic validates with unknown keys refused."""
    section = dataclasses.dataclass(frozen=True)(cls)
    section.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return section


class ConfigError(UserError, ValueError):
    """An invalid value in a recipe section; `field` names the section's field so the recipe key can be shown."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
