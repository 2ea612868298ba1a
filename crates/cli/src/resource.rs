//! `latchkey resource`: the registry of protected resources (RFC 8707). A resource's URI is the
//! audience of the tokens issued for it; `latchkey gate --resource` and `latchkey-resource`'s
//! `Verifier::builder(..).resource(..)` check it on the API's side.

use crate::serve::open_store;
use anyhow::anyhow;
use clap::Subcommand;
use latchkey_core::Clock;
use latchkey_core::admin::AdminError;
use latchkey_core::resource::ResourceRecord;
use latchkey_core::store::StoreError;
use latchkey_proto::ResourceUri;
use serde_json::json;

use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum ResourceCommand {
    /// Register a protected resource (an API, an MCP server) by its canonical URI.
    Add {
        /// The URI clients send as `resource` and tokens carry as `aud`, e.g.
        /// https://mcp.example.com/mcp (https; http only on a loopback address).
        uri: String,
        /// A scope the resource understands (repeatable), e.g. --scope mcp:tools.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Shown on the consent page (default: the URI).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the registered resources.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one resource.
    Show { uri: String },
    /// Unregister a resource: new authorizations for it are refused.
    Remove { uri: String },
}

fn resource_json(r: &ResourceRecord) -> serde_json::Value {
    json!({ "resource": r.uri, "name": r.name, "scopes": r.scopes.iter().collect::<Vec<_>>(), "created_at": r.created_at })
}

fn admin_err(e: AdminError) -> anyhow::Error {
    match e {
        AdminError::Store(StoreError::AlreadyExists(what)) => anyhow!("{what} is already registered"),
        other => anyhow!(other),
    }
}

pub async fn run(settings: &Settings, cmd: ResourceCommand) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    let now = Clock::system().now();
    match cmd {
        ResourceCommand::Add { uri, scopes, name, json } => {
            let r = latchkey_core::admin::add_resource(store.as_ref(), &uri, name, &scopes, now)
                .await
                .map_err(admin_err)?;
            if json {
                println!("{}", resource_json(&r));
            } else {
                println!("resource: {}", r.uri);
                if r.uri.as_str() != uri {
                    eprintln!("(stored in its canonical form; tokens carry aud={})", r.uri);
                }
            }
        }
        ResourceCommand::List { json } => {
            let all = store.resources().await?;
            if json {
                println!("{}", serde_json::Value::Array(all.iter().map(resource_json).collect()));
            } else if all.is_empty() {
                eprintln!("no resources; register one with `latchkey resource add <uri> --scope <scope>`");
            } else {
                for r in &all {
                    println!("{}  {}  [{}]", r.uri, r.name, r.scopes);
                }
            }
        }
        ResourceCommand::Show { uri } => {
            let uri = ResourceUri::parse(&uri).map_err(|e| anyhow!("{}", e.description))?;
            match store.resource(&uri).await? {
                Some(r) => println!("{:#}", resource_json(&r)),
                None => return Err(anyhow!("no resource {uri} is registered")),
            }
        }
        ResourceCommand::Remove { uri } => {
            if !latchkey_core::admin::remove_resource(store.as_ref(), &uri, now).await.map_err(admin_err)? {
                return Err(anyhow!("no resource {uri} is registered"));
            }
            eprintln!("removed {uri}; new authorizations for it are refused (tokens already issued expire as usual)");
        }
    }
    Ok(())
}
