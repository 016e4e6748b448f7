# The quota decision of docs/contract.md §3 as a Rego policy, for the peer benchmark
# (benches/benches/decision.rs, evaluated by regorus).
#
# Mapping from the contract:
#
# - The input is the JSON form of a decision input (docs/contract.md §2.1): `override` and
#   `plan` are null or objects, `plan.limit`, `default_limit` and
#   `override.expires_at_ms` may be null.
# - One field is added by the host before evaluation: `rollout_bucket`,
#   fnv1a64(plan_id ":" user_id) mod 100 (docs/contract.md §3.3). Rego has no FNV-1a and
#   no way to turn a string into its bytes, so the bucket is computed natively
#   while the input is built (outside the timed part); the comparison with
#   `rollout_percent` stays here.
# - `decision` is the decision record without `reason` (the human sentence):
#   status, limit, limit_source, override_applied, override_expired,
#   projected_usage, overage, enforced, grace_to_consume, grace_remaining.
#   The benchmark checks every one of these against the native decision.
# - Input ranges are not validated (the benchmark feeds valid inputs only)
#   and numbers do not saturate (Rego numbers do not overflow at these sizes).
package quota

import rego.v1

# §3.2 limit resolution: override > plan > default > unlimited.

override_present if is_object(input.override)

default override_active := false

override_active if {
	override_present
	input.override.expires_at_ms == null
}

override_active if {
	override_present
	is_number(input.override.expires_at_ms)
	input.now_ms < input.override.expires_at_ms
}

default override_expired := false

override_expired if {
	override_present
	not override_active
}

default plan_has_limit := false

plan_has_limit if is_number(input.plan.limit)

default has_default := false

has_default if is_number(input.default_limit)

resolved := {"limit": input.override.value, "source": "override"} if {
	override_active
} else := {"limit": input.plan.limit, "source": "plan"} if {
	plan_has_limit
} else := {"limit": input.default_limit, "source": "default"} if {
	has_default
} else := {"limit": -1, "source": "none"}

limit := resolved.limit

# §3.3 enforcement: plan flag and rollout bucket.

default enforced := false

enforced if {
	input.plan.enforcement_enabled == true
	input.rollout_bucket < input.plan.rollout_percent
}

# §3.4 the decision.

projected := input.usage + input.requested

default within := false

within if limit == -1

within if projected <= limit

default grace_available := 0

grace_available := input.plan.grace_count - input.grace_used if is_object(input.plan)

overage := 0 if {
	within
} else := projected - max([limit, input.usage])

status := "allow" if {
	within
} else := "warn_only" if {
	not enforced
} else := "allow_grace" if {
	overage <= grace_available
} else := "block"

grace_to_consume := overage if {
	status == "allow_grace"
} else := 0

default grace_remaining := 0

grace_remaining := max([0, grace_available - grace_to_consume]) if is_object(input.plan)

decision := {
	"status": status,
	"limit": limit,
	"limit_source": resolved.source,
	"override_applied": override_active,
	"override_expired": override_expired,
	"projected_usage": projected,
	"overage": overage,
	"enforced": enforced,
	"grace_to_consume": grace_to_consume,
	"grace_remaining": grace_remaining,
}
