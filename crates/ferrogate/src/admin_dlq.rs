//! `ferrogate dlq list|show|replay|purge`: the dead-letter queue through the admin API
//! (`/admin/v1/dlq`), with the master key from `FERROGATE_MASTER_KEY`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin::{Client, Target, enc, print_json, when};
use crate::table::Table;

/// Which entries: every field optional.
#[derive(Debug, Clone, Args, Default)]
pub struct DlqFilter {
    /// Only this job kind (batch_item, webhook, response).
    #[arg(long)]
    kind: Option<String>,
    /// Only this batch's lines.
    #[arg(long)]
    batch: Option<String>,
    /// Only this tenant's jobs (its id).
    #[arg(long)]
    tenant: Option<String>,
}

impl DlqFilter {
    fn query(&self) -> String {
        let parts: Vec<String> = [("kind", &self.kind), ("batch_id", &self.batch), ("tenant_id", &self.tenant)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
            .collect();
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }

    fn body(&self) -> Value {
        json!({ "kind": self.kind, "batch_id": self.batch, "tenant_id": self.tenant })
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead jobs, oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// One dead job with its attempt history.
    Show { id: String },
    /// Back to the queue: one job by id, or every match of the filter with --all.
    Replay {
        id: Option<String>,
        /// Replay every dead job matching the filter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// Delete one dead job by id, or every match of the filter with --all.
    Purge {
        id: Option<String>,
        /// Delete every dead job matching the filter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilter,
    },
}

pub async fn dlq(t: Target, cmd: DlqCommand) -> anyhow::Result<()> {
    let c = Client::new(&t)?;
    let v = match cmd {
        DlqCommand::List { filter } => {
            let v = c.json(Method::GET, &format!("/admin/v1/dlq{}", filter.query()), None).await?;
            if t.json {
                return print_json(&v);
            }
            let mut table = Table::new(["ID", "KIND", "TENANT", "BATCH", "ATTEMPTS", "FAILED", "LAST ERROR"]);
            for x in v["data"].as_array().into_iter().flatten() {
                let s = |k: &str| x[k].as_str().unwrap_or("-").to_owned();
                table.row([
                    s("id"),
                    s("kind"),
                    s("tenant_id"),
                    s("batch_id"),
                    x["attempts"].to_string(),
                    when(&x["finished_at_ms"]),
                    s("last_error").chars().take(80).collect(),
                ]);
            }
            print!("{table}");
            return Ok(());
        }
        DlqCommand::Show { id } => c.json(Method::GET, &format!("/admin/v1/dlq/{}", enc(&id)), None).await?,
        DlqCommand::Replay { id: Some(id), all: false, .. } => {
            c.json(Method::POST, &format!("/admin/v1/dlq/{}/replay", enc(&id)), None).await?
        }
        DlqCommand::Replay { id: None, all: true, filter } => {
            c.json(Method::POST, "/admin/v1/dlq/replay", Some(filter.body())).await?
        }
        DlqCommand::Purge { id: Some(id), all: false, .. } => {
            c.json(Method::DELETE, &format!("/admin/v1/dlq/{}", enc(&id)), None).await?
        }
        DlqCommand::Purge { id: None, all: true, filter } => {
            c.json(Method::POST, "/admin/v1/dlq/purge", Some(filter.body())).await?
        }
        DlqCommand::Replay { .. } | DlqCommand::Purge { .. } => {
            anyhow::bail!("name one job id, or pass --all (with --kind/--batch/--tenant to narrow it)")
        }
    };
    print_json(&v)
}
