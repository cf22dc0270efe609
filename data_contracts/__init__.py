"""Data contracts and the artifact store: schemas, value rules, versions and atomic Parquet publishing.

This package knows nothing of stages, recipes or Prefect; everything else in the project builds on it.
"""

from data_contracts.contract import (
    REJECTS_SCHEMA,
    Contract,
    ContractError,
    RejectRateExceeded,
    Rule,
    check_reject_rate,
    validate,
)
from data_contracts.kinds import CONTRACTS, FOLDER_KINDS, FolderKind
from data_contracts.store import (
    ArtifactRef,
    ArtifactStore,
    ArtifactWriter,
    FolderWriter,
    publish_table,
    rejects_contract,
)
from data_contracts.versioning import artifact_version, canonical_json

__all__ = [
    "CONTRACTS",
    "FOLDER_KINDS",
    "REJECTS_SCHEMA",
    "ArtifactRef",
    "ArtifactStore",
    "ArtifactWriter",
    "Contract",
    "ContractError",
    "FolderKind",
    "FolderWriter",
    "RejectRateExceeded",
    "Rule",
    "artifact_version",
    "canonical_json",
    "check_reject_rate",
    "publish_table",
    "rejects_contract",
    "validate",
]
