//! `writ policy shadow set|clear|promote|status`: the shadow bundle, offline on the data
//! directory or with `--url` through the running control plane's `/v1/policy/shadow`
//! routes (with the operator credential, as every `writ policy` command that changes the
//! control plane). A refusal (unknown or untrusted bundle, the active bundle, no shadow to
//! clear or promote) is exit status 1.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use writ_engine::{EngineError, ShadowStatus};

use crate::datadir::DataDir;
use crate::remote::{Answer, Remote, print};

/// `writ policy shadow`'s arguments: where it acts, and what it does.
#[derive(clap::Args)]
pub struct ShadowArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: ShadowCommand,
}

#[derive(Subcommand)]
pub enum ShadowCommand {
    /// Set the shadow bundle: an uploaded (or formerly active) bundle, by digest, whose
    /// signature verifies against the trusted policy keys; not the active one.
    Set {
        /// The bundle's digest, `sha256:…` (`writ policy check` prints it).
        digest: String,
        #[arg(long, default_value = "set by an operator")]
        reason: String,
    },
    /// Clear the shadow bundle.
    Clear {
        #[arg(long, default_value = "cleared by an operator")]
        reason: String,
    },
    /// Promote the shadow bundle: activate it (the outstanding writs are re-evaluated under
    /// it, as every activation does), then clear the shadow.
    Promote {
        #[arg(long, default_value = "promoted by an operator")]
        reason: String,
    },
    /// The shadow bundle, and the decisions evaluated under it and disagreements since the
    /// engine opened (through `--url`: since the server started).
    Status,
}

fn status_json(s: &ShadowStatus) -> Value {
    json!({"bundle": s.bundle, "evaluated": s.evaluated, "disagreements": s.disagreements})
}

/// A refusal: printed, exit status 1.
fn refused(error: &str, message: &str) -> Result<ExitCode> {
    print(&json!({"ok": false, "error": error, "message": message}))?;
    Ok(ExitCode::from(1))
}

pub fn shadow(dir: &DataDir, args: ShadowArgs) -> Result<ExitCode> {
    if let Some(mut api) = args.remote.api(dir, true)? {
        let answer = match &args.command {
            ShadowCommand::Set { digest, reason } => {
                api.send_json(hyper::Method::PUT, "/v1/policy/shadow", &json!({"digest": digest, "reason": reason}))?
            }
            ShadowCommand::Clear { reason } => {
                api.send_json(hyper::Method::DELETE, "/v1/policy/shadow", &json!({"reason": reason}))?
            }
            ShadowCommand::Promote { reason } => api.post("/v1/policy/shadow/promote", &json!({"reason": reason}))?,
            ShadowCommand::Status => api.get("/v1/policy/shadow")?,
        };
        return match answer {
            Answer::Ok(v) => print(&v).map(|()| ExitCode::SUCCESS),
            Answer::Refused { error, message, .. } => refused(&error, &message),
        };
    }
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let done: Result<Value, EngineError> = match args.command {
        ShadowCommand::Set { digest, reason } => {
            rt.block_on(engine.set_shadow(&digest, None, &reason)).map(|_| status_json(&engine.shadow()))
        }
        ShadowCommand::Clear { reason } => {
            rt.block_on(engine.clear_shadow(None, &reason)).map(|i| json!({"cleared": true, "log_index": i}))
        }
        ShadowCommand::Promote { reason } => rt.block_on(engine.promote_shadow(None, &reason)).map(|p| {
            let r = &p.activated.reevaluation;
            json!({
                "digest": p.activated.digest.to_string(),
                "active": true,
                "log_index": p.activated.log_index,
                "reevaluation": {"reevaluated": r.reevaluated, "revoked": r.revoked, "descendants": r.descendants, "log_index": r.log_index},
                "shadow_cleared": p.cleared,
            })
        }),
        ShadowCommand::Status => Ok(status_json(&engine.shadow())),
    };
    match done {
        Ok(v) => {
            engine.log().checkpoint_now_blocking().ok();
            print(&v).map(|()| ExitCode::SUCCESS)
        }
        Err(e @ (EngineError::NotFound(_) | EngineError::ShadowIsActive { .. } | EngineError::BundleUntrusted(_))) => {
            let code = match &e {
                EngineError::BundleUntrusted(_) => writ_core::ReasonCode::PolicyBundleUntrusted,
                _ => writ_core::ReasonCode::RequestMalformed,
            };
            refused(code.as_str(), &e.detail())
        }
        Err(e) => Err(e.into()),
    }
}
