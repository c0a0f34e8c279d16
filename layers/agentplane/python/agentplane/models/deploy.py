"""Deploy control: provider connections, capsules (an OpenTofu/Terraform root module and how to run
it), their provider bindings, the workspace's deploy policy, and what applies leave behind (state
versions and outputs). Plan, apply and destroy are runs (models.runs) of those kinds."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, SecretStr, StringConstraints, model_validator

from agentplane.models.common import Input, ListQuery, Output
from agentplane.models.projects import Branch, RepositoryUrl

MAX_CREDENTIALS = 20
MAX_BINDINGS = 20
MAX_POLICY_CONNECTIONS = 100

ConnectionName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
CapsuleName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]
# A provider's local name as a root module's required_providers says it (aws, google, cloudflare…).
ProviderName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
CredentialName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# What a runner exports: environment variable names as POSIX shells take them.
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# One segment of a relative path: anything but empty or `..` (pydantic's regex engine has no
# look-ahead, so "not `..`" is spelt out: `.`, `..` and more, or an optional dot and a non-dot).
_FILE_SEGMENT = r"(?:\.|\.\.[A-Za-z0-9_.-]+|\.?[A-Za-z0-9_-][A-Za-z0-9_.-]*)"
_MODULE_SEGMENT = r"(?:\.|\.\.[^\s/]+|\.?[^\s/.][^\s/]*)"
# A file the runner writes, relative to its working directory (no absolute path, no way up).
FilePath = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=rf"^{_FILE_SEGMENT}(?:/{_FILE_SEGMENT})*$")
]
CredentialValue = Annotated[SecretStr, Field(min_length=1, max_length=10_000)]
ToolVersion = Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")]
# The root module's directory in the repository, relative to its root (no absolute path, no way up).
ModulePath = Annotated[
    str, StringConstraints(min_length=1, max_length=1024, pattern=rf"^{_MODULE_SEGMENT}(?:/{_MODULE_SEGMENT})*/?$")
]
ConnectionId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class DeployTool(StrEnum):
    opentofu = "opentofu"
    terraform = "terraform"


class Resolution(StrEnum):
    """How a capsule's binding of a provider stands: what a plan needs is `resolved_provider_connection`."""

    resolved_provider_connection = "resolved_provider_connection"
    blocked_missing_connection = "blocked_missing_connection"
    blocked_policy = "blocked_policy"


# --- connections ------------------------------------------------------------------------------------


class CredentialRecipe(Input):
    """Which credentials the runner gets, and as what: environment variables (`env`: name → the
    credential it holds) and files (`files`: path → the credential written there)."""

    env: dict[EnvName, CredentialName] = Field(default_factory=dict, max_length=MAX_CREDENTIALS)
    files: dict[FilePath, CredentialName] = Field(default_factory=dict, max_length=MAX_CREDENTIALS)


class ConnectionCreate(Input):
    name: ConnectionName
    provider: ProviderName
    description: Description | None = None
    # Secret material: sealed at rest, never answered, never logged.
    credentials: dict[CredentialName, CredentialValue] = Field(min_length=1, max_length=MAX_CREDENTIALS)
    # Omitted: every credential is exported as an environment variable of its own name.
    recipe: CredentialRecipe | None = None

    @model_validator(mode="after")
    def _recipe_names_known_credentials(self) -> ConnectionCreate:
        if self.recipe is None:
            return self
        unknown = sorted(
            {name for name in [*self.recipe.env.values(), *self.recipe.files.values()] if name not in self.credentials}
        )
        if unknown:
            raise ValueError(f"the recipe names credentials the connection does not have: {', '.join(unknown)}")
        if not self.recipe.env and not self.recipe.files:
            raise ValueError("the recipe gives the runner nothing: name at least one env variable or file")
        return self

    def effective_recipe(self) -> CredentialRecipe:
        return self.recipe or CredentialRecipe(env={name: name for name in self.credentials})


class RecipeShown(Output):
    env: dict[str, str] = {}
    files: dict[str, str] = {}


class Connection(Output):
    """A provider connection as anyone may see it: the credential *names*, never their values."""

    id: str
    workspace_id: str
    name: str
    provider: str
    description: str | None = None
    credential_names: list[str]
    recipe: RecipeShown
    created_by: str
    created_at: str
    updated_at: str


class ConnectionQuery(ListQuery):
    provider: ProviderName | None = Field(default=None, description="Only connections of this provider")


# --- capsules -----------------------------------------------------------------------------------------


class CapsuleSource(Input):
    repository_url: RepositoryUrl
    path: ModulePath = "."
    ref: Branch = "main"


class CapsuleSourceShown(Output):
    repository_url: str
    path: str = "."
    ref: str = "main"


class CapsuleCreate(Input):
    name: CapsuleName
    description: Description | None = None
    project_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    source: CapsuleSource
    tool: DeployTool = DeployTool.opentofu
    tool_version: ToolVersion = "1.8.0"
    auto_apply: bool = False


class CapsuleUpdate(Input):
    name: CapsuleName | None = None
    description: Description | None = None
    source: CapsuleSource | None = None
    tool: DeployTool | None = None
    tool_version: ToolVersion | None = None
    auto_apply: bool | None = None
    version: int | None = Field(default=None, ge=1, description="The version read (or send If-Match)")


class BindingRequest(Input):
    provider: ProviderName
    connection_id: ConnectionId


class BindingsPut(Input):
    """The capsule's bindings, all of them: what is not listed is unbound."""

    bindings: list[BindingRequest] = Field(max_length=MAX_BINDINGS)

    @model_validator(mode="after")
    def _one_binding_per_provider(self) -> BindingsPut:
        providers = [binding.provider for binding in self.bindings]
        repeated = sorted({p for p in providers if providers.count(p) > 1})
        if repeated:
            raise ValueError(f"a provider is bound once: {', '.join(repeated)} listed more than once")
        return self


class Binding(Output):
    provider: str
    connection_id: str
    resolution: Resolution
    detail: str | None = None


class CapsuleBindings(Output):
    """The answer to a bindings PUT: every binding with its resolution as of now."""

    bindings: list[Binding]


class CapsuleState(Output):
    """The capsule's current state: the last state version an apply or destroy wrote."""

    serial: int
    lineage: str | None = None
    checksum: str | None = None
    run_id: str | None = None
    resources: int | None = None
    updated_at: str | None = None


class Capsule(Output):
    id: str
    workspace_id: str
    name: str
    description: str | None = None
    project_id: str | None = None
    source: CapsuleSourceShown
    tool: DeployTool
    tool_version: str
    auto_apply: bool = False
    bindings: list[Binding] = []
    state: CapsuleState | None = None
    # The apply or destroy run holding the capsule, and those waiting for it, in order.
    active_run_id: str | None = None
    queued_run_ids: list[str] = []
    version: int
    created_by: str
    created_at: str
    updated_at: str


# --- policy ---------------------------------------------------------------------------------------------


class DeployPolicyPut(Input):
    """Which providers capsules may bind (None: any), and for a provider listed in
    `allowed_connections`, which of its connections (others: any connection of that provider)."""

    allowed_providers: list[ProviderName] | None = Field(default=None, max_length=MAX_BINDINGS * 5)
    allowed_connections: dict[ProviderName, list[ConnectionId]] | None = Field(
        default=None, max_length=MAX_POLICY_CONNECTIONS
    )
    version: int | None = Field(default=None, ge=1, description="The version read (or send If-Match)")


class DeployPolicy(Output):
    workspace_id: str
    allowed_providers: list[str] | None = None
    allowed_connections: dict[str, list[str]] | None = None
    version: int = 0
    updated_by: str | None = None
    updated_at: str | None = None


# --- state and outputs ------------------------------------------------------------------------------------


class StateVersion(Output):
    id: str
    capsule_id: str
    serial: int
    lineage: str
    checksum: str
    run_id: str
    resources: int = 0
    created_at: str


class DeployOutput(Output):
    """One output of the capsule's current state; a sensitive value is `null` here (see the
    output's own route)."""

    name: str
    value: Any = None
    sensitive: bool = False
    serial: int
    run_id: str


class RevealedOutput(Output):
    name: str
    value: Any
    sensitive: bool = True
    serial: int
    run_id: str
