//! `crewgate audit verify`: re-walks the audit log's hash chain (each entry's hash covers its
//! content and its predecessor's hash), so an entry changed in the database directly is found.
//! Offline, on the data dir or PostgreSQL, like the other admin commands.

use crate::StoreArgs;
use crate::context::open_store;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that no audit entry was modified; exits 1 and names the first bad entry if one was.
    #[command(after_help = "Example:\n  crewgate audit verify --data-dir ./crewgate-data")]
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn audit(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { store } => {
            let store = open_store(&store).await?;
            let report = store.verify_audit_chain().await.context("reading the audit log")?;
            Ok(match report.first_bad {
                None => {
                    println!("audit log intact: {} entries, hash chain verified", report.entries);
                    ExitCode::SUCCESS
                }
                Some(id) => {
                    println!(
                        "audit log TAMPERED: entry {id} does not match its hash chain ({} entries). \
                         Entry {id} or its predecessor was changed after it was written; entries from {id} on cannot be trusted — restore the log from a backup and investigate.",
                        report.entries
                    );
                    ExitCode::FAILURE
                }
            })
        }
    }
}
