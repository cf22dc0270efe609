"""Hub references: which names are Hugging Face Hub repos, and a moving revision resolved to its commit sha.

A recipe may name a Hub dataset or model at a branch or tag (`revision: main`). The plan resolves each one
to the commit it points at now (`HubRevisions.pin`), so an artifact's version follows the data: the same
commit gives the same version whatever name reached it, and a moved branch gives a new one. The pinned
config keeps the name asked for in `requested_revision` (not versioned) beside the sha in `revision`, and
the steps load exactly that sha. The only Hub calls made here, one per (repo type, repo, revision) and plan:

    GET {HF_ENDPOINT}/api/datasets/{repo}/revision/{revision}    (`HfApi.dataset_info(...).sha`)
    GET {HF_ENDPOINT}/api/models/{repo}/revision/{revision}      (`HfApi.model_info(...).sha`)

A full commit sha is already pinned and needs no call. Offline (`HF_HUB_OFFLINE=1`, no connection), a
branch or tag cannot be resolved: `HubUnreachable` says to pin the commit sha in the recipe; a repo or
revision the Hub does not know is `HubRevisionNotFound`. Neither is ever skipped silently.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Literal, TypeVar

from data_contracts.errors import UserError

RepoType = Literal["dataset", "model"]
Pinnable = TypeVar("Pinnable")  # a config dataclass with `revision` and `requested_revision` fields

DEFAULT_REVISION = "main"  # what `datasets` and `transformers` load when a recipe names no revision
DEFAULT_ENDPOINT = "https://huggingface.co"
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
# A Hub repo id: `name` or `namespace/name` (huggingface_hub's own rule, less its length limit).
REPO_ID = re.compile(r"(?:[\w\-.]+/)?[\w\-.]+")
TIMEOUT_S = 30.0


def revision_field(when: str) -> Any:
    """The `revision` field of a config that names a Hub dataset or model; `when` says when it applies."""
    return dataclasses.field(
        default=None,
        metadata={
            "help": f"Hub revision ({when}): a commit sha, or a branch or tag (None: main), resolved to its commit "
            "sha when the plan is made."
        },
    )


def requested_revision_field() -> Any:
    """The `requested_revision` field of a config that names a Hub revision: filled by the plan, not versioned."""
    return dataclasses.field(
        default=None,
        metadata={
            "versioned": False,
            "help": "Filled by the plan: the branch or tag the recipe named when `revision` was resolved to its "
            "commit sha (not versioned: the commit is).",
        },
    )


class HubRevisionError(UserError):
    """A Hub revision the plan cannot resolve to a commit sha; the message names the repo and the revision."""


class HubUnreachable(HubRevisionError):
    """The Hub cannot be asked (offline, no connection), and the recipe names a branch or tag, not a commit."""


class HubRevisionNotFound(HubRevisionError):
    """The Hub does not know the repo (or it is private or gated) or the revision."""


def is_commit_sha(revision: str | None) -> bool:
    """Whether `revision` is a full commit sha (40 lowercase hex digits): pinned, nothing to resolve."""
    return revision is not None and COMMIT_SHA.fullmatch(revision) is not None


def is_hub_repo(name: str) -> bool:
    """Whether `name` names a Hub repo rather than local files: shaped like a repo id and not an existing path."""
    shaped = REPO_ID.fullmatch(name) is not None and "--" not in name and ".." not in name
    return shaped and not os.path.exists(name)


def describe(repo_id: str, revision: str | None, requested_revision: str | None = None) -> str:
    """`repo@revision`, or `repo@asked → sha` when the revision was resolved from a branch or tag."""
    if requested_revision is not None and requested_revision != revision:
        return f"{repo_id}@{requested_revision} → {revision}"
    return f"{repo_id}@{revision or DEFAULT_REVISION}"


def _offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as it is set now."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE) or now


def resolve_revision(repo_id: str, revision: str, repo_type: RepoType) -> str:
    """The commit sha `revision` (a branch, tag or sha) of Hub repo `repo_id` points at now.

    A full sha is returned as it is, with no call. Otherwise one GET to `$HF_ENDPOINT` (read now, so a test
    or a worker can point it elsewhere) `/api/{datasets,models}/{repo_id}/revision/{revision}`."""
    if is_commit_sha(revision):
        return revision
    where = f"Hub {repo_type} {repo_id} at revision {revision!r}"
    pin = "pin the commit sha in the recipe (`revision: <40-hex sha>`) to plan without the Hub"
    if _offline():
        raise HubUnreachable(f"{where}: cannot resolve a branch or tag to a commit offline (HF_HUB_OFFLINE); {pin}")
    import httpx2  # huggingface_hub's HTTP client: its connection errors
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint)
    info = api.dataset_info if repo_type == "dataset" else api.model_info
    try:
        sha = info(repo_id, revision=revision, timeout=TIMEOUT_S).sha
    except RevisionNotFoundError:
        raise HubRevisionNotFound(f"{where}: {endpoint} has no such branch, tag or commit") from None
    except RepositoryNotFoundError:
        raise HubRevisionNotFound(
            f"{where}: {endpoint} has no such {repo_type} repo (or it is private or gated: set HF_TOKEN)"
        ) from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise HubRevisionError(f"{where}: {endpoint} answered HTTP {status}; try again, or {pin}") from None
    except (OfflineModeIsEnabled, httpx2.TransportError) as error:
        raise HubUnreachable(f"{where}: cannot reach {endpoint} ({type(error).__name__}); {pin}") from None
    if not is_commit_sha(sha):
        raise HubRevisionError(f"{where}: {endpoint} answered no commit sha (got {sha!r})")
    return str(sha)


class HubRevisions:
    """The revisions resolved for one plan: each (repo type, repo, revision) is asked of the Hub once.

    One per plan, never shared between plans: a branch that moves between two runs must be asked again."""

    def __init__(self) -> None:
        self.resolved: dict[tuple[RepoType, str, str], str] = {}

    def sha(self, repo_id: str, revision: str, repo_type: RepoType) -> str:
        """The commit sha of `revision` (asked of the Hub the first time only)."""
        key = (repo_type, repo_id, revision)
        if key not in self.resolved:
            self.resolved[key] = resolve_revision(repo_id, revision, repo_type)
        return self.resolved[key]

    def pin(self, config: Pinnable, repo_id: str, repo_type: RepoType) -> Pinnable:
        """`config` with `revision` resolved to its commit sha and the name asked for in `requested_revision`
        (no revision asks for the default branch); as it is when `revision` already is a full sha."""
        asked = getattr(config, "revision", None) or DEFAULT_REVISION
        sha = self.sha(repo_id, asked, repo_type)
        if sha == asked:
            return config
        return dataclasses.replace(config, revision=sha, requested_revision=asked)  # type: ignore[type-var]

    def pin_dataset(self, config: Pinnable) -> Pinnable:
        """`pin` for a config naming a dataset in `hub_id`; as it is without one, or when `hub_id` is a local
        folder (which `datasets.load_dataset` also takes)."""
        hub_id = getattr(config, "hub_id", None)
        return config if hub_id is None or not is_hub_repo(hub_id) else self.pin(config, hub_id, "dataset")

    def pinned(self) -> list[tuple[RepoType, str, str, str]]:
        """(repo type, repo, name asked for, commit sha) of every branch or tag resolved, in order."""
        return [(kind, repo, asked, sha) for (kind, repo, asked), sha in self.resolved.items() if asked != sha]
