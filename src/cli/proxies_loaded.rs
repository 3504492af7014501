//! After a command changed the catalog: wait until the live proxies serve the change and say
//! so on stderr (stdout stays the command's outcome, or its JSON). The change is committed
//! whatever the proxies report, so nothing here fails the command.

use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::proxies_loaded::{PROXY_LOAD_TIMEOUT, ProxiesLoaded, wait_for_proxies};

/// Waits for the live proxies of `database`'s catalog to load its latest change, then says
/// how many did and names any that did not.
pub async fn report(database: &str) {
    match wait(database).await {
        Ok(Some(loaded)) => {
            let text = loaded.to_string();
            if !text.is_empty() {
                eprintln!("{text}");
            }
        }
        Ok(None) => {}
        Err(error) => {
            eprintln!("warning: could not read which change the proxies have loaded: {error}")
        }
    }
}

async fn wait(database: &str) -> Result<Option<ProxiesLoaded>, ControlError> {
    let client = connect(database).await?;
    wait_for_proxies(&client, PROXY_LOAD_TIMEOUT).await
}
