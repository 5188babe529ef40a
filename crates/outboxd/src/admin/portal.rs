//! `outboxd portal-link --tenant acme [--ttl 1h]`: prints the link that
//! signs a tenant's customer in to its portal, one line, nothing else, so
//! a platform's backend can call it and hand the URL on. No database is
//! needed: the link is signed with the same key as the console's (derived
//! from OUTBOXD_ADMIN_TOKEN unless OUTBOXD_PORTAL_KEYS is set), so every
//! replica opens it.

use anyhow::{anyhow, bail, Result};

use crate::config::PortalLinkArgs;

pub fn run(args: PortalLinkArgs) -> Result<()> {
    let keys = outboxd_admin::portal::keys(
        args.portal.portal_keys.as_ref().map(|k| k.0.as_str()),
        args.admin_token.as_ref().map(|t| t.0.as_str()),
    );
    let Some(keys) = keys else {
        bail!("portal links are signed with a key: set OUTBOXD_ADMIN_TOKEN (as the daemon has it) or OUTBOXD_PORTAL_KEYS");
    };
    let base = match (&args.portal.console_url, args.admin_listen) {
        (Some(url), _) => url.clone(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => bail!(
            "the link needs the console's address: set OUTBOXD_CONSOLE_URL (e.g. https://webhooks.example.com) or OUTBOXD_ADMIN_LISTEN"
        ),
    };
    let url =
        outboxd_admin::portal::link(&keys, &base, &args.tenant, args.ttl).map_err(|e| match e {
            outboxd_admin::Error::Invalid { field, message } => anyhow!("--{field}: {message}"),
            other => anyhow!(other),
        })?;
    println!("{url}");
    Ok(())
}
