"""Deploy control (Takosumi): OpenTofu/Terraform root modules run as plan, apply and destroy runs.

- `connections`: provider connections, their credentials sealed at rest and never shown;
- `capsules`: capsules (a root module's source, tool and version), their provider bindings as
  resolved against the bound connections and the workspace's deploy policy, and the policy itself;
- `state`: what applies leave behind: a capsule's state versions and its outputs;
- `runs`: the deploy side of plan, apply and destroy runs (checked, held, handed to the runner and
  recorded), which `logic.runs` calls for runs of those kinds.

Where these items live is said by their entities (`agentplane.entities.deploy`).
"""
