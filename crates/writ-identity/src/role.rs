//! The roles a trust bundle grants an issuer (SPEC.md §1: the workload credential, the
//! delegation chain's operator, orchestrator, machine and runtime credentials, and the
//! runtime attestor). A role is what a credential is presented *as*; an issuer may only vouch
//! for the roles its bundle entry lists.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::IdentityError;

/// The role a credential is presented as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The acting agent's workload credential (required on every request).
    Workload,
    /// The human or service operator that started the agent.
    Operator,
    /// The orchestrator that dispatched the agent.
    Orchestrator,
    /// The machine the agent runs on.
    Machine,
    /// The runtime environment the agent runs in.
    Runtime,
    /// A runtime attestor: signs attestations of a workload's measured runtime.
    Attestor,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 6] =
        [Role::Workload, Role::Operator, Role::Orchestrator, Role::Machine, Role::Runtime, Role::Attestor];

    /// The name used in trust bundles (`"workload"`, `"attestor"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Workload => "workload",
            Role::Operator => "operator",
            Role::Orchestrator => "orchestrator",
            Role::Machine => "machine",
            Role::Runtime => "runtime",
            Role::Attestor => "attestor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::Bundle(format!("unknown role {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert!("Workload".parse::<Role>().is_err());
        assert!(serde_json::from_str::<Role>("\"admin\"").is_err());
    }
}
