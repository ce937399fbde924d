//! The revocation feed from a real control plane (added once its routes exist).
